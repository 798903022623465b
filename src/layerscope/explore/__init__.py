"""``layerscope explore``: a local web app on loaded models (lens grid, Patchscopes decoding, patching
heatmap, attend-first switch, layer metrics), every view reproducible by link, CLI line and rows.

>>> from layerscope.explore import Explorer
>>> with Explorer([model], port=0) as app:   # port 0: a free port
...     print(app.url)
"""

from layerscope.explore.server import Explorer

__all__ = ["Explorer"]
