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
- A store is marked as one: its root has the attr ``emodiff_store``. Readers and writers
  refuse an HDF5 file without the mark (or with a dataset where the store keeps a section
  group) with a one-line EmodiffError; emodiff never writes into a file it did not make.
- A full disk (ENOSPC) while a group is written is a one-line EmodiffError naming the file;
  the store is left as it was (at most a ``.tmp-*`` group when the disk fills during the copy).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff import __version__
from emodiff.errors import EmodiffError
from emodiff.paths import checked_path

DEFAULT_STORE = "emodiff.h5"
STORE_ENV = "EMODIFF_STORE"
TMP_PREFIX = ".tmp-"
STRING = h5py.string_dtype("utf-8")
MARK = "emodiff_store"  # root attr of every store emodiff made
SECTIONS = ("corpora", "embeddings", "runs", "synthetic", "augmented", "results", "quality")
NOT_A_STORE = "not an emodiff store"
SIDE_ROOM = 120  # bytes the longest side file adds to the store's name: ".synthetic.<100 characters>.partial"


def resolve_store(path: str | Path | None) -> Path:
    """--store PATH, else $EMODIFF_STORE, else ./emodiff.h5 (precedence in that order).

    EmodiffError when the path is too long for the file system, with room for the side files beside
    the store (``<store>.<section>.<name>.partial``, a group name being at most 100 characters).
    """
    if path:
        return checked_path(path, "--store", room=SIDE_ROOM)
    env = os.environ.get(STORE_ENV)
    return checked_path(env, f"${STORE_ENV}", room=SIDE_ROOM) if env else Path(DEFAULT_STORE)


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
        reason = foreign_reason(handle)
        if reason is not None:
            raise not_a_store(path, reason)
        yield handle


def not_a_store(path: Path, reason: str) -> EmodiffError:
    """The one error for an HDF5 file that is not an emodiff store, for readers and writers alike."""
    return EmodiffError(f"{path}: {NOT_A_STORE} ({reason}); emodiff reads and writes only stores it made "
                        "and leaves this file alone: choose another --store")


def foreign_reason(f: h5py.File) -> str | None:
    """Why the open HDF5 file ``f`` is not an emodiff store, or None when it is one.

    A store has the root attr ``emodiff_store`` (set when emodiff creates it) and keeps each
    section (``/corpora``, ``/runs``, ...) as a group.
    """
    if MARK not in f.attrs:
        return f"no {MARK} mark at its root"
    for section in SECTIONS:
        kind = _kind(f, section)
        if kind is not None and kind != "group":
            return f"/{section} is a {kind}, where a store keeps a group"
    return None


def _kind(group: h5py.Group, name: str) -> str | None:
    """"group", "dataset" or another word for the member ``name`` of ``group``; None when absent."""
    if name not in group:
        return None
    cls = group.get(name, getclass=True)
    if cls is not None and issubclass(cls, h5py.Group):
        return "group"
    if cls is not None and issubclass(cls, h5py.Dataset):
        return "dataset"
    return "link to no object"


