"""Fixtures shared by the generator tests: one toy store per session, a fresh copy per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from toy import make_toy_store


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory) -> Path:
    return make_toy_store(tmp_path_factory.mktemp("toy") / "toy.h5")


@pytest.fixture()
def store(toy_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s.h5"
    shutil.copy(toy_store, copy)
    return copy
