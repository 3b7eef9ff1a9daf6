"""The HDF5 store: one file that every step reads and appends its own group to.

Contract (docs/store.md has the schema):

- A group is written whole or not at all. :func:`write_group` builds it in a side file next to
  the store; only when the body has finished does it copy the group into the store under a
  temporary name (``.tmp-*``) and rename it. A failure or a kill during the body leaves the
  store untouched; one during the few seconds of the copy leaves at most a ``.tmp-*`` group,
  which readers ignore and the next writer deletes.
- One writer at a time: a writer holds an exclusive ``flock`` on ``<store>.lock`` from start
  to end; a second writer gets an EmodiffError at once. The operating system drops the lock
  when a process dies, so a killed run never leaves a stale lock.
- Every group carries attrs ``emodiff_version``, ``created`` (UTC, ISO 8601), ``config``
  (canonical JSON of the settings that made it) and ``config_hash`` (sha256 of that JSON).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff import __version__
from emodiff.errors import EmodiffError

DEFAULT_STORE = "emodiff.h5"
STORE_ENV = "EMODIFF_STORE"
TMP_PREFIX = ".tmp-"
STRING = h5py.string_dtype("utf-8")


def resolve_store(path: str | Path | None) -> Path:
    """--store PATH, else $EMODIFF_STORE, else ./emodiff.h5 (precedence in that order)."""
    if path:
        return Path(path)
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def config_hash(config: Mapping[str, Any]) -> tuple[str, str]:
    """(canonical JSON, its sha256) of a settings mapping."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return text, hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def open_store(path: Path) -> Iterator[h5py.File]:
    """Open an existing store read-only; EmodiffError if it is missing or not HDF5."""
    path = Path(path)
    if not path.exists():
        raise EmodiffError(f"{path}: no store there (run `emodiff prepare` first, or pass --store)")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        if "lock" in str(err).lower():
            raise EmodiffError(f"{path}: the store is being written right now; try again in a moment") from None
        raise EmodiffError(f"{path}: not an HDF5 file (expected an emodiff store)") from None
    with handle:
        yield handle


def has_group(path: Path, name: str) -> bool:
    """Whether the store at ``path`` exists and holds the (complete) group ``name``."""
    if not Path(path).exists():
        return False
    with open_store(path) as f:
        return name in f


def visible(group: h5py.Group) -> list[str]:
    """Member names of ``group`` without in-flight ``.tmp-*`` groups, sorted."""
    return sorted(k for k in group if not k.startswith(TMP_PREFIX))


class _WriteLock:
    """An exclusive, non-blocking flock on ``<store>.lock``, released by the OS on death."""

    def __init__(self, store: Path, what: str):
        self.path = store.with_name(store.name + ".lock")
        self.what = what
        self.fd: int | None = None

    def __enter__(self) -> _WriteLock:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise EmodiffError(
                f"{self.path.parent / self.path.stem}: cannot write the store there ({err.strerror}); "
                "choose another --store"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}, {self.what}".encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _create_store(path: Path) -> None:
    """Create an empty store atomically (write a new file, then rename it into place)."""
    tmp = path.with_name(path.name + f".new-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs["emodiff_store"] = 1
        f.attrs["emodiff_version"] = __version__
    os.replace(tmp, path)


def _check_writable(path: Path) -> None:
    if path.exists():
        try:
            with h5py.File(path, "r"):
                pass
        except OSError:
            raise EmodiffError(f"{path}: not an HDF5 file (expected an emodiff store)") from None
        if not os.access(path, os.W_OK):
            raise EmodiffError(f"{path}: the store is read-only; choose another --store")


@contextlib.contextmanager
def write_group(
    store: Path,
    name: str,
    *,
    config: Mapping[str, Any],
    overwrite: bool = False,
    what: str = "",
    resumable: bool = False,
) -> Iterator[h5py.Group]:
    """Build the group ``name`` (for example ``corpora/ravdess``) and add it to the store.

    Yields an empty h5py group in a side file; the caller fills it and may set attrs. On a
    clean exit the group gets the standard attrs and replaces (with ``overwrite``) or joins the
    store's groups atomically. On an exception nothing in the store changes. With
    ``resumable`` the side file survives a failure, and a later call with the same ``config``
    yields its group again as it was left (the caller sees what is already written and goes
    on); another config starts afresh. Raises
    EmodiffError if the group exists and ``overwrite`` is false, if the store is held by
    another writer, or if the store's folder is not writable.
    """
    store = Path(store)
    name = name.strip("/")
    with _WriteLock(store, what or f"writing {name}"):
        _check_writable(store)
        if not overwrite and has_group(store, name):
            raise EmodiffError(f"{store}: already holds /{name}; pass --overwrite to replace it")
        side = store.with_name(f"{store.name}.{name.replace('/', '.')}.partial")
        text, digest = config_hash(config)
        side_file = _open_side(side, digest if resumable else None)
        completed = False
        try:
            with side_file:
                group = side_file.require_group("g")
                group.attrs["partial_config_hash"] = digest
                yield group
                del group.attrs["partial_config_hash"]
                group.attrs.update(
                    emodiff_version=__version__,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    config=text,
                    config_hash=digest,
                )
            _merge(side, store, name)
            completed = True
        finally:
            if completed or not resumable:
                side.unlink(missing_ok=True)


def _open_side(side: Path, resume_hash: str | None) -> h5py.File:
    """The side file: reopened when it holds a partial group of the same config, else new."""
    try:
        if resume_hash is not None and side.exists():
            try:
                f = h5py.File(side, "a")
            except OSError:
                f = None  # damaged by a kill: start afresh
            if f is not None:
                if "g" in f and f["g"].attrs.get("partial_config_hash") == resume_hash:
                    return f
                f.close()
        return h5py.File(side, "w")
    except OSError as err:
        raise EmodiffError(f"{side}: cannot write beside the store ({err})") from None


def _merge(side: Path, store: Path, name: str) -> None:
    """Copy the finished group from ``side`` into ``store`` under a temporary name, then rename."""
    if not store.exists():
        _create_store(store)
    parent_name, _, leaf = name.rpartition("/")
    with h5py.File(side, "r") as src, h5py.File(store, "a") as dst:
        parent = dst.require_group(parent_name) if parent_name else dst
        for stale in [k for k in parent if k.startswith(TMP_PREFIX)]:
            del parent[stale]  # left by a writer killed during its copy
        tmp = f"{TMP_PREFIX}{leaf}-{os.getpid()}"
        dst.copy(src["g"], parent, name=tmp)
        dst.flush()
        if leaf in parent:  # only with overwrite: write_group checked it under the same lock
            del parent[leaf]
        parent.move(tmp, leaf)


def attrs_dict(group: h5py.Group) -> dict[str, Any]:
    """A group's attrs as plain Python values (numpy scalars unwrapped)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in group.attrs.items()}


def write_table(group: h5py.Group, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
    """Write equal-length columns as 1-D datasets; str columns become UTF-8 strings."""
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of unequal length: {lengths}")
    for key, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype.kind != "U":
            group.create_dataset(key, data=values)
        else:
            group.create_dataset(key, data=np.array([str(v) for v in values], dtype=object), dtype=STRING)


def read_table(group: h5py.Group) -> dict[str, np.ndarray]:
    """Read every 1-D dataset of ``group`` (subgroups are skipped); strings come back as str arrays."""
    out: dict[str, np.ndarray] = {}
    for key, ds in group.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        if h5py.check_string_dtype(ds.dtype) is not None:
            out[key] = ds.asstr()[()].astype(str) if len(ds) else np.array([], dtype=str)
        else:
            out[key] = ds[()]
    return out