def no_space(err: BaseException) -> bool:
    """Whether ``err`` says the disk is full (ENOSPC or a quota), from the OS or from HDF5 via h5py."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return "No space left on device" in text or "errno = 28," in text


def has_group(path: Path, name: str) -> bool:
    """Whether the store at ``path`` exists and holds the (complete) group ``name``."""
    if not Path(path).exists():
        return False
    with open_store(path) as f:
        return name in f


def visible(group: h5py.Group) -> list[str]:
    """Names of the member groups of ``group`` without in-flight ``.tmp-*`` groups, sorted.

    Datasets (and links to nothing) are left out: every member of a store's section is a
    group, so anything else was put there by another tool (:func:`foreign_members` names it).
    """
    return sorted(k for k in group if not k.startswith(TMP_PREFIX) and _kind(group, k) == "group")


def foreign_members(group: h5py.Group) -> list[str]:
    """Names of the members of ``group`` that are not groups (datasets another tool put there), sorted."""
    return sorted(k for k in group if not k.startswith(TMP_PREFIX) and _kind(group, k) != "group")


class _WriteLock:
    """An exclusive, non-blocking flock on ``<store>.lock``, released by the OS on death."""

    def __init__(self, store: Path, what: str, wait_s: float = 0.0):
        self.path = store.with_name(store.name + ".lock")
        self.what = what
        self.wait_s = wait_s  # poll this long for another writer to finish before giving up
        self.fd: int | None = None

    def __enter__(self) -> _WriteLock:
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


def _create_store(path: Path) -> None:
    """Create an empty store atomically (write a new file, then rename it into place)."""
    tmp = path.with_name(path.name + f".new-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs[MARK] = 1
            f.attrs["emodiff_version"] = __version__
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_writable(path: Path, name: str = "") -> None:
    """EmodiffError unless ``path`` is absent or a writable emodiff store that can take the group ``name``."""
    if path.exists():
        try:
            handle = h5py.File(path, "r")
        except OSError:
            raise EmodiffError(f"{path}: not an HDF5 file (expected an emodiff store)") from None
        with handle:
            reason = foreign_reason(handle)
            if reason is not None:
                raise not_a_store(path, reason)
            parts = [part for part in name.split("/") if part]
            group: h5py.Group = handle
            for depth, part in enumerate(parts):
                kind = _kind(group, part)
                if kind is None:
                    break
                if kind != "group":
                    where = "/".join(parts[: depth + 1])
                    raise EmodiffError(f"{path}: /{where} is a {kind} that emodiff did not write, where /{name} "
                                       "needs a group; remove it (or choose another --store)")
                group = group[part]
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
    wait_s: float = 0.0,
) -> Iterator[h5py.Group]:
    """Build the group ``name`` (for example ``corpora/ravdess``) and add it to the store.

    Yields an empty h5py group in a side file; the caller fills it and may set attrs. On a
    clean exit the group gets the standard attrs and replaces (with ``overwrite``) or joins the
    store's groups atomically. On an exception nothing in the store changes. With
    ``resumable`` the side file survives a failure, and a later call with the same ``config``
    yields its group again as it was left (the caller sees what is already written and goes
    on); another config starts afresh. With ``wait_s`` a writer finding the lock held waits that many
    seconds for it before giving up. Raises
    EmodiffError if the group exists and ``overwrite`` is false, if the store is held by
    another writer, if the store's folder is not writable, if the file at ``store`` is not an
    emodiff store (see :func:`foreign_reason`), or if the disk fills up (the store as it was).
    """
    store = Path(store)
    name = name.strip("/")
    with _WriteLock(store, what or f"writing {name}", wait_s):
        _check_writable(store, name)
        if not overwrite and has_group(store, name):
            raise EmodiffError(f"{store}: already holds /{name}; pass --overwrite to replace it")
        side = store.with_name(f"{store.name}.{name.replace('/', '.')}.partial")
        text, digest = config_hash(config)
        side_file = _open_side(side, digest if resumable else None)
        completed = merging = False
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
            merging = True
            _merge(side, store, name)
            completed = True
        except OSError as err:
            if not no_space(err):
                raise
            if merging:
                raise EmodiffError(f"{store}: no space left on device while adding /{name}; the store holds what "
                                   "it held before (the next writer removes any partial copy); free some space "
                                   "and run again") from None
            raise EmodiffError(f"{side}: no space left on device while writing /{name} beside the store; "
                               f"{store} is unchanged; free some space and run again") from None
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
        if no_space(err):
            raise EmodiffError(f"{side}: no space left on device; the store is unchanged; free some space "
                               "and run again") from None
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


def check_can_write(path: Path, name: str) -> None:
    """Fail now, with one line, if a later :func:`write_group` on ``path`` could not run: the store is
    not writable, is not an emodiff store, or its folder takes no lock file. A writer holding the lock
    now is not an error (it may finish first); a long step waits for it at the end (``wait_s``)."""
    path = Path(path)
    folder = path.resolve().parent
    if not folder.is_dir():
        raise EmodiffError(f"{path}: its folder {folder} does not exist; choose another --store")
    if not os.access(folder, os.W_OK):
        raise EmodiffError(f"{path}: its folder {folder} is read-only (the store needs a lock and side files "
                           "there); choose another --store")
    _check_writable(path, name)
