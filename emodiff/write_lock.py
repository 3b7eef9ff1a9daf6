"""The store's write lock: one writer at a time, and a lock no killed run can leave behind.

An exclusive ``flock`` on ``<store>.lock``: the operating system drops it when its process dies.
The lock file holds the writer's pid and what it is doing, which a refused writer quotes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from emodiff.errors import EmodiffError, no_space


class WriteLock:
    """An exclusive, non-blocking flock on ``<store>.lock``, released by the OS on death."""

    def __init__(self, store: Path, what: str, wait_s: float = 0.0):
        self.path = store.with_name(store.name + ".lock")
        self.what = what
        self.wait_s = wait_s  # poll this long for another writer to finish before giving up
        self.fd: int | None = None

    def __enter__(self) -> WriteLock:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if no_space(err):
                raise EmodiffError(f"{self.path}: no space left on device; free some and run again") from None
            raise EmodiffError(
                f"{self.path.parent / self.path.stem}: cannot write the store there ({err.strerror}); "
                "choose another --store"
            ) from None
        deadline = time.monotonic() + self.wait_s
        try:
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(min(1.0, self.wait_s))
        except OSError as err:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise EmodiffError(
                    f"{self.path.parent / self.path.stem}: the store is held by another writer "
                    f"({holder}); wait for it to finish or use another --store"
                ) from None
            raise
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"pid {os.getpid()}, {self.what}".encode(), 0)
        except OSError as err:
            self.__exit__()
            if no_space(err):
                raise EmodiffError(f"{self.path}: no space left on device; free some and run again") from None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
