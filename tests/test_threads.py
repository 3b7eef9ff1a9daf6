"""Thread counts from the cores a process may use, every heavy command's --threads, and OpenMP threads
that sleep rather than spin (issue 10, reliability 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from emodiff import parallel
from emodiff.cli import app
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareJob

runner = CliRunner()
HEAVY = ("prepare", "augment", "embed", "train", "sample", "classify", "quality", "report", "study")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """--threads sets torch's threads for the rest of the process: give the next test back its own."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def seen(monkeypatch) -> list[int]:
    """Replace the jobs of quality, report and prepare with one that records torch's thread count (and the
    worker count of prepare's config) and stops the command."""
    counts: list[int] = []

    def record(*args: object, **kwargs: object) -> None:
        counts.append(torch.get_num_threads())
        for arg in args:
            if isinstance(arg, PrepareJob):
                counts.append(arg.workers)
        raise EmodiffError("job reached")

    monkeypatch.setattr("emodiff.quality.assess", record)
    monkeypatch.setattr("emodiff.report.build_report", record)
    monkeypatch.setattr("emodiff.prepare.prepare", record)
    return counts


def _reached(result) -> None:
    assert result.exit_code == 1, result.output
    assert "job reached" in result.stderr


@pytest.mark.parametrize("command", HEAVY)
def test_every_heavy_command_has_threads(command: str):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--threads" in result.stdout
    assert "CPU affinity" in " ".join(w for w in result.stdout.split() if w != "\u2502")  # rich's box rule


@pytest.mark.parametrize("command", ["quality", "report"])
def test_threads_sets_torch_threads_during_the_command(command: str, seen: list[int], tmp_path: Path):
    torch.set_num_threads(2)
    _reached(runner.invoke(app, [command, "--store", str(tmp_path / "s.h5"), "--threads", "1"]))
    assert seen == [1]


def test_default_threads_are_the_available_cores(seen: list[int], tmp_path: Path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    _reached(runner.invoke(app, ["quality", "--store", str(tmp_path / "s.h5")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a user's explicit count wins over the affinity
    _reached(runner.invoke(app, ["quality", "--store", str(tmp_path / "s.h5")]))
    assert seen == [3, 2]


def test_workers_default_to_threads(seen: list[int], tmp_path: Path):
    args = ["prepare", "ravdess", str(tmp_path), "--store", str(tmp_path / "s.h5")]
    _reached(runner.invoke(app, [*args, "--threads", "1"]))
    _reached(runner.invoke(app, [*args, "--threads", "1", "--workers", "3"]))
    assert seen == [1, 1, 1, 3]  # (torch threads, workers) per run
    torch.set_num_threads(1)
    assert PrepareJob(tmp_path / "s.h5", "ravdess", tmp_path).workers == 1  # as the study builds it: torch's count


@pytest.mark.parametrize("value", ["0", "-2"])
def test_threads_below_one_is_one_line_error(value: str, seen: list[int], tmp_path: Path):
    result = runner.invoke(app, ["quality", "--store", str(tmp_path / "s.h5"), "--threads", value])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [f"error: --threads must be at least 1, got {value}"]
    assert seen == []


def test_available_cores_follow_the_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1}, raising=False)
    assert parallel.available_cores() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert parallel.available_cores() == 6
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert parallel.available_cores() == 5
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert parallel.available_cores() == 1


def test_use_threads():
    assert parallel.use_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(EmodiffError, match="--threads must be at least 1, got 0"):
        parallel.use_threads(0)


_MAIN = """
import os, sys
assert "torch" not in sys.modules, "emodiff.cli imported torch: too late for the OpenMP settings"
sys.argv = ["emodiff", "--version"]
try:
    main()
except SystemExit:
    pass
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("KMP_BLOCKTIME"))
"""


@pytest.mark.parametrize(("user", "expected"), [({}, "PASSIVE 0"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE 0"),
                                                ({"KMP_BLOCKTIME": "30"}, "PASSIVE 30")])
def test_command_makes_openmp_wait_passively_unless_the_user_chose(user: dict[str, str], expected: str):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
    code = "from emodiff.cli import main\n" + _MAIN
    out = subprocess.run([sys.executable, "-c", code], env={**env, **user}, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == expected


def test_passive_openmp_is_too_late_once_torch_is_loaded():
    environ: dict[str, str] = {}
    assert "torch" in sys.modules
    assert parallel.passive_openmp(environ) == [] and environ == {}
