"""The command line against the real app: flags, tables, one-line errors, exit codes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import one_line_error
from typer.testing import CliRunner

from emodiff import __version__
from emodiff import store as st
from emodiff.cli import app
from emodiff.data import ravdess_sample

runner = CliRunner()


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return tmp_path / "s.h5"


def test_prepare_then_inspect(store: Path):
    result = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store), "--limit", "16"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "/corpora/ravdess: 16 utterances" in out
    assert "neutral" in out and "angry" in out and "real time" in out
    again = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store)])
    assert again.exit_code == 0
    assert "already holds /corpora/ravdess (16 utterances" in " ".join(again.stdout.split())
    shown = runner.invoke(app, ["inspect", "--store", str(store)])
    assert shown.exit_code == 0, shown.output
    out = " ".join(shown.stdout.split())
    for text in ("/corpora/ravdess", "per speaker", "config_hash", "log_max", "16 utterances"):
        assert text in out, text


def test_corpus_is_named_as_prepare_wrote_it(store: Path):
    """prepare RAVDESS writes /corpora/ravdess; --corpus RAVDESS then finds it in every command that reads it."""
    result = runner.invoke(app, ["prepare", "RAVDESS", str(ravdess_sample()), "--store", str(store), "--limit", "8"])
    assert result.exit_code == 0, result.output
    done = runner.invoke(app, ["augment", "speed", "--corpus", "RAVDESS", "--store", str(store), "--factors", "1.1"])
    assert done.exit_code == 0, done.output
    assert st.has_group(store, "augmented/ravdess/speed") and not st.has_group(store, "augmented/RAVDESS")
    one_line_error(runner.invoke(app, ["augment", "speed", "--corpus", "../x", "--store", str(store)]),
                   "--corpus '../x': expected a corpus name of")


def test_store_from_environment(store: Path, monkeypatch):
    monkeypatch.setenv("EMODIFF_STORE", str(store))
    result = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--limit", "4"])
    assert result.exit_code == 0, result.output
    assert st.has_group(store, "corpora/ravdess")


def test_missing_root_is_one_line(store: Path, tmp_path: Path):
    result = runner.invoke(app, ["prepare", "iemocap", str(tmp_path / "nope"), "--store", str(store)])
    one_line_error(result, "nope: no such directory")
    assert not store.exists()


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_workers_below_one_are_refused_alike(store: Path, workers: str):
    """One rule for --workers of prepare and augment: 0 is refused as -1 is (0 was silently the default)."""
    prepare = ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store)]
    one_line_error(runner.invoke(app, [*prepare, "--workers", workers]), f"--workers must be at least 1, got {workers}",
                   first=True)
    assert not store.exists()
    assert runner.invoke(app, [*prepare, "--limit", "4"]).exit_code == 0
    result = runner.invoke(app, ["augment", "speed", "--store", str(store), "--workers", workers])
    one_line_error(result, f"--workers must be at least 1, got {workers}", first=True)
    with st.open_store(store) as f:
        assert "augmented" not in f


def test_wrong_layout_names_what_was_expected(store: Path, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["prepare", "iemocap", str(tmp_path / "empty"), "--store", str(store)])
    one_line_error(result, "not an IEMOCAP release", "Session1..Session5")


def test_unknown_corpus(store: Path):
    result = runner.invoke(app, ["prepare", "timit", ".", "--store", str(store)])
    one_line_error(result, "unknown corpus 'timit'", "iemocap, msp-improv, crema-d, ravdess")


def test_unwritable_store(tmp_path: Path):
    store = tmp_path / "no" / "such" / "dir" / "s.h5"
    result = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store), "--limit", "2"])
    one_line_error(result, "cannot write the store there")


def test_store_held_by_another_writer(store: Path):
    with st.write_group(store, "corpora/other", config={}, what="prepare other"):
        args = ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store), "--limit", "2"]
        result = runner.invoke(app, args)
    one_line_error(result, "held by another writer", "prepare other")


def test_inspect_without_store(tmp_path: Path):
    result = runner.invoke(app, ["inspect", "--store", str(tmp_path / "none.h5")])
    one_line_error(result, "none.h5: no store there")


def test_strict_flag(store: Path, tmp_path: Path):
    root = tmp_path / "r" / "Actor_01"
    root.mkdir(parents=True)
    (root / "03-01-05-01-01-01-01.wav").write_bytes(b"")
    result = runner.invoke(app, ["prepare", "ravdess", str(tmp_path / "r"), "--store", str(store), "--strict"])
    one_line_error(result, "03-01-05-01-01-01-01.wav: cannot decode audio", "--strict")


def test_every_flag_is_documented():
    for command in ("prepare", "embed", "inspect"):
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0
        lines = [ln for ln in result.stdout.splitlines() if ln.strip().startswith(("│ --", "│ *"))]
        assert lines, result.stdout
        for line in lines:
            # an option row has its flag, then a help text after the type column
            assert len(line.split("│")[1].split()) > 2, line


def test_help_keeps_every_bracket():
    """Rich reads [word] in a help text as markup and drops it (``emodiff[ray]`` became ``emodiff``)."""
    import typer.main

    checked = 0
    for name, command in typer.main.get_command(app).commands.items():
        shown = None
        for param in command.params:
            for bracket in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
                if shown is None:
                    out = runner.invoke(app, [name, "--help"], terminal_width=200).stdout
                    shown = " ".join(" ".join(out.replace("│", " ").split()).split())
                assert " ".join(bracket.split()) in shown, f"emodiff {name} --help lost {bracket}"
                checked += 1
    assert checked >= 5  # the sample, classify and study flags that show ranges, optional parts, extras


def test_version_and_module_entry_point():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout
    done = subprocess.run([sys.executable, "-m", "emodiff", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "prepare" in done.stdout and "embed" in done.stdout


def test_console_script_error_has_no_traceback(tmp_path: Path):
    exe = Path(sys.executable).with_name("emodiff")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    cmd = [str(exe), "prepare", "ravdess", str(tmp_path / "missing")]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing'}: no such directory (expected the RAVDESS folder holding Actor_01..Actor_24)"
    ]


def test_study_add_experiments_extends_the_recipe(monkeypatch, tmp_path: Path):
    """--add-experiments runs the recipe's experiments and the added ones (once each); a bad one is one line."""
    import types

    import emodiff.study

    seen = []

    def fake(job, progress):
        seen.append(job.recipe.study.experiment_texts())
        return types.SimpleNamespace(steps=[], generators=[], results=[], report=tmp_path / "report")

    monkeypatch.setattr(emodiff.study, "run_study", fake)
    args = ["study", "--recipe", "demo", "--store", str(tmp_path / "s.h5")]
    result = runner.invoke(app, [*args, "--add-experiments", "real+gan, real, synthetic+real, speed+real, gan+real"])
    assert result.exit_code == 0, result.output
    # a text meaning an experiment already listed (real, synthetic+real = the recipe's real+synthetic, gan+real = the
    # real+gan just added) is that experiment, run once
    assert seen[-1][-2:] == ["real+gan", "speed+real"] and seen[-1].count("real") == 1
    assert "synthetic+real" not in seen[-1] and "gan+real" not in seen[-1]
    assert runner.invoke(app, args).exit_code == 0 and "real+gan" not in seen[-1]
    one_line_error(runner.invoke(app, [*args, "--add-experiments", "real+wavenet"]), "--add-experiments",
                   "study.experiments", "real+wavenet")


