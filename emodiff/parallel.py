"""How many CPU threads emodiff uses, and the thread pools that use them.

* :func:`available_cores`: the cores this process may run on (its CPU affinity, which ``taskset``,
  ``numactl``, Slurm and container runtimes restrict), not the machine's core count.
* :func:`use_threads`: a command's ``--threads N``, torch's intra-op threads (and inter-op threads
  while still unset); the audio pools of ``prepare`` and ``augment`` default to it too.
* :func:`passive_openmp`: OpenMP threads that sleep rather than spin while they wait, set by the
  ``emodiff`` command before torch is loaded.
* :func:`ordered_map` and :func:`torch_threads`: the steps that turn audio files into mels (``prepare``,
  ``augment``): decoding, resampling and FFTs release the GIL, so threads give real parallelism without
  each process importing torch.
* :func:`process_pool`: the worker processes of ``classify --workers``, which end with the command
  however it ends (Ctrl-C, SIGTERM, SIGKILL).

torch is imported inside the functions: :func:`passive_openmp` must run before torch's OpenMP runtime
is loaded, which reads its settings once, when the library is loaded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

from emodiff.errors import EmodiffError

T = TypeVar("T")
R = TypeVar("R")

# Where OpenMP threads wait between parallel regions: GNU libgomp (torch's on Linux x86) spins up to
# GOMP_SPINCOUNT (300 000 rounds) before sleeping, Intel's libiomp spins for KMP_BLOCKTIME (200 ms). Beside
# another busy process those spinning threads take the cores the working ones need (docs/performance.md).
PASSIVE_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (``os.sched_getaffinity``), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


MAX_THREADS = 4096  # beyond the cores of any machine: a larger --threads is a typo, refused rather than capped


def default_threads() -> int:
    """``--threads`` when not given: $OMP_NUM_THREADS when set to a count (torch reads it too, and a user
    who set it meant it), else :func:`available_cores`."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else available_cores()


def use_threads(n: int | None, note: Callable[[str], None] | None = None) -> int:
    """Run this process's torch work on ``n`` CPU threads (None: :func:`default_threads`); returns the count used.

    Sets torch's intra-op threads (OpenMP and MKL: one operator split over ``n`` threads) for the rest of
    the process, and its inter-op threads (independent operators run side by side) to ``n`` too while
    they are still unset: torch allows that only once, before any inter-op work. The audio pools of
    ``prepare`` and ``augment`` default to ``n`` workers (:func:`thread_budget`). Raises EmodiffError
    when ``n < 1`` or ``n > MAX_THREADS``. More threads than :func:`available_cores` only slow every one
    down (thousands of them hang a run), so ``n`` is capped at the cores, and ``note`` hears a line saying so.
    """
    import torch

    if n is not None and n < 1:
        raise EmodiffError(f"--threads must be at least 1, got {n}")
    if n is not None and n > MAX_THREADS:
        raise EmodiffError(f"--threads must be at most {MAX_THREADS}, got {n} (this process may run on "
                           f"{available_cores()} cores)")
    given = "--threads" if n is not None else "$OMP_NUM_THREADS"
    n = default_threads() if n is None else n
    cores = available_cores()
    if n > cores:
        if note is not None:
            note(f"{given} {n} is more than the {cores} cores this process may run on; using {cores}")
        n = cores
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already set, or inter-op work already ran: leave it
        torch.set_num_interop_threads(n)
    return n


def thread_budget() -> int:
    """The threads this process uses for CPU work: torch's intra-op count, which :func:`use_threads` set
    (else torch's default, $OMP_NUM_THREADS or the available cores). The audio pools' default size."""
    import torch

    return max(1, torch.get_num_threads())


def passive_openmp(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Make OpenMP threads sleep while they wait (:data:`PASSIVE_OPENMP`), unless the user chose a policy.

    Takes effect only before torch is first imported (once it is, this returns [] and changes nothing):
    the OpenMP runtime reads these variables once, when it is loaded. Returns the variables it set.
    """
    if "torch" in sys.modules:
        return []
    added = [key for key in PASSIVE_OPENMP if key not in environ]
    for key in added:
        environ[key] = PASSIVE_OPENMP[key]
    return added


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with at most 4 items per worker in flight."""
    window = 4 * workers
    it = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emodiff-audio")
    pending: deque[Future[R]] = deque()
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append(pool.submit(fn, nxt))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    # Each worker thread runs its own small FFTs; torch's intra-op threads would oversubscribe.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def process_pool(workers: int, initializer: Callable[..., object] | None = None,
                 initargs: tuple = ()) -> Iterator[ProcessPoolExecutor]:
    """``workers`` spawned processes for one ``with`` block, each running ``initializer(*initargs)`` first.

    The workers die with this process, even by SIGKILL (:func:`die_with_parent`). Leaving the block
    normally or by an Exception (a worker's) cancels the runs not started and waits for those under way;
    leaving it by Ctrl-C, SIGTERM (raised as KeyboardInterrupt while the block runs in the main thread)
    or the close of a generator that holds the block kills the workers first.
    """
    pool = spawn_pool(workers, initializer, initargs)
    try:
        with terminate_interrupts():
            yield pool
    except BaseException as err:
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit, GeneratorExit: nobody waits for the runs
            kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def spawn_pool(workers: int, initializer: Callable[..., object] | None = None,
               initargs: tuple = ()) -> ProcessPoolExecutor:
    """``workers`` spawned processes that die with this one (:func:`die_with_parent`), each running
    ``initializer(*initargs)`` first; the caller shuts the pool down (or :func:`kill_workers` it)."""
    import multiprocessing

    # spawn, not fork: a forked child of a process that has run torch's thread pools can deadlock.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(os.getpid(), initializer, initargs))


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL every worker process of ``pool``."""
    kill = getattr(pool, "kill_workers", None)
    if kill is not None:  # Python 3.14
        kill()
        return
    # Before 3.14 the executor has no public way to stop a run under way; its table of processes is the only one.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


@contextlib.contextmanager
def terminate_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the block runs, as Ctrl-C does, so that what encloses it cleans up.

    Only in the main thread, the one Python runs signal handlers in; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        # None: a handler installed outside Python, which cannot be put back; the default is the nearest.
        signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


def _start_worker(parent: int, initializer: Callable[..., object] | None, initargs: tuple) -> None:
    """A :func:`process_pool` worker's first step: :func:`die_with_parent`, then ``initializer(*initargs)``."""
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Have Linux SIGKILL this process once its parent ends; exit at once if ``parent`` (the pid that started
    it) has already ended. Elsewhere nothing: other systems have no such request.

    A worker blocked on its task queue never learns that its parent was killed (the queue's pipe stays
    open in the other workers), so without this it would keep its memory until its run ended. The
    signal comes when the *thread* that started the worker ends: :func:`process_pool` starts them in
    the thread that submits, which holds the pool's ``with`` block.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # (a seccomp filter can refuse prctl): the worker then ends with its queue, as before
    # A parent that died before prctl sends no signal; the worker then has another parent (init, a subreaper).
    if os.getppid() != parent:
        os._exit(1)
