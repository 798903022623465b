"""Scale out: the work units of a long run, on Ray actors across workers and machines.

Every long command splits its work into units that are resumable on their own (one relation, one
prompt pair, one model, one (task, layer) cell...). :func:`run_units` runs them in this process,
or, with ``workers=`` / ``address=``, on Ray actors that each hold one model replica; rows stream
back to the driver, which alone writes the checkpoint. Ray is imported only when asked for.
"""

from layerscope.distributed.units import Unit, run_units

__all__ = ["Unit", "run_units"]
