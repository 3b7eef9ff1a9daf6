"""Ordered thread-pool map with bounded look-ahead, and a scoped torch thread count.

Used by the steps that turn audio files into mels (``prepare``, ``augment``): decoding, resampling
and FFTs release the GIL, so threads give real parallelism without each process importing torch.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


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
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

