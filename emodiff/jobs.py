"""A study as a graph of jobs: what each job needs first, what it takes of a machine, and the one driver that runs them.

A :class:`Job` is one unit of work that reads the store and writes only its own folder: a generator's
training (checkpoints in its run folder), its samples, one experiment's classifier runs, one quality
assessment. Inside a job every group the step would add to the store is built as a file in the job's
folder (:func:`emodiff.store.writes_into`); :func:`run_graph`, the driver, is the store's one writer and
adds each finished job's groups (:func:`emodiff.store.adopt`) before it starts the jobs that need them.
So any number of jobs, on any number of machines, read one store that only one process ever writes.

How jobs run is an executor's (emodiff/executors.py): in this process, side by side in processes of this
machine, or as Ray tasks on a cluster. The driver is the same for all: it starts every job whose needs
are done while the executor has room, retries a job that crashed (a killed worker, an out-of-memory
kill) up to ``retries`` times, and goes on with the others when one fails for good, so a failure loses
only that job and the jobs that need it. A driver killed and rerun skips every finished job: each
job's step finds its output in the store (and a finished job whose groups were never added leaves
them in its folder, which the rerun adds first).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from emodiff import store as st
from emodiff.errors import EmodiffError
from emodiff.progress import QUIET, Progress

STAGES = ("train", "sample", "classify", "quality")
LOG = "job.log"
TAIL_LINES = 12  # of a failed job's log, in the driver's report


@dataclass(frozen=True)
class Job:
    """One job of the graph: ``run`` does it (True when it found its work already done, in the store or its
    run folder); ``needs`` are the ids of the jobs whose groups it reads; ``threads`` and ``gpus`` what it
    takes of a machine; ``folder`` its own, where its log and the groups it builds for the store go.

    ``run`` and ``done`` travel to another process (or machine) by pickle: a ``functools.partial`` of
    module-level functions and plain data."""

    id: str  # "train without-01-02": the stage, then what it works on
    stage: str  # one of STAGES
    run: Callable[[], bool]
    folder: Path
    needs: tuple[str, ...] = ()
    threads: int = 1
    gpus: int = 0
    done: Callable[[], bool] | None = None  # a cheap check that the job's output is there (for --dry-run)


@dataclass(frozen=True)
class Outcome:
    """What a job sends back: whether it found its work done, its time, and the groups it left for the store."""

    id: str
    skipped: bool
    seconds: float
    outputs: tuple[str, ...]


@dataclass
class GraphResult:
    done: list[tuple[str, float, bool]] = field(default_factory=list)  # (job id, seconds, found done), in order
    failed: dict[str, str] = field(default_factory=dict)  # job id -> why, with its log's last lines

    def error(self) -> EmodiffError:
        lines = [f"{len(self.failed)} job(s) failed; the {len(self.done)} finished are kept, and a rerun skips "
                 "them:"]
        lines += [f"  {job}: {why}" for job, why in self.failed.items()]
        return EmodiffError("\n".join(lines))


class Executor(Protocol):
    """Where jobs run. ``threads`` and ``gpus`` are how many may be busy at once; ``submit`` starts a job and
    returns a Future of its :class:`Outcome`; a Future that raises :class:`Retriable` (or any exception that
    is not an EmodiffError: a killed worker) may be tried again; ``close`` stops what still runs."""

    name: str
    threads: int
    gpus: int

    def submit(self, job: Job) -> Future: ...

    def close(self) -> None: ...


class Retriable(Exception):
    """A job's failure other than its own EmodiffError: an exception of the code, or its process killed or out of
    memory. Tried again, as a crash need not repeat; the driver quotes its one line and the job's log."""


def execute(job: Job, log: bool = True) -> Outcome:
    """Run ``job`` in this process, on its threads, writing only its folder; returns its :class:`Outcome`.

    With ``log`` (a worker process) everything the job prints goes to ``<folder>/job.log``, and a
    failure's traceback too, for the driver to quote. An EmodiffError (bad input, a full disk) is the
    job's answer and raised as it is; any other exception is raised as :class:`Retriable` with its
    one-line summary, since its class may not exist where the driver unpickles it."""
    from emodiff.parallel import use_threads

    job.folder.mkdir(parents=True, exist_ok=True)
    use_threads(job.threads)
    with _log_to(job.folder / LOG) if log else contextlib.nullcontext():
        start = time.perf_counter()
        try:
            with st.writes_into(job.folder):
                skipped = job.run()
        except EmodiffError:
            if log:
                traceback.print_exc()
            raise
        except Exception as err:
            if log:
                traceback.print_exc()
            raise Retriable(f"{type(err).__name__}: {err}") from None
        seconds = time.perf_counter() - start
    return Outcome(job.id, bool(skipped), seconds, tuple(str(p) for p in st.job_outputs(job.folder)))


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, so native libraries' too) appended to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}", flush=True)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def job_folder(root: Path, job_id: str) -> Path:
    """``root/<job id made a file name>``: ``train without-01-02`` -> ``train-without-01-02``."""
    return root / re.sub(r"[^A-Za-z0-9_.+-]+", "-", job_id).strip("-")