def test_study_dry_run_prints_the_jobs_and_runs_nothing(tmp_path: Path):
    store, runs = tmp_path / "s.h5", tmp_path / "runs"
    args = ["study", "--recipe", "demo", "--store", str(store), "--runs", str(runs), "--dry-run"]
    before = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert before.exit_code == 0, before.output
    assert "prepare ravdess" in before.stdout and "the jobs follow from the speakers of the prepared ravdess" in \
        " ".join(before.stdout.split())
    assert runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store)]).exit_code == 0
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "22 jobs" in out and "22 of 22 jobs to run" in " ".join(out.split())
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    rows = {c[0]: c[1:] for c in cells if c[0].startswith(("train", "sample", "classify", "quality"))}
    assert rows["sample without-01-02"] == ["train without-01-02", "1", "0", "to run"]
    assert rows["classify study-real"] == ["", "1", "0", "to run"]
    assert len(rows) == 22 and rows["classify study-synthetic"][0].startswith("sample without-01-02, ")
    assert not runs.exists()  # nothing ran
    with st.open_store(store) as f:
        assert list(f) == ["corpora"]


@pytest.mark.parametrize(("flags", "fragments"), [
    (["--executor", "slurm"], ["--executor 'slurm': expected one of local, ray"]),
    (["--jobs", "0"], ["--jobs must be at least 1"]),
    (["--address", "auto"], ["--address is for --executor ray"]),
])
def test_study_refuses_a_bad_executor_setting_in_one_line(tmp_path: Path, flags: list[str], fragments: list[str]):
    args = ["study", "--recipe", "demo", "--store", str(tmp_path / "s.h5"), "--runs", str(tmp_path / "runs"), *flags]
    one_line_error(runner.invoke(app, args), *fragments, first=True)
    assert not (tmp_path / "s.h5").exists()
