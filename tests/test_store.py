"""The store's contract: atomic groups, one writer, standard attrs, clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from emodiff import __version__
from emodiff import store as st
from emodiff.errors import EmodiffError


def _add(path: Path, name: str, value: int, overwrite: bool = False) -> None:
    with st.write_group(path, name, config={"value": value}, overwrite=overwrite) as g:
        g.create_dataset("x", data=np.arange(value))
        g.attrs["mine"] = value


def test_write_group_adds_group_with_standard_attrs(tmp_path):
    path = tmp_path / "s.h5"
    _add(path, "corpora/a", 5)
    with st.open_store(path) as f:
        g = f["corpora/a"]
        assert g["x"][()].tolist() == [0, 1, 2, 3, 4]
        assert g.attrs["mine"] == 5
        assert g.attrs["emodiff_version"] == __version__
        assert g.attrs["created"].endswith("+00:00")
        assert json.loads(g.attrs["config"]) == {"value": 5}
        assert g.attrs["config_hash"] == hashlib.sha256(g.attrs["config"].encode()).hexdigest()
    assert not list(tmp_path.glob("*.partial"))


def test_config_hash_ignores_key_order_but_not_values():
    assert st.config_hash({"a": 1, "b": 2}) == st.config_hash({"b": 2, "a": 1})
    assert st.config_hash({"a": 1})[1] != st.config_hash({"a": 2})[1]


def test_failure_inside_the_body_changes_nothing(tmp_path):
    path = tmp_path / "s.h5"
    _add(path, "corpora/a", 3)
    before = path.read_bytes()
    with pytest.raises(RuntimeError), st.write_group(path, "corpora/b", config={}) as g:
        g.create_dataset("half", data=np.zeros(10))
        raise RuntimeError("killed halfway")
    assert path.read_bytes() == before
    with pytest.raises(RuntimeError), st.write_group(path, "corpora/a", config={}, overwrite=True) as g:
        raise RuntimeError("overwrite that fails")
    with st.open_store(path) as f:
        assert st.visible(f["corpora"]) == ["a"]
        assert f["corpora/a/x"].shape == (3,)
    assert not list(tmp_path.glob("*.partial"))


def test_existing_group_needs_overwrite(tmp_path):
    path = tmp_path / "s.h5"
    _add(path, "corpora/a", 3)
    with pytest.raises(EmodiffError, match=r"already holds /corpora/a; pass --overwrite"):
        _add(path, "corpora/a", 4)
    _add(path, "corpora/a", 4, overwrite=True)
    _add(path, "corpora/b", 2)
    with st.open_store(path) as f:
        assert f["corpora/a/x"].shape == (4,)
        assert st.visible(f["corpora"]) == ["a", "b"]


def test_second_writer_gets_a_clear_error(tmp_path):
    path = tmp_path / "s.h5"
    with st.write_group(path, "corpora/a", config={}, what="prepare a"):
        with pytest.raises(EmodiffError, match=r"held by another writer \(pid \d+, prepare a\)"):
            _add(path, "corpora/b", 1)
    _add(path, "corpora/b", 1)  # the lock is released afterwards


def test_stale_tmp_group_is_ignored_and_cleaned(tmp_path):
    path = tmp_path / "s.h5"
    _add(path, "corpora/a", 3)
    with h5py.File(path, "a") as f:  # what a writer killed during its copy leaves behind
        f.create_group("corpora/.tmp-b-123").create_dataset("x", data=[1])
    with st.open_store(path) as f:
        assert st.visible(f["corpora"]) == ["a"]
    _add(path, "corpora/c", 1)
    with h5py.File(path, "r") as f:
        assert sorted(f["corpora"].keys()) == ["a", "c"]


@pytest.mark.parametrize("where", ["missing-dir", "parent-is-file"])
def test_unwritable_store_path(tmp_path, where):
    if where == "missing-dir":
        path = tmp_path / "nope" / "s.h5"
    else:
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "s.h5"
    with pytest.raises(EmodiffError, match=r"cannot write the store there"):
        _add(path, "corpora/a", 1)


def test_not_a_store(tmp_path):
    path = tmp_path / "s.h5"
    path.write_text("hello")
    with pytest.raises(EmodiffError, match=r"s\.h5: not an HDF5 file"), st.open_store(path):
        pass
    with pytest.raises(EmodiffError, match=r"not an HDF5 file"):
        _add(path, "corpora/a", 1)
    assert path.read_text() == "hello"
    with pytest.raises(EmodiffError, match=r"no store there"), st.open_store(tmp_path / "missing.h5"):
        pass


def test_a_directory_is_no_store(tmp_path):
    """--store DIR: one line that says so (HDF5's own report has a newline and called the file damaged)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for attempt in (lambda: st.open_store(folder).__enter__(), lambda: _add(folder, "corpora/a", 1)):
        with pytest.raises(EmodiffError) as err:
            attempt()
        assert str(err.value) == f"{folder}: a directory, not a store file (expected an emodiff HDF5 file, e.g. " \
                                 f"{folder / 'emodiff.h5'})"
    assert [p.name for p in folder.iterdir()] == ["keep.txt"] and (folder / "keep.txt").read_text() == "mine"


def test_hdf5_reason_is_one_line():
    err = OSError("Unable to open file (file read failed: time = Fri Dec  4 21:48:58 2026\n, filename = 'x')")
    assert st.hdf5_reason(err) == "file read failed: time = Fri Dec 4 21:48:58 2026 , filename = 'x'"


def test_resolve_store_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(st.STORE_ENV, raising=False)
    assert st.resolve_store(None) == Path("emodiff.h5")
    monkeypatch.setenv(st.STORE_ENV, str(tmp_path / "env.h5"))
    assert st.resolve_store(None) == tmp_path / "env.h5"
    assert st.resolve_store(tmp_path / "flag.h5") == tmp_path / "flag.h5"


def test_table_round_trip(tmp_path):
    path = tmp_path / "s.h5"
    with st.write_group(path, "t", config={}) as g:
        st.write_table(g, {"name": ["a", "ünï", ""], "n": np.array([1, 2, 3], np.int8)})
        with pytest.raises(ValueError, match="unequal length"):
            st.write_table(g.create_group("bad"), {"a": [1], "b": [1, 2]})
    with st.open_store(path) as f:
        table = st.read_table(f["t"])
    assert table["name"].tolist() == ["a", "ünï", ""]
    assert table["n"].dtype == np.int8 and table["n"].tolist() == [1, 2, 3]


# --- a side file left by a killed run or a full disk; a full disk met by HDF5 -------------------------------

NO_SPACE_H5 = ("Unable to synchronously {} (file write failed: time = Mon Nov 30 17:59:48 2026\n, filename = "
               "'s.h5', file descriptor = 4, errno = 28, error message = 'No space left on device', buf = 0x1, "
               "total write size = 26624, bytes this sub-write = 26624, offset = 303104)")


class _Killed(Exception):
    """Stands for the kill that stops a resumable writer in its body."""


def _left_side_file(path: Path) -> Path:
    """A resumable writer's side file for synthetic/s, as a run stopped in its body leaves it."""
    with pytest.raises(_Killed), st.write_group(path, "synthetic/s", config={"n": 8}, resumable=True) as g:
        g.create_dataset("mel", data=np.random.default_rng(0).random((64, 40)))
        g.attrs["rows_done"] = 32
        raise _Killed
    side = path.with_name(path.name + ".synthetic.s.partial")
    assert side.exists()
    return side


def _break(side: Path, how: str) -> None:
    data = bytearray(side.read_bytes())
    if how == "garbage":
        side.write_bytes(np.random.default_rng(1).bytes(5000))
    elif how == "truncated":
        side.write_bytes(data[: len(data) // 2])
    else:  # HDF5 wrote objects past the end the superblock records, then died: reads fail with "... EOA"
        assert data[8] == 0  # superblock version 0: its end-of-file address is the 8 bytes at 40
        data[40:48] = (3000).to_bytes(8, "little")
        side.write_bytes(data)


@pytest.mark.parametrize("resumable", [True, False])
@pytest.mark.parametrize("how", ["garbage", "truncated", "end-of-file address"])
def test_a_broken_side_file_is_removed_and_the_write_goes_on(tmp_path, how: str, resumable: bool):
    path = tmp_path / "s.h5"
    _add(path, "corpora/a", 3)
    _break(_left_side_file(path), how)
    with st.write_group(path, "synthetic/s", config={"n": 8}, resumable=resumable, overwrite=True) as g:
        assert list(g) == [] and "rows_done" not in g.attrs  # afresh: nothing of the broken file
        g.create_dataset("mel", data=np.ones((8, 40)))
    with st.open_store(path) as f:
        assert f["synthetic/s/mel"].shape == (8, 40)
    assert not list(tmp_path.glob("*.partial"))


def test_an_intact_side_file_of_the_same_config_is_resumed(tmp_path):
    path = tmp_path / "s.h5"
    _left_side_file(path)
    with st.write_group(path, "synthetic/s", config={"n": 8}, resumable=True) as g:
        assert g.attrs["rows_done"] == 32 and g["mel"].shape == (64, 40)
    with st.write_group(path, "synthetic/t", config={"n": 9}, resumable=True) as g:
        assert list(g) == []


@pytest.mark.parametrize("resumable", [True, False])
def test_a_full_disk_met_by_hdf5_in_the_side_file_is_one_line(tmp_path, monkeypatch, resumable: bool):
    # h5py raises RuntimeError, not OSError, when a flush finds the disk full; the side file cannot be
    # flushed whole, so it is emptied (for HDF5 to close it) and removed, resumable or not
    path = tmp_path / "s.h5"
    _add(path, "corpora/a", 3)
    before = path.read_bytes()

    def full(self):
        raise RuntimeError(NO_SPACE_H5.format("flush file"))

    opened = []
    with pytest.raises(EmodiffError, match=r"s\.h5\.synthetic\.s\.partial: no space left on device while writing "
                                           r"/synthetic/s beside the store; .*s\.h5 is unchanged"):
        with st.write_group(path, "synthetic/s", config={}, resumable=resumable) as g:
            opened.append(g.file)
            g.create_dataset("mel", data=np.ones((8, 40)))
            monkeypatch.setattr(h5py.File, "flush", full)
            g.file.flush()
    assert not opened[0].id.valid  # closed before the error: no handle left for the interpreter's exit
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.partial"))


def test_a_full_disk_during_the_copy_as_hdf5_reports_it(tmp_path, monkeypatch):
    # HDF5's copy fails part-way with RuntimeError (errno 28 in its text): the half copy is deleted
    path = tmp_path / "s.h5"
    _add(path, "corpora/a", 3)
    copy = h5py.Group.copy

    def copy_then_fill(self, *args, **kwargs):
        copy(self, *args, **kwargs)
        raise RuntimeError(NO_SPACE_H5.format("copy object"))

    monkeypatch.setattr(h5py.Group, "copy", copy_then_fill)
    with pytest.raises(EmodiffError, match=r"s\.h5: no space left on device while adding /corpora/b; the store "
                                           r"holds what it held before"):
        _add(path, "corpora/b", 4)
    monkeypatch.undo()
    with st.open_store(path) as f:
        assert list(f["corpora"]) == ["a"] and f["corpora/a/x"].shape == (3,)
    assert not list(tmp_path.glob("*.partial"))
    _add(path, "corpora/b", 4)
