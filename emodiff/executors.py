"""Where a study's jobs run (emodiff/jobs.py has the graph and the driver): ``--executor local`` or ``ray``.

* :class:`InProcess`: one job at a time in this process, as the study always ran; the local executor when
  only one job fits (one core, or jobs as wide as the machine).
* :class:`LocalProcesses`: jobs side by side on this machine, each in a spawned process of its own that
  dies with the driver, as many at once as their threads (and GPUs) fit in the cores this process may
  run on. A job on a GPU sees only the GPUs it was given (``CUDA_VISIBLE_DEVICES``).
* :class:`RayExecutor`: each job a Ray task asking for its threads as ``num_cpus`` and its GPUs as
  ``num_gpus``, on a local Ray instance started here or a cluster joined by address. Ray is an optional
  extra (``pip install 'emodiff[ray]'``); it is imported only here, only when asked for.

Every executor runs :func:`emodiff.jobs.execute` on the job and hands the driver a Future of its Outcome.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from emodiff.errors import EmodiffError
from emodiff.jobs import Job, Outcome, Retriable, execute
from emodiff.parallel import available_cores, kill_workers, spawn_pool

EXECUTORS = ("local", "ray")
RAY_OBJECT_STORE = 256 << 20  # a local Ray instance's shared memory: outcomes are a few lines, not arrays


class InProcess:
    """One job at a time, in this process; ``submit`` returns once the job has ended."""

    name = "local"

    def __init__(self, threads: int, gpus: int = 0):
        self.threads, self.gpus = threads, gpus

    def submit(self, job: Job) -> Future:
        import torch

        future: Future = Future()
        before = torch.get_num_threads()  # the driver's own steps go on with theirs
        try:
            future.set_result(execute(job, log=False))
        except Exception as err:  # noqa: BLE001 - handed to the driver, which decides
            future.set_exception(err)
        finally:
            torch.set_num_threads(before)
        return future

    def close(self) -> None:
        pass


class LocalProcesses:
    """Jobs side by side on this machine, one spawned process per job (a fresh torch, its own thread count)."""

    name = "local"

    def __init__(self, threads: int, gpus: int = 0):
        self.threads, self.gpus = threads, gpus
        self._free_gpus = list(range(gpus))
        self._pools: dict[Future, ProcessPoolExecutor] = {}

    def submit(self, job: Job) -> Future:
        given = [self._free_gpus.pop(0) for _ in range(min(job.gpus, len(self._free_gpus)))]
        pool = spawn_pool(1, _see_gpus, (given,))
        future = pool.submit(execute, job)
        self._pools[future] = pool

        def release(f: Future) -> None:
            self._free_gpus.extend(given)
            self._pools.pop(f, None)
            pool.shutdown(wait=False)

        future.add_done_callback(release)
        return future

    def close(self) -> None:
        """Kill the jobs still running (the driver is stopping: Ctrl-C, a failure of its own)."""
        for pool in list(self._pools.values()):
            kill_workers(pool)
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()


def _see_gpus(given: list[int]) -> None:
    """A job process's first step: see only the GPUs it was given (none: all stay hidden when the job needs none)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, given))


class RayExecutor:
    """Each job a Ray task with ``num_cpus`` = its threads and ``num_gpus`` = its GPUs.

    ``address`` None starts a Ray instance on this machine with its available cores (and stops it at the
    end); ``auto`` joins the cluster this machine belongs to (``ray start`` ran here), ``ray://host:10001``
    one elsewhere. Ray's own retries are off: the driver retries, the same way for every executor.
    """

    name = "ray"

    def __init__(self, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise EmodiffError("--executor ray needs Ray, an optional extra: pip install 'emodiff[ray]'") from None
        self._ray = ray
        options: dict[str, Any] = {"address": address} if address else {
            "num_cpus": available_cores(), "object_store_memory": RAY_OBJECT_STORE, "include_dashboard": False}
        try:
            ray.init(**options, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise EmodiffError(f"--executor ray: cannot start or join {where}: {str(err).splitlines()[0]}") from None
        resources = ray.cluster_resources()
        self.threads = max(1, int(resources.get("CPU", 1)))
        self.gpus = int(resources.get("GPU", 0))
        self._task = ray.remote(execute)

    def submit(self, job: Job) -> Future:
        ref = self._task.options(num_cpus=min(job.threads, self.threads), num_gpus=min(job.gpus, self.gpus),
                                 max_retries=0, name=job.id).remote(job)
        outer: Future = Future()
        ref.future().add_done_callback(lambda inner: _translate(inner, outer))
        return outer

    def close(self) -> None:
        self._ray.shutdown()


def _translate(inner: Future, outer: Future) -> None:
    """Ray's Future as the driver expects it: an EmodiffError or Retriable as the job raised it, a task Ray could
    not start on its worker (the job's code not importable there) and a worker that died (killed, out of memory)
    as Retriable, each saying which it was."""
    try:
        outcome: Outcome = inner.result()
    except BaseException as err:  # noqa: BLE001 - every failure is handed on
        cause = getattr(err, "cause", None)  # a RayTaskError carries the exception raised on the worker
        if isinstance(cause, EmodiffError):
            outer.set_exception(EmodiffError(str(cause)))
        elif isinstance(cause, Retriable):
            outer.set_exception(Retriable(str(cause)))
        elif cause is not None:  # raised by Ray on the worker before the job ran
            hint = " (is emodiff installed on every node, importable by Ray's workers? docs/distributed.md)" \
                if "failed to import" in str(cause) else ""
            outer.set_exception(Retriable(f"Ray could not run it on its worker: {type(cause).__name__}: "
                                          f"{_first_line(cause)}{hint}"))
        else:
            outer.set_exception(Retriable(f"its Ray worker died ({type(err).__name__}: {_first_line(err)})"))
        return
    outer.set_result(outcome)


def _first_line(err: BaseException) -> str:
    """The first sentence of an exception's first line: Ray's own messages run on with sys.path and advice."""
    line = next((x.strip() for x in str(err).splitlines() if x.strip()), "")
    return line.split(". ")[0].rstrip(".")


def make_executor(kind: str, address: str | None, job_threads: int, jobs: int | None = None, gpus: int = 0) -> Any:
    """The executor ``--executor kind`` names. ``local``: ``jobs`` at once (None: as many jobs of ``job_threads``
    threads as the available cores hold, or one per GPU), side by side in processes, or in this process when
    that is one; ``ray``: see RayExecutor (``address``)."""
    if kind == "ray":
        if jobs is not None:
            raise EmodiffError("--jobs is for --executor local; on Ray the cluster's CPUs and GPUs decide")
        return RayExecutor(address)
    if kind != "local":
        raise EmodiffError(f"--executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
    if address:
        raise EmodiffError("--address is for --executor ray; the local executor runs on this machine")
    if jobs is not None and jobs < 1:
        raise EmodiffError(f"--jobs must be at least 1, got {jobs}")
    slots = jobs or (gpus if gpus else max(1, available_cores() // job_threads))
    if slots == 1:
        return InProcess(job_threads, gpus)
    return LocalProcesses(slots * job_threads, gpus)
