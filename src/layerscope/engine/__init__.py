"""The intervention engine: one forward pass with interventions at (layer, position) sites.

Modules: ``interventions`` (sites, ops, constructors), ``positions``, ``plan`` (compile ops
against a batch), ``session``/``run`` (the one forward path), ``generate``, ``sweep``,
``chunking`` (memory budget), ``grouping`` (length-sorted chunks), ``result``, ``shapes`` (tensor
shape aliases for signatures).
"""

__all__ = ["chunking", "generate", "grouping", "interventions", "plan", "positions", "result", "run", "shapes", "sweep"]
