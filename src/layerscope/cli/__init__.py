"""The ``layerscope`` command line."""
