"""The HDF5 store: one file that every step reads and appends its own group to.

Contract (docs/store.md has the schema):

- A group is written whole or not at all. :func:`write_group` builds it in a side file next to
  the store; only when the body has finished does it copy the group into the store under a
  temporary name (``.tmp-*``) and rename it. A failure or a kill during the body leaves the
  store untouched; one during the few seconds of the copy leaves at most a ``.tmp-*`` group,
  which readers ignore and the next writer deletes.
- One writer at a time: a writer holds an exclusive ``flock`` on ``<store>.lock`` from start
  to end; a second writer gets an EmodiffError at once. The operating system drops the lock
  when a process dies, so a killed run never leaves a stale lock. Readers and the seconds of a
  writer's copy keep apart by HDF5's own lock on the file, each waiting for the other
  (:data:`READ_WAIT_S`, side_file.MERGE_WAIT_S).
- A study's job writes no store: inside :func:`writes_into` its groups are built, finished, in
  its own folder, and the study's driver adds them (:func:`adopt`).
- Every group carries attrs ``emodiff_version``, ``created`` (UTC, ISO 8601), ``config``
  (canonical JSON of the settings that made it) and ``config_hash`` (sha256 of that JSON).
- A store is marked as one: its root has the attr ``emodiff_store``. Readers and writers
  refuse an HDF5 file without the mark (or with a dataset where the store keeps a section
  group) with a one-line EmodiffError; emodiff never writes into a file it did not make.
- A full disk (ENOSPC) while a group is written is a one-line EmodiffError naming the file;
  the store is left as it was (the half-copied ``.tmp-*`` group is deleted when the disk fills
  during the copy, or left for the next writer when even that cannot be written).
- A side file left by a kill or a full disk is resumed from only when it reads back whole with
  the same config, else removed (emodiff/side_file.py).
- A damaged store is named as such in one line: one HDF5 cannot open (truncated, overwritten
  header) by :func:`open_store`, a dataset it cannot read by :func:`read_data`, which readers use.
"""

from __future__ import annotations

import contextlib
import contextvars
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
from emodiff.errors import EmodiffError, no_space
from emodiff.paths import checked_path
from emodiff.side_file import TMP_PREFIX, close_side, merge, open_side
from emodiff.write_lock import WriteLock, held_by_another, open_h5

DEFAULT_STORE = "emodiff.h5"
STORE_ENV = "EMODIFF_STORE"
STRING = h5py.string_dtype("utf-8")
MARK = "emodiff_store"  # root attr of every store emodiff made
SECTIONS = ("corpora", "embeddings", "runs", "synthetic", "augmented", "results", "quality")
NOT_A_STORE = "not an emodiff store"
READ_WAIT_S = 120.0  # how long a reader waits for a writer's copy into the store (seconds, unless a disk is stuck)
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
    with _read_handle(path) as handle:
        reason = foreign_reason(handle)
        if reason is not None:
            raise not_a_store(path, reason)
        yield handle


def _read_handle(path: Path) -> h5py.File:
    """``path`` opened to read, after waiting up to READ_WAIT_S for a writer's copy into it to finish."""
    try:
        return open_h5(path, "r", READ_WAIT_S)
    except OSError as err:
        raise _open_failure(path, err) from None


INSPECT_HINT = "`emodiff inspect` lists what is still readable"


def _open_failure(path: Path, err: OSError) -> EmodiffError:
    """The one-line error for a file h5py cannot open: a directory, held by a writer, unreadable, not HDF5, or
    damaged."""
    text = str(err).lower()
    if path.is_dir():
        return EmodiffError(f"{path}: a directory, not a store file (expected an emodiff HDF5 file, e.g. "
                            f"{path / DEFAULT_STORE})")
    if held_by_another(err):
        return EmodiffError(f"{path}: the store is being written right now (waited {READ_WAIT_S:.0f} s); try again "
                            "in a moment")
    if isinstance(err, PermissionError):
        return EmodiffError(f"{path}: cannot be read (permission denied); choose another --store")
    if "file signature not found" in text:
        return EmodiffError(f"{path}: not an HDF5 file (expected an emodiff store)")
    return EmodiffError(f"{path}: the file is damaged (truncated or overwritten: {hdf5_reason(err)}); HDF5 cannot "
                        "open it, so nothing in it can be read: restore it from a copy or make it again")


def hdf5_reason(err: BaseException) -> str:
    """HDF5's own words in an h5py error: the text in its outer parentheses (``truncated file: eof = ...``)."""
    text = " ".join(str(err).split())  # HDF5's report can hold a newline (after its ctime timestamp)
    start = text.find("(")
    return text[start + 1:-1] if start >= 0 and text.endswith(")") else text


def damaged(node: h5py.Group | h5py.Dataset, err: BaseException) -> EmodiffError:
    """The one error for a group or dataset of an open store that HDF5 cannot read."""
    return EmodiffError(f"{node.file.filename}: {node.name} could not be read (the file is damaged: "
                        f"{hdf5_reason(err)}); {INSPECT_HINT}")


