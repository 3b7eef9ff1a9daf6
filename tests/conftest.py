"""Fixtures shared by the generator tests: one toy store per session, a fresh copy per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from toy import make_toy_store

if os.environ.get("PYTEST_XDIST_WORKER"):
    # A worker starts with COLUMNS and LINES set to its controller's terminal, which rich reads once, when
    # the CLI's consoles are made, and then ignores a test's own COLUMNS: let each test's environment decide.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker is one of several processes sharing the cores: one torch thread
    each, or two workers' thread pools would fight over the same two cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


# Files that keep one worker busy for a minute or more (measured: docs/performance.md), longest first. Under
# `--dist loadfile --no-loadscope-reorder` (scripts/test.sh) xdist hands out files in collection order, so these
# start first and the short files fill the gaps: with xdist's own order (most tests first) the one-test files
# that train a model came last, and one worker ran them alone for a minute while the other sat idle.
LONGEST_FIRST = ("test_conditioning.py", "test_study.py", "test_classify.py", "test_quality.py",
                 "test_study_executors.py", "test_generator_unet.py", "test_gan.py", "test_jobs.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as collected


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory) -> Path:
    return make_toy_store(tmp_path_factory.mktemp("toy") / "toy.h5")


@pytest.fixture()
def store(toy_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s.h5"
    shutil.copy(toy_store, copy)
    return copy