def check_graph(jobs: list[Job]) -> None:
    """EmodiffError for a graph the driver could not finish: a repeated id, a need that is no job, a cycle."""
    ids = [j.id for j in jobs]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise EmodiffError(f"the study's jobs repeat ids: {', '.join(repeated)}")
    known = set(ids)
    for j in jobs:
        missing = [n for n in j.needs if n not in known]
        if missing:
            raise EmodiffError(f"job {j.id} needs {', '.join(missing)}, which is no job of the study")
    order: list[str] = []
    left = {j.id: set(j.needs) for j in jobs}
    while left:
        ready = [i for i, needs in left.items() if not needs - set(order)]
        if not ready:
            raise EmodiffError(f"the study's jobs need each other in a cycle: {', '.join(sorted(left))}")
        order += ready
        for i in ready:
            del left[i]


def run_graph(jobs: list[Job], executor: Executor, store: Path, progress: Progress = QUIET,
              retries: int = 2) -> GraphResult:
    """Run every job of the graph on ``executor``, each once all it ``needs`` has finished; the driver adds each
    finished job's groups to ``store`` before it starts the jobs that need them. See the module docstring.

    A job that fails with a :class:`Retriable` failure is started again up to ``retries`` times; a job that
    fails for good fails the jobs that need it, and the others go on. ``progress`` hears the number of jobs,
    one advance per job finished or failed, and a note as each starts and ends, with the count of jobs
    done, running and failed per stage. Returns what finished and what failed (never raises for a job's
    failure: the caller decides); the caller closes ``executor`` (which stops what still runs).
    """
    check_graph(jobs)
    result = GraphResult()
    for j in jobs:  # a driver killed after a job finished left its groups in the job's folder
        for output in st.job_outputs(j.folder):
            st.adopt(store, Path(output), wait_s=st.READ_WAIT_S)
    waiting = list(jobs)
    running: dict[Future, Job] = {}
    tries: dict[str, int] = {}
    finished: set[str] = set()
    progress.total(len(jobs))

    def note(text: str, starting: str = "") -> None:  # a job being started counts as running
        busy = {j.id for j in running.values()} | ({starting} if starting else set())
        progress.note(f"{text}   [{_counts(jobs, finished, set(result.failed), busy)}]")

    while waiting or running:
        for j in [j for j in waiting if any(n in result.failed for n in j.needs)]:
            waiting.remove(j)
            result.failed[j.id] = "not run: it needs " + ", ".join(n for n in j.needs if n in result.failed)
            progress.advance()
        for j in [j for j in waiting if all(n in finished for n in j.needs)]:
            if not _room(executor, j, running.values()):
                continue
            waiting.remove(j)
            tries[j.id] = tries.get(j.id, 0) + 1
            note(f"{j.id} ..." if tries[j.id] == 1 else f"{j.id}: try {tries[j.id]} ...", starting=j.id)
            running[executor.submit(j)] = j  # the in-process executor returns once the job has ended
        if not running:  # (a job that fits no executor starts alone, and check_graph refused cycles)
            break
        finished_now, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in finished_now:
            j = running.pop(future)
            try:
                outcome: Outcome = future.result()
                for output in outcome.outputs:
                    st.adopt(store, Path(output), wait_s=st.READ_WAIT_S)
            except EmodiffError as err:
                result.failed[j.id] = str(err)
                progress.advance()
                note(f"{j.id}: failed: {err}")
                continue
            except Exception as err:  # noqa: BLE001 - any crash of a worker is the job's failure, retried
                if tries[j.id] <= retries:
                    waiting.insert(0, j)
                    note(f"{j.id}: {_why(err)}; trying again")
                    continue
                result.failed[j.id] = f"{_why(err)} (tried {tries[j.id]} times){_tail(j.folder / LOG)}"
                progress.advance()
                note(f"{j.id}: failed")
                continue
            finished.add(j.id)
            result.done.append((j.id, outcome.seconds, outcome.skipped))
            progress.advance()
            note(f"{j.id}: {'already done' if outcome.skipped else f'{outcome.seconds:.0f} s'}")
    order = {j.id: i for i, j in enumerate(jobs)}
    result.done.sort(key=lambda d: order[d[0]])
    return result


def _room(executor: Executor, job: Job, running: Iterable[Job]) -> bool:
    """Whether ``job`` fits beside the running jobs; a job larger than the executor starts when it runs alone."""
    busy = list(running)
    if not busy:
        return True
    threads = sum(j.threads for j in busy) + job.threads
    gpus = sum(j.gpus for j in busy) + job.gpus
    return threads <= executor.threads and gpus <= executor.gpus


def _counts(jobs: list[Job], finished: set[str], failed: set[str], running: set[str]) -> str:
    """``train 2/6 (2 running) | sample 0/6 | ...``: per stage, done of all, and those running or failed."""
    parts = []
    for stage in [s for s in STAGES if any(j.stage == s for j in jobs)]:
        ids = [j.id for j in jobs if j.stage == stage]
        text = f"{stage} {sum(i in finished for i in ids)}/{len(ids)}"
        extra = [f"{n} {what}" for n, what in ((sum(i in running for i in ids), "running"),
                                                (sum(i in failed for i in ids), "failed")) if n]
        parts.append(text + (f" ({', '.join(extra)})" if extra else ""))
    return " | ".join(parts)


def _why(err: BaseException) -> str:
    """A failure in one line: a Retriable's summary, or the executor's word for a worker that died."""
    text = str(err).strip().splitlines()
    return text[0] if text and isinstance(err, Retriable) else f"its worker died ({type(err).__name__})"


def _tail(log: Path) -> str:
    """The last lines of a job's log, indented for the driver's report ('' when there is no log)."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    except OSError:
        return ""
    return f"; the last lines of {log}:\n" + "\n".join(f"    {line}" for line in lines)
