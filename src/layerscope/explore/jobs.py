"""One worker per model: computations run one at a time, in order; the rest wait in its queue.

A computation is a function ``work(job) -> pd.DataFrame`` that calls ``job.step(done, total)``
between its pieces: that reports progress and is where a cancelled job stops (a Python thread
cannot be interrupted from outside, so cancellation is cooperative, at piece boundaries).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from layerscope.errors import LayerscopeError

#: finished jobs kept for their rows (downloads, reproduce links); older ones are forgotten
KEEP_FINISHED = 64


class Cancelled(Exception):
    """Raised inside a computation at its next step once its job was cancelled."""


@dataclass
class Job:
    id: str
    model: str
    view: str
    params: dict
    work: Callable[[Job], pd.DataFrame]
    command: str = ""
    state: str = "queued"  # queued | running | done | error | cancelled
    done: int = 0
    total: int = 0
    message: str = ""
    rows: pd.DataFrame | None = None
    started: float = 0.0
    finished: float = 0.0
    pace: float = 0.0  # seconds to wait at each step (tests: a run long enough to cancel)
    _cancel: threading.Event = field(default_factory=threading.Event)

    def step(self, done: int, total: int) -> None:
        """Progress ``done`` of ``total``; raises :class:`Cancelled` if the job was cancelled."""
        self.done, self.total = done, total
        if self.pace:
            self._cancel.wait(self.pace)
        if self._cancel.is_set():
            raise Cancelled

    def cancel(self) -> None:
        self._cancel.set()
        if self.state == "queued":
            self.state = "cancelled"
            self.message = "cancelled before it started"


class ModelWorker:
    """The queue and the thread of one model."""

    def __init__(self, name: str):
        self.name = name
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.current: Job | None = None
        self.thread = threading.Thread(target=self._loop, name=f"explore-{name}", daemon=True)
        self.thread.start()

    def waiting(self) -> list[str]:
        with self.queue.mutex:
            return [j.id for j in self.queue.queue if j is not None and j.state == "queued"]

    def _loop(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if job.state != "queued":  # cancelled while it waited
                continue
            self.current = job
            job.state, job.started = "running", time.perf_counter()
            try:
                job.rows = job.work(job)
                job.state = "done"
            except Cancelled:
                job.state, job.message = "cancelled", "cancelled"
            except LayerscopeError as error:
                job.state, job.message = "error", str(error)
            except Exception as error:  # noqa: BLE001 - the page gets a message, the server stays up
                traceback.print_exc()
                job.state, job.message = "error", f"{type(error).__name__}: {error}"
            finally:
                job.finished = time.perf_counter()
                self.current = None


class Jobs:
    """Every job, and one :class:`ModelWorker` per model name."""

    def __init__(self, pace: float = 0.0):
        self.pace = pace
        self.jobs: dict[str, Job] = {}
        self.workers: dict[str, ModelWorker] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    def submit(self, model: str, view: str, params: dict, work, command: str = "") -> Job:
        with self.lock:
            job = Job(f"j{next(self.ids)}", model, view, params, work, command=command, pace=self.pace)
            self.jobs[job.id] = job
            self._forget_old()
            worker = self.workers.get(model) or self.workers.setdefault(model, ModelWorker(model))
        worker.queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` on its model (0: it is running or finished)."""
        if job.state != "queued":
            return 0
        worker = self.workers[job.model]
        waiting = worker.waiting()
        ahead = waiting.index(job.id) if job.id in waiting else 0
        return ahead + (worker.current is not None)

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in ("done", "error", "cancelled")]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.jobs[job.id]

    def close(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel()
        for worker in self.workers.values():
            worker.queue.put(None)
        for worker in self.workers.values():
            worker.thread.join(timeout=10)
