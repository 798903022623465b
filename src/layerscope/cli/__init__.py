"""The ``layerscope`` command line: ``main`` builds the parser from the method registry
(:data:`layerscope.methods.METHODS`); ``common`` holds the options every command shares."""

__all__ = ["common", "main"]