@contextlib.contextmanager
def reading(node: h5py.Group | h5py.Dataset) -> Iterator[None]:
    """Turn HDF5's failure to read ``node`` inside the block into :func:`damaged`'s one-line error."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        raise damaged(node, err) from None


def read_data(ds: h5py.Dataset, sel: Any = ()) -> np.ndarray:
    """``ds[sel]`` (all of it by default); EmodiffError naming the store and ``ds`` when the file is damaged."""
    with reading(ds):
        return ds[sel]


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
        with _read_handle(path) as handle:
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
    ``resumable`` the side file survives a failure (unless a full disk kept it from being
    written whole), and a later call with the same ``config`` yields its group again as it was
    left (the caller sees what is already written and goes on); another config, or a side file
    that does not read back whole, starts afresh. With ``wait_s`` a writer finding the lock held waits that many
    seconds for it before giving up. Inside :func:`writes_into` the group is built in that folder instead and
    left there finished, for :func:`adopt` to add. Raises
    EmodiffError if the group exists and ``overwrite`` is false, if the store is held by
    another writer, if the store's folder is not writable, if the file at ``store`` is not an
    emodiff store (see :func:`foreign_reason`), or if the disk fills up (the store as it was).
    """
    store = Path(store)
    name = name.strip("/")
    folder = _JOB_FOLDER.get()
    flat = name.replace("/", ".")
    # A job of a study (writes_into) builds its group in its own folder, for the driver to add: no store lock.
    with WriteLock(store, what or f"writing {name}", wait_s) if folder is None else contextlib.nullcontext():
        _check_writable(store, name)
        if not overwrite and has_group(store, name):
            raise EmodiffError(f"{store}: already holds /{name}; pass --overwrite to replace it")
        side = store.with_name(f"{store.name}.{flat}.partial") if folder is None else folder / f"{flat}.partial"
        text, digest = config_hash(config)
        side_file = open_side(side, digest if resumable else None)
        keep = resumable  # whether the side file outlives a failure (to be resumed from)
        completed = merging = False
        try:
            try:
                side_file.attrs.update(emodiff_group=name, emodiff_overwrite=overwrite)  # what adopt() needs
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
            finally:
                close_error = close_side(side_file)
                keep = keep and close_error is None
            if close_error is not None:
                raise close_error
            merging = True
            if folder is not None:
                os.replace(side, folder / f"{flat}{JOB_OUTPUT}")
            else:
                if not store.exists():
                    _create_store(store)
                merge(side, store, name)
            completed = True
        except (OSError, RuntimeError) as err:  # h5py raises either for a write that found the disk full
            if not no_space(err):
                raise
            if merging:
                raise EmodiffError(f"{store}: no space left on device while adding /{name}; the store holds what "
                                   "it held before; free some space and run again") from None
            raise EmodiffError(f"{side}: no space left on device while writing /{name} beside the store; "
                               f"{store} is unchanged; free some space and run again") from None
        finally:
            if completed or not keep:
                side.unlink(missing_ok=True)


JOB_OUTPUT = ".group.h5"  # a finished group a job built in its folder, waiting for the driver to add it
_JOB_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("emodiff_job_folder", default=None)


@contextlib.contextmanager
def writes_into(folder: Path) -> Iterator[None]:
    """Inside the block, :func:`write_group` builds each group in ``folder`` (``<section>.<name>.group.h5``) and
    leaves it there finished, without the store's lock: a study's job writes only its own folder, and its driver,
    the store's one writer, adds what it left (:func:`adopt`). The store is still read as usual."""
    folder.mkdir(parents=True, exist_ok=True)
    token = _JOB_FOLDER.set(folder)
    try:
        yield
    finally:
        _JOB_FOLDER.reset(token)


def job_outputs(folder: Path) -> list[Path]:
    """The finished groups a job left in ``folder`` (:func:`writes_into`), in name order."""
    return sorted(folder.glob(f"*{JOB_OUTPUT}")) if folder.is_dir() else []


def adopt(store: Path, output: Path, wait_s: float = 0.0) -> str:
    """Add the finished group in ``output`` (a :func:`job_outputs` file) to the store, under its write lock, and
    remove the file; returns the group's name.

    A group already in the store with the same config (a driver killed after adding it, rerun) only removes
    the file; one with another config is kept, and the file too, with an EmodiffError, unless the job was
    asked to overwrite it.
    """
    with h5py.File(output, "r") as f:
        name = str(f.attrs["emodiff_group"])
        overwrite = bool(f.attrs["emodiff_overwrite"])
        digest = str(f["g"].attrs["config_hash"])
    with WriteLock(store, f"adding /{name}", wait_s):
        _check_writable(store, name)
        if has_group(store, name) and not overwrite:
            with open_store(store) as f:
                same = f[name].attrs.get("config_hash") == digest
            if not same:
                raise EmodiffError(f"{store}: already holds /{name} made with other settings; {output} is kept; "
                                   "remove one of them")
        else:
            if not store.exists():
                _create_store(store)
            merge(output, store, name)
    output.unlink(missing_ok=True)
    return name


def attrs_dict(group: h5py.Group) -> dict[str, Any]:
    """A group's attrs as plain Python values (numpy scalars unwrapped); EmodiffError naming the group
    when the file is damaged (:func:`damaged`)."""
    with reading(group):
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
    """Read every 1-D dataset of ``group`` (subgroups are skipped); strings come back as str arrays.
    EmodiffError naming the dataset when the file is damaged (:func:`read_data`)."""
    out: dict[str, np.ndarray] = {}
    for key, ds in group.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        if h5py.check_string_dtype(ds.dtype) is not None:
            with reading(ds):
                out[key] = ds.asstr()[()].astype(str) if len(ds) else np.array([], dtype=str)
        else:
            out[key] = read_data(ds)
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
