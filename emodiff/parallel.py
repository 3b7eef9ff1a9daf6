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

torch is imported inside the functions: :func:`passive_openmp` must run before torch's OpenMP runtime
is loaded, which reads its settings once, when the library is loaded.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
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

