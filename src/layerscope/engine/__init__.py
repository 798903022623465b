"""The intervention engine: one forward pass with interventions at (layer, position) sites.

Modules: ``interventions`` (sites, ops, constructors), ``positions``, ``plan`` (compile ops
against a batch), ``session``/``run`` (the one forward path), ``generate``, ``sweep``,
``chunking`` (memory budget), ``grouping`` (length-sorted chunks), ``result``.
"""

__all__ = ["chunking", "generate", "grouping", "interventions", "plan", "positions", "result", "run", "sweep"]
