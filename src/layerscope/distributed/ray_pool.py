"""A pool of Ray actors, each holding one model replica, fed one unit at a time.

One unit in flight per actor keeps the scheduling simple and the memory of a worker to one unit's
activations; a finished unit immediately frees its actor for the next. The pool owns the cluster
it starts (``workers=N`` without an address) and leaves an existing one (``address=``) running.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from layerscope.distributed.units import ModelSpec, Throughput, Unit, build_model
from layerscope.errors import LayerscopeError


class _Worker:
    """Runs units on its own model replica (one per actor, loaded once)."""

    def __init__(self, spec: ModelSpec, threads: int, gpus: float = 0.0):
        import torch

        torch.set_num_threads(threads)
        on_cpu = isinstance(spec, dict) and str(spec.get("device", "cpu")) == "cpu" and not spec.get("device_map")
        if gpus and on_cpu and torch.cuda.is_available():
            spec = {**spec, "device": "cuda"}  # Ray gave this actor a GPU (CUDA_VISIBLE_DEVICES): use it
        self.gpu_ids = [str(g) for g in _ray_gpu_ids()] if gpus else []
        if isinstance(spec, dict) and spec.get("offload_folder"):  # workers on one machine must not share it
            spec = {**spec, "offload_folder": os.path.join(spec["offload_folder"], f"worker-{os.getpid()}")}
        self.model = build_model(spec)

    def run(self, work: Callable, unit: Unit) -> list[dict]:
        return work(self.model, unit)

    def pid(self) -> int:
        return os.getpid()

    def placement(self) -> tuple[int, list[str], str]:
        """``(pid, the GPU ids Ray gave this actor, the model's device)``."""
        return os.getpid(), self.gpu_ids, str(getattr(self.model, "device", "none"))


def _ray_gpu_ids() -> list:
    import ray

    return list(ray.get_runtime_context().get_accelerator_ids().get("GPU", []))


def _import_ray():
    try:
        import ray
    except ImportError:
        raise LayerscopeError(
            "distributed runs need Ray: pip install 'layerscope[ray]' (or run without --workers/--ray)"
        ) from None
    return ray


class RayPool:
    """``with RayPool(spec, workers, address) as pool: for unit, rows, worker in pool.map(work, units)``."""

    def __init__(
        self, spec: ModelSpec, workers: int | None, address: str | None, gpus_per_worker: float | None, threads: int
    ):
        self.ray = _import_ray()
        self.spec, self.address, self.gpus, self.threads = spec, address, gpus_per_worker, threads
        self.requested = workers
        self.owns_cluster = False
        self.actors: list = []
        self.throughput = Throughput()
        self.startup_s = 0.0

    def __enter__(self) -> RayPool:
        ray = self.ray
        if not ray.is_initialized():
            env = {"PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), os.getcwd()) if p)}
            options = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                           runtime_env={"env_vars": env})  # fmt: skip
            if self.address is None:
                ray.init(num_cpus=self.requested, **options)
                self.owns_cluster = True
            else:
                ray.init(address=self.address, **options)
        try:
            n = self._workers(ray.cluster_resources())
        except LayerscopeError:
            self.__exit__(None, None, None)  # a cluster this pool started does not outlive the error
            raise
        self.actor_class = ray.remote(num_cpus=1, num_gpus=self.gpus)(_Worker)
        start = time.perf_counter()
        self.actors = [self._start() for _ in range(n)]
        self._wait_ready()
        self.startup_s = time.perf_counter() - start
        return self

    def _workers(self, resources: dict) -> int:
        """How many actors: as asked, or as many as fit; one that cannot be placed would wait forever."""
        if self.gpus is None:  # one GPU per actor where the cluster has GPUs
            self.gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        if self.gpus < 0:
            raise LayerscopeError(f"gpus_per_worker must be 0 or more, got {self.gpus}")
        room = int(resources.get("CPU", 1))  # an actor takes 1 CPU and `gpus` GPUs
        if self.gpus:
            room = min(room, int(resources.get("GPU", 0) / self.gpus))
        if room < 1 or (self.requested or 0) > room:
            raise LayerscopeError(
                f"the Ray cluster has room for {room} worker(s) ({resources.get('CPU', 0):g} CPUs, "
                f"{resources.get('GPU', 0):g} GPUs; a worker takes 1 CPU and {self.gpus:g} GPUs): ask for at most "
                f"{max(room, 1)} with --workers, or lower --gpus-per-worker"
            )
        return self.requested or room

    def _wait_ready(self) -> None:
        """Every replica loaded before the first unit: a model that cannot load fails here, with its error."""
        from ray.exceptions import RayActorError, RayTaskError

        try:
            self.ray.get([actor.pid.remote() for actor in self.actors])
        except (RayActorError, RayTaskError) as err:
            self.__exit__(None, None, None)
            cause = getattr(err, "cause", None) or getattr(err, "error_msg", None) or err
            if isinstance(cause, BaseException):
                raise cause from None
            raise LayerscopeError(f"a Ray worker could not load its model: {cause}") from None

    def __exit__(self, *exc) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # an actor that is already gone is what we want
                self.ray.kill(actor)
        if self.owns_cluster:
            self.ray.shutdown()

    def _start(self):
        return self.actor_class.remote(self.spec, self.threads, self.gpus)

    def map(
        self, work: Callable, units: Sequence[Unit], max_retries: int = 3, depth: int = 2
    ) -> Iterator[tuple[Unit, list, int]]:
        """Yield ``(unit, rows, worker index)`` as units finish (in any order).

        ``depth`` units are queued on each actor, so that an actor starts its next unit as soon as
        one ends instead of idling while the driver hears back and sends another (on a busy
        machine that round trip costs tens of ms per unit).
        """
        from ray.exceptions import RayActorError, RayTaskError

        queue = deque(units)
        attempts: dict[str, int] = {}
        in_flight: dict = {}  # ref -> (worker index, the actor handle it went to, unit)

        def submit(worker: int) -> None:
            unit = queue.popleft()
            actor = self.actors[worker]
            in_flight[actor.run.remote(work, unit)] = (worker, actor, unit)

        for _ in range(depth):
            for worker in range(len(self.actors)):
                if queue:
                    submit(worker)
        while in_flight:
            ready, _ = self.ray.wait(list(in_flight), num_returns=1)
            worker, actor, unit = in_flight.pop(ready[0])
            try:
                rows = self.ray.get(ready[0])
            except RayActorError:  # the worker died mid-unit: a new one takes over, the unit runs again
                key = repr(unit.key)
                attempts[key] = attempts.get(key, 0) + 1
                if attempts[key] > max_retries:
                    raise LayerscopeError(
                        f"unit {unit.key!r} lost its worker {attempts[key]} times: giving up (see the Ray logs)"
                    ) from None
                queue.appendleft(unit)
                if self.actors[worker] is actor:  # the other units queued on the dead actor fail too: one restart
                    self.actors[worker] = self._start()
                submit(worker)
                continue
            except RayTaskError as err:  # the unit itself raised: stop with that error
                cause = getattr(err, "cause", None)
                raise (cause if isinstance(cause, BaseException) else err) from None
            yield unit, rows, worker
            if queue:
                submit(worker)
