"""The shipped data sets (JSON lines and text); read them through :mod:`layerscope.datasets`."""

__all__: list[str] = []
