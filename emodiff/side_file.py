"""The side file: where :func:`emodiff.store.write_group` builds a group before it joins the store.

A group is built in ``<store>.<section>.<name>.partial`` and copied into the existing store under a
temporary name (``.tmp-*``), then renamed. The caller holds the store's write lock throughout, so a
side file found on opening is no live writer's: a kill or a full disk left it, and it is resumed
from only when it reads back whole with the same config. HDF5 cannot close a file whose bookkeeping
it cannot write (a full disk), and a half-closed handle crashes the interpreter later, so every
close here flushes first and makes room when the flush fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from emodiff.errors import EmodiffError, no_space
from emodiff.write_lock import held_by_another, open_h5

TMP_PREFIX = ".tmp-"
MERGE_WAIT_S = 600.0  # how long the copy into the store waits for its readers (a study's jobs) to close it


# What h5py raises for a damaged file: OSError or RuntimeError from HDF5, KeyError or ValueError
# from a link or header that no longer reads.
_DAMAGE = (OSError, RuntimeError, KeyError, ValueError)
CHECK_BYTES = 64 << 20  # read a side file's datasets this many bytes at a time when judging it


def open_side(side: Path, resume_hash: str | None) -> h5py.File:
    """The side file: the one there when :func:`resumable` with ``resume_hash``, else a new, empty one.

    The caller holds the store's write lock, so a side file already there is no live writer's: a
    run killed or stopped by a full disk left it. One that cannot be resumed from (no
    ``resume_hash``, another config, or damaged) is removed before the new one is made, because
    HDF5 may fail to truncate a damaged file.
    """
    try:
        if resume_hash is not None and resumable(side, resume_hash):
            return h5py.File(side, "a")
        side.unlink(missing_ok=True)
        return h5py.File(side, "w")
    except (OSError, RuntimeError) as err:
        side.unlink(missing_ok=True)
        if no_space(err):
            raise EmodiffError(f"{side}: no space left on device; the store is unchanged; free some space "
                               "and run again") from None
        raise EmodiffError(f"{side}: cannot write beside the store ({err})") from None


def resumable(side: Path, resume_hash: str) -> bool:
    """Whether ``side`` holds a partial group made with the config ``resume_hash`` and every object,
    attr and value in it reads back (a kill or a full disk mid-write can leave any of them broken).

    Reads the whole file once: seconds per GB, against the hours of drawing a resumed set saves.
    """
    if not side.exists():
        return False
    try:
        f = h5py.File(side, "r")
    except _DAMAGE:
        return False
    try:
        g = f.get("g")
        if not isinstance(g, h5py.Group) or g.attrs.get("partial_config_hash") != resume_hash:
            return False
        dict(g.attrs)
        g.visititems(_read_whole)
        return True
    except _DAMAGE:
        return False
    finally:
        close_file(f)


def _read_whole(_: str, node: h5py.Group | h5py.Dataset) -> None:
    """Read every attr and value of ``node`` (a ``visititems`` callback); HDF5 raises where it is broken."""
    dict(node.attrs)
    if not isinstance(node, h5py.Dataset) or node.shape is None:
        return
    if node.shape == ():
        node[()]
        return
    row = max(1, int(np.prod(node.shape[1:], dtype=np.int64)) * node.dtype.itemsize)
    step = max(1, CHECK_BYTES // row)
    for lo in range(0, node.shape[0], step):
        node[lo:lo + step]


def close_file(f: h5py.File, make_room: Callable[[], object] | None = None) -> tuple[BaseException | None, bool]:
    """Close ``f``: (HDF5's error when its first flush failed, else None; whether all it held reached the disk).

    A close that fails (HDF5 cannot write its bookkeeping to a full disk) leaves a half-closed
    handle that crashes the interpreter, at a second close or at exit. A failed flush is clean,
    so ``f`` is flushed first; on a full disk ``make_room`` (when given) frees space and the flush
    is tried again, and the close then has nothing left to write.
    """
    if not f.id.valid:
        return None, True
    failure: BaseException | None = None
    try:
        f.flush()
    except (OSError, RuntimeError) as err:
        failure = err
    flushed = failure is None
    if failure is not None and make_room is not None and no_space(failure):
        with contextlib.suppress(OSError):
            make_room()
        try:
            f.flush()
            flushed = True
        except (OSError, RuntimeError):
            pass
    try:
        f.close()
    except (OSError, RuntimeError) as err:
        return failure or err, False
    return failure, flushed


def close_side(f: h5py.File) -> BaseException | None:
    """Close the side file ``f``; HDF5's error when it could not write all it held, and then the file
    has been emptied (to give HDF5 room to close it) and holds nothing to resume from."""
    if not f.id.valid:
        return None
    fd = f.id.get_vfd_handle()
    return close_file(f, make_room=lambda: os.ftruncate(fd, 0))[0]


def merge(side: Path, store: Path, name: str) -> None:
    """Copy the finished group from ``side`` into ``store`` under a temporary name, then rename.

    On a full disk, the half-copied temporary group is deleted and the side file removed (its room
    lets HDF5 write the store's own bookkeeping when it closes) before the one-line EmodiffError.
    """
    parent_name, _, leaf = name.rpartition("/")
    tmp = f"{TMP_PREFIX}{leaf}-{os.getpid()}"
    src = h5py.File(side, "r")
    try:
        dst = open_h5(store, "a", MERGE_WAIT_S)
    except OSError as err:
        close_file(src)
        if held_by_another(err):
            raise EmodiffError(f"{store}: another process kept the store open for reading for {MERGE_WAIT_S:.0f} s, "
                               f"so /{name} could not be added; run again once it is closed") from None
        raise
    except BaseException:
        close_file(src)
        raise
    full = False
    try:
        try:
            parent = dst.require_group(parent_name) if parent_name else dst
            for stale in [k for k in parent if k.startswith(TMP_PREFIX)]:
                del parent[stale]  # left by a writer killed during its copy
            dst.copy(src["g"], parent, name=tmp)
            dst.flush()
            if leaf in parent:  # only with overwrite: write_group checked it under the same lock
                del parent[leaf]
            parent.move(tmp, leaf)
        except (OSError, RuntimeError) as err:  # h5py raises RuntimeError for a copy that found the disk full
            if not no_space(err):
                raise
            full = True
            with contextlib.suppress(*_DAMAGE):
                holder = dst[parent_name] if parent_name else dst
                if tmp in holder:
                    del holder[tmp]
    except BaseException:
        close_file(src)
        close_file(dst)
        raise
    close_file(src)
    if full:
        side.unlink(missing_ok=True)
    failure, closed = close_file(dst, make_room=lambda: side.unlink(missing_ok=True))
    if not closed and failure is not None and not no_space(failure):
        raise failure
    if not closed:
        raise EmodiffError(f"{store}: no space left on device while adding /{name}, and HDF5 could not finish "
                           "writing the store; free some space, then check it with `emodiff inspect` (the next "
                           "writer removes any partial copy)")
    if full:
        raise EmodiffError(f"{store}: no space left on device while adding /{name}; the store holds what it "
                           "held before; free some space and run again")
