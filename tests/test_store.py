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
