"""Where batch and evaluate jobs run: worker processes on this machine, or tasks on a Ray cluster.

Timing is only meaningful on cores nothing else uses, so each local worker owns a disjoint set of cores: the worker
pins itself (sched_setaffinity) and every process it starts inherits the pinning. With more workers than cores, cores
are shared and a warning says that timings will be noisier. On Ray each job declares `num_cpus` = its share of cores,
so Ray places at most (cores / share) jobs on a node at once (Ray itself does not pin processes to cores).

A job reports what it is doing through `task_events()`: its events travel to the parent on a queue, and `map` hands
them to `on_event` as they arrive, so a batch's progress reaches the parent's output while its tasks run.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from queue import Empty
from typing import Callable, Iterator

from perfagent.events import Event, Observer

OnEvent = Callable[[int, Event], None]  # (the job's index in map's list, an event it reported)
POLL_S = 0.2  # how often map looks for the jobs' events while it waits for results


def core_sets(workers: int) -> tuple[list[tuple[int, ...]], str | None]:
    """Disjoint core sets for `workers` workers, and a warning when there are fewer cores than workers."""
    cores = sorted(os.sched_getaffinity(0))
    if workers > len(cores):
        return ([(cores[i % len(cores)],) for i in range(workers)],
                f"{workers} workers on {len(cores)} cores: workers share cores, so timings will be noisier")
    share = len(cores) // workers
    return [tuple(cores[i * share:(i + 1) * share]) for i in range(workers)], None


_stopping = threading.Event()
_events = None  # in a worker: the queue to the parent's map
_job: int | None = None  # in a worker: the index of the job it runs


def task_events() -> Observer | None:
    """In a worker, an observer that sends the running job's events to the parent (map's `on_event`); None
    elsewhere."""
    if _events is None:
        return None
    channel, job = _events, _job
    return lambda event: channel.put((job, event))


def _relay(channel, on_event: OnEvent | None) -> None:
    """Hand every event waiting on `channel` to `on_event`."""
    while True:
        try:
            job, event = channel.get_nowait()
        except Empty:
            return
        if on_event is not None:
            on_event(job, event)


def _worker_init(cores_queue, events) -> None:
    """In each local worker: take a core set, keep the queue for its jobs' events, and stop (unwinding the job's
    cleanup) on SIGINT/SIGTERM or as soon as the parent is gone, even when it was killed outright."""
    global _events
    os.sched_setaffinity(0, cores_queue.get())
    _events = events
    parent = os.getppid()

    def interrupt(signum, frame):
        _stopping.set()
        raise KeyboardInterrupt(f"signal {signum}")

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)  # the job had a minute to clean up
        os._exit(130)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    threading.Thread(target=watch_parent, daemon=True).start()


def _call(job: int, fn: Callable, *args):
    """A job in a local worker. Once the worker is told to stop, it ends after the job has unwound, rather than wait
    for more jobs that will never come (even if the job swallowed the KeyboardInterrupt)."""
    global _job
    _job = job
    try:
        return fn(*args)
    except KeyboardInterrupt:
        os._exit(130)
    finally:
        if _stopping.is_set():
            os._exit(130)


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self.cores, self.warning = core_sets(workers)
        context = multiprocessing.get_context("spawn")
        queue, self._events = context.Queue(), context.Queue()
        for cores in self.cores:
            queue.put(cores)
        self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                         initargs=(queue, self._events))

    def describe(self) -> str:
        return f"{self.workers} local worker(s), cores {', '.join(','.join(map(str, c)) for c in self.cores)}"

    def map(self, fn: Callable, jobs: list[tuple], on_event: OnEvent | None = None) -> Iterator[tuple[int, object]]:
        """(index, result or the exception it raised) for each job, as they finish; the events the jobs report go to
        `on_event` meanwhile."""
        futures = {self._pool.submit(_call, i, fn, *args): i for i, args in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            _relay(self._events, on_event)
            for future in done:
                error = future.exception()
                yield futures[future], error if error is not None else future.result()

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # stop running jobs now; they clean up their worktrees on SIGTERM
            for process in list(getattr(self._pool, "_processes", {}).values()):
                if process.is_alive():
                    process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise RuntimeError("the Ray executor needs Ray: pip install 'perfagent[ray]'") from None
        self.ray, self.workers = ray, workers
        cores = len(os.sched_getaffinity(0))
        self.cpus_per_job = max(1, cores // workers) if not address else 1
        ray.init(address=address, num_cpus=None if address else max(cores, workers * self.cpus_per_job),
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}})
        self.warning = None if workers <= cores or address else (
            f"{workers} workers on {cores} cores: workers share cores, so timings will be noisier")

    def describe(self) -> str:
        return f"Ray ({self.ray.get_runtime_context().gcs_address}), {self.cpus_per_job} CPU(s) per job"

    def map(self, fn: Callable, jobs: list[tuple], on_event: OnEvent | None = None) -> Iterator[tuple[int, object]]:
        from ray.util.queue import Queue

        remote = self.ray.remote(num_cpus=self.cpus_per_job, max_retries=0)(_ray_job)
        events = Queue(actor_options={"num_cpus": 0})
        waiting = list(range(len(jobs)))
        running = self._running = {}
        while waiting or running:
            while waiting and len(running) < self.workers:
                i = waiting.pop(0)
                running[remote.remote(events, i, fn, *jobs[i])] = i
            done, _ = self.ray.wait(list(running), num_returns=1, timeout=POLL_S)
            _relay(events, on_event)
            for ref in done:
                i = running.pop(ref)
                try:
                    yield i, self.ray.get(ref)
                except self.ray.exceptions.RayTaskError as exc:
                    yield i, exc.as_instanceof_cause()
                except self.ray.exceptions.RayError as exc:
                    yield i, exc

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # a cancelled job gets KeyboardInterrupt and cleans up its worktrees
            for ref in getattr(self, "_running", {}):
                self.ray.cancel(ref)
        self.ray.shutdown()


def _ray_job(events, job: int, fn: Callable, *args):
    """A job on Ray: its events go to the driver's queue (a Ray actor)."""
    global _events, _job
    _events, _job = events, job
    return fn(*args)


def make_executor(kind: str, workers: int, ray_address: str | None = None):
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, ray_address)
    raise ValueError(f"unknown executor {kind!r}: use local or ray")
