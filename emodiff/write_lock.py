"""The store's locks: one writer at a time, and a lock no killed run can leave behind.

* :class:`WriteLock`: an exclusive ``flock`` on ``<store>.lock`` for the whole of a write: the
  operating system drops it when its process dies. The lock file holds the writer's pid and what
  it is doing, which a refused writer quotes.
* :func:`open_h5`: HDF5's own lock on the store file itself, taken by every open (shared to read,
  exclusive to write) and refused at once when the other kind is held. A reader and the writer's
  seconds-long copy into the store (emodiff.side_file.merge) are kept apart by it; this waits
  for the other side to close rather than failing, so jobs of a study can read the store while
  its driver adds their finished groups.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

import h5py

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


# HDF5's words when another process holds the file; matched whole because a truncated file's
# message names the superblock ("sblock"), which a bare "lock" would take for a writer.
_LOCKED = ("unable to lock file", "resource temporarily unavailable")


def held_by_another(err: OSError) -> bool:
    """Whether h5py's ``err`` says another process holds the file (HDF5's file lock)."""
    text = str(err).lower()
    return any(words in text for words in _LOCKED)


def open_h5(path: Path, mode: str, wait_s: float) -> h5py.File:
    """``h5py.File(path, mode)``, retried for up to ``wait_s`` seconds while another process holds HDF5's lock
    on the file (a writer's copy for a reader; a reader for a writer); then h5py's OSError as it was."""
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while True:
        try:
            return h5py.File(path, mode)
        except OSError as err:
            if not held_by_another(err) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(1.0, pause * 2)
