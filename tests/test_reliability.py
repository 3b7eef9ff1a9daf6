"""What a hostile user finds (issue 10): a full disk, foreign HDF5 files, dangling symlinks, rich
markup and emoji codes in user text, an unsafe checkpoint, tables that cut paths; and (issue 21) a report
folder holding the user's files, names that break the store's layout, paths too long, absurd --threads,
a comparison with nothing or with itself."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from io import StringIO
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cli_checks import one_line_error
from miniature import expected_problems, make_crema_d, make_iemocap, make_msp_improv, make_ravdess, write_tone
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.checkpoint import load_checkpoint
from emodiff.cli import _prepared_corpora, app, render
from emodiff.corpora import list_corpus
from emodiff.data import ravdess_sample
from emodiff.errors import EmodiffError
from emodiff.inspect import inspect_store
from emodiff.prepare import PrepareJob, prepare
from emodiff.records import Corpus
from emodiff.summary import corpus_stats

runner = CliRunner()
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A store made by `emodiff prepare` (4 RAVDESS utterances)."""
    path = tmp_path_factory.mktemp("prepared") / "s.h5"
    prepare(PrepareJob(path, corpus="ravdess", root=ravdess_sample(), workers=1, limit=4))
    return path


@pytest.fixture()
def store(prepared: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s.h5"
    shutil.copy(prepared, copy)
    return copy


def _foreign(path: Path, mark: bool = False, **datasets: object) -> Path:
    with h5py.File(path, "w") as f:
        if mark:
            f.attrs["emodiff_store"] = 1
        for name, data in datasets.items():
            f[name.replace("__", "/")] = data
    return path


# --- a. a full disk -----------------------------------------------------------------------------


def test_full_disk_during_prepare_is_one_line_and_leaves_the_store(store: Path, monkeypatch):
    before = store.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    result = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store), "--limit", "2",
                                 "--overwrite", "--workers", "1"])
    one_line_error(result, f"{store}.corpora.ravdess.partial: no space left on device", "unchanged")
    assert store.read_bytes() == before
    assert not list(store.parent.glob("*.partial"))


def test_full_disk_during_the_copy_into_the_store(store: Path, monkeypatch):
    monkeypatch.setattr(h5py.Group, "copy", lambda *a, **k: (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(EmodiffError, match=r"s\.h5: no space left on device while adding /corpora/other"):
        with st.write_group(store, "corpora/other", config={}) as g:
            g["x"] = np.zeros(3)
    monkeypatch.undo()
    with st.open_store(store) as f:
        assert st.visible(f["corpora"]) == ["ravdess"]
        assert len(f["corpora/ravdess/utterances/id"]) == 4
    assert not list(store.parent.glob("*.partial"))


def test_full_disk_outside_the_store_is_one_line(store: Path, monkeypatch):
    # a checkpoint or a report file on a full disk: no stack either
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/demo/ckpt-0000300.pt.tmp")

    monkeypatch.setattr("emodiff.prepare.prepare", full)
    result = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store)])
    one_line_error(result, "/runs/demo/ckpt-0000300.pt.tmp: no space left on device")


def test_full_disk_as_hdf5_reports_it():
    # h5py's text for a write that failed with ENOSPC (errno set) and the same text without errno
    text = ("Unable to synchronously create file (file write failed: time = Mon Nov 30 17:59:48 2026\n, "
            "filename = 'x.h5', file descriptor = 3, errno = 28, error message = 'No space left on device')")
    assert st.no_space(OSError(errno.ENOSPC, text))
    assert st.no_space(OSError(text))
    assert not st.no_space(OSError(errno.EACCES, "Permission denied"))


# --- b, c. HDF5 files that are not emodiff stores ----------------------------------------------------


@pytest.mark.parametrize("command", [["inspect"], ["sample", "--device", "cpu"]])
@pytest.mark.parametrize("where", ["runs", "corpora"])
def test_readers_refuse_a_foreign_hdf5_file(tmp_path: Path, command: list[str], where: str):
    path = _foreign(tmp_path / "other.h5", **{where: np.arange(3)})
    result = runner.invoke(app, [*command, "--store", str(path)])
    one_line_error(result, "other.h5: not an emodiff store", "no emodiff_store mark")


@pytest.mark.parametrize("command", [["inspect"], ["sample", "--device", "cpu"]])
def test_a_marked_file_with_a_dataset_for_a_section(tmp_path: Path, command: list[str]):
    path = _foreign(tmp_path / "odd.h5", mark=True, runs=np.arange(3))
    result = runner.invoke(app, [*command, "--store", str(path)])
    one_line_error(result, "odd.h5: not an emodiff store", "/runs is a dataset")


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_prepare_refuses_to_write_into_a_foreign_hdf5_file(tmp_path: Path, overwrite: list[str]):
    path = _foreign(tmp_path / "theirs.h5", data=np.arange(3))
    before = path.read_bytes()
    result = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(path), "--limit", "2",
                                 *overwrite])
    one_line_error(result, "theirs.h5: not an emodiff store", "leaves this file alone")
    assert path.read_bytes() == before


def test_every_writer_refuses_a_foreign_file(tmp_path: Path):
    path = _foreign(tmp_path / "theirs.h5", data=np.arange(3))
    for name in ("corpora/x", "synthetic/x", "results/x", "quality/x", "runs/x"):
        with pytest.raises(EmodiffError, match="not an emodiff store"), st.write_group(path, name, config={}):
            pass
    with h5py.File(path, "r") as f:
        assert list(f) == ["data"]


def test_a_writer_refuses_a_dataset_where_its_group_goes(store: Path):
    with h5py.File(store, "a") as f:
        f["augmented/ravdess"] = np.arange(3)
    with pytest.raises(EmodiffError, match="/augmented/ravdess is a dataset that emodiff did not write"):
        with st.write_group(store, "augmented/ravdess/speed", config={}):
            pass


def test_stores_made_by_emodiff_and_the_test_fixtures_carry_the_mark(prepared: Path, toy_store: Path):
    for path in (prepared, toy_store):
        with h5py.File(path, "r") as f:
            assert f.attrs["emodiff_store"] == 1
        with st.open_store(path):
            pass


# --- d. foreign members of a section -----------------------------------------------------------------


def test_a_foreign_dataset_under_corpora_is_not_a_corpus(store: Path, capsys):
    with h5py.File(store, "a") as f:
        f["corpora/junk"] = np.arange(3)
        f["synthetic/junk"] = np.arange(3)
    assert _prepared_corpora(store) == ["ravdess"]
    assert "/corpora/junk is not a corpus group" in " ".join(capsys.readouterr().err.split())
    shown = runner.invoke(app, ["inspect", "--store", str(store)])
    assert shown.exit_code == 0, shown.output
    assert "/corpora/ravdess" in shown.stdout


# --- e. dangling symlinks ------------------------------------------------------------------------------


def _dangle(path: Path, target: str = "/nonexistent/clip.wav") -> Path:
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


@pytest.mark.parametrize("corpus", ["ravdess", "crema-d"])
def test_a_dangling_symlink_is_listed_as_skipped(tmp_path: Path, corpus: str):
    if corpus == "ravdess":
        make_ravdess(tmp_path)
        link = _dangle(tmp_path / "Actor_02" / "03-01-05-01-01-01-02.wav")
    else:
        make_crema_d(tmp_path)
        link = _dangle(tmp_path / "AudioWAV" / "1001_IEO_ANG_HI.wav")
    problems = {p.path: p.reason for p in list_corpus(corpus, tmp_path).problems}
    assert problems[str(link)] == "dangling symlink -> /nonexistent/clip.wav"


@pytest.mark.parametrize("corpus", ["iemocap", "msp-improv"])
def test_labelled_audio_that_is_a_dangling_symlink(tmp_path: Path, corpus: str):
    expected = (make_iemocap if corpus == "iemocap" else make_msp_improv)(tmp_path)
    link = _dangle(expected[0].path)
    listing = list_corpus(corpus, tmp_path)
    assert expected[0].id not in [u.id for u in listing.utterances]
    about = [p for p in listing.problems if expected[0].id in p.path]
    assert [(p.path, p.reason) for p in about] == [(str(link), "dangling symlink -> /nonexistent/clip.wav")]


def _tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A RAVDESS copy in a deep folder: two clips, an empty file and a dangling symlink."""
    actor = tmp_path / "a_corpus_copy_in_a_folder_whose_name_is_long_enough_to_overflow" / "Actor_03"
    actor.mkdir(parents=True)
    for clip in sorted((ravdess_sample() / "Actor_01").glob("03-01-0[15]-01-01-01-01.*")):
        shutil.copy(clip, actor)
    bad = actor / "03-01-05-01-01-02-03.wav"
    bad.write_bytes(b"")
    link = _dangle(actor / "03-01-05-01-02-01-03.wav", "/nonexistent/03-01-05-01-01-01-03.wav")
    return actor.parent, bad, link


def test_prepare_records_a_dangling_symlink(tmp_path: Path):
    root, _, link = _tree(tmp_path)
    store = tmp_path / "s.h5"
    prepare(PrepareJob(store, corpus="ravdess", root=root, workers=1))
    with st.open_store(store) as f:
        skipped = st.read_table(f["corpora/ravdess/skipped"])
        assert f["corpora/ravdess"].attrs["n_skipped"] == 2
    assert dict(zip(skipped["path"], skipped["reason"], strict=True))[str(link)] == \
        "dangling symlink -> /nonexistent/03-01-05-01-01-01-03.wav"


def test_a_dangling_folder_symlink_is_skipped_once_and_links_never_loop(tmp_path: Path):
    """``Actor_09 -> /nonexistent/dir`` may have held clips: listed as skipped, once though RAVDESS lists
    ``*.wav`` and ``*.flac``, like a loop of links; a working folder link is searched, and a link back
    up the tree is searched once rather than forever."""
    root = tmp_path / "copy"
    expected = make_ravdess(root)
    gone = _dangle(root / "Actor_09", "/nonexistent/dir")
    loop = _dangle(root / "Actor_10", "Actor_10")
    (root / "Actor_01" / "up").symlink_to("..", target_is_directory=True)
    clip = write_tone(tmp_path / "disk2" / "Actor_03" / "03-01-05-01-01-01-03.wav", 0.3, 48_000)
    (root / "Actor_03").symlink_to(clip.parent, target_is_directory=True)
    listings: list = []
    walk = threading.Thread(target=lambda: listings.append(list_corpus("ravdess", root)), daemon=True)
    walk.start()
    walk.join(60)
    assert listings, "listing a copy with a link back up the tree did not end"
    [listing] = listings
    links = [(p.path, p.reason) for p in listing.problems if p.reason.startswith("dangling symlink")]
    assert links == [(str(gone), "dangling symlink -> /nonexistent/dir"), (str(loop), "dangling symlink -> Actor_10")]
    assert len(listing.problems) == len(expected_problems("ravdess", root)) + 2  # nothing found twice via up/
    assert [u.path for u in listing.utterances] == sorted([u.path for u in expected] + [root / "Actor_03" / clip.name],
                                                          key=lambda path: path.stem)


def test_prepare_counts_a_dangling_folder_symlink_among_the_skipped(tmp_path: Path):
    root, _, _ = _tree(tmp_path)
    gone = _dangle(root / "Actor_09", "/nonexistent/dir")
    store = tmp_path / "s.h5"
    result = runner.invoke(app, ["prepare", "ravdess", str(root), "--store", str(store), "--threads", "1"],
                           env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "skipped files: 3" in result.stdout
    reason = "dangling symlink -> /nonexistent/dir"
    assert any(f"{gone} " in line and reason in line for line in result.stdout.splitlines())
    with st.open_store(store) as f:
        skipped = st.read_table(f["corpora/ravdess/skipped"])
        assert f["corpora/ravdess"].attrs["n_skipped"] == 3
    assert dict(zip(skipped["path"], skipped["reason"], strict=True))[str(gone)] == reason


# --- f. markup and emoji codes in user text ---------------------------------------------------------


def test_emoji_codes_in_a_flag_are_printed_as_typed(store: Path):
    result = runner.invoke(app, ["classify", "--store", str(store), "--folds", "groups:abc", "--epochs", "1"])
    flat = one_line_error(result, "--folds groups:abc: expected groups:K")
    assert "\N{INPUT SYMBOL FOR LATIN SMALL LETTERS}" not in flat


def test_tables_print_user_text_as_it_is(tmp_path: Path):
    stats = corpus_stats_stub(skipped=[("/data/[bold]copy/:abc:/x.wav", "reason with [red]markup[/red] :smile:")])
    buf = StringIO()
    Console(file=buf, width=200).print(render.skipped_table(stats))  # a console with emoji codes on
    out = buf.getvalue()
    assert "/data/[bold]copy/:abc:/x.wav" in out
    assert "reason with [red]markup[/red] :smile:" in out


def corpus_stats_stub(skipped: list[tuple[str, str]]):
    from emodiff.summary import CorpusStats

    return CorpusStats(name="x", utterances=0, segments=0, speakers=0, hours=0.0, per_emotion={}, per_speaker={},
                       skipped=skipped, excluded={}, attrs={})


# --- g. an unsafe checkpoint ---------------------------------------------------------------------------


class _Payload:
    """A Python object in a checkpoint: torch.load(weights_only=True) refuses it."""


def test_an_unsafe_checkpoint_is_refused_in_plain_words(tmp_path: Path):
    path = tmp_path / "ckpt-0000001.pt"
    torch.save({"format": 1, "step": 1, "payload": _Payload()}, path)
    with pytest.raises(EmodiffError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: refused: unsafe to load (it holds Python objects beyond tensors")
    assert "\n" not in message and "\x1b" not in message and message.endswith(")")


# --- h. tables never cut a path or an id -------------------------------------------------------------------


def _column(table: Table, column: int, width: int = 80) -> str:
    """The text of one column of ``table`` printed ``width`` wide, its folded lines joined."""
    buf = StringIO()
    Console(file=buf, width=width, color_system=None).print(table)
    cells = [line.split("│")[1 + column].strip() for line in buf.getvalue().splitlines() if line.startswith("│")]
    return "".join(cells)


def test_skipped_files_table_keeps_whole_paths_at_80_columns(tmp_path: Path):
    root, bad, link = _tree(tmp_path)
    store = tmp_path / "s.h5"
    result = prepare(PrepareJob(store, corpus="ravdess", root=root, workers=1))
    table = render.skipped_table(result.stats)
    files = _column(table, 0)
    assert str(bad) in files and str(link) in files
    assert "/nonexistent/03-01-05-01-01-01-03.wav" in _column(table, 1)  # (wrapped at its spaces)
    buf = StringIO()
    render.prepare_summary(Console(file=buf, width=80), store, result)
    assert "…" not in buf.getvalue()
    with st.open_store(store) as f:
        attrs = render.attrs_table(corpus_stats(f["corpora/ravdess"]))
    assert str(root) in _column(attrs, 1)


def test_no_table_column_truncates(store: Path):
    with st.write_group(store, "synthetic/a_synthetic_set_with_a_long_name", config={}) as g:
        g["emotion"] = np.zeros(3, np.int8)
        g.attrs["run"] = "runs/a-run-whose-name-is-long"
    overview = inspect_store(store)
    with st.open_store(store) as f:
        stats = corpus_stats(f["corpora/ravdess"])
        tables = [render.groups_table(overview), render.emotion_table(stats), render.speaker_table(stats),
                  render.attrs_table(stats), render.skipped_table(stats),
                  render.synthetic_table(overview.synthetic or [])]
        for table in tables:
            for column in table.columns:
                assert column.overflow == "fold" and not column.no_wrap, (table.title, column.header)
        buf = StringIO()
        render.store_overview(Console(file=buf, width=60), overview)
    assert "…" not in buf.getvalue()


# --- issue 21: what a hostile user types ----------------------------------------------------------------------


def _report(store: Path, out: Path) -> None:
    from emodiff.report import ReportJob, build_report

    build_report(ReportJob(store, out, examples=0))


@pytest.mark.parametrize("manifest", [True, False], ids=["report", "report-before-manifests"])
def test_report_never_deletes_a_file_it_did_not_write(store: Path, tmp_path: Path, manifest: bool):
    out = tmp_path / "rep"
    _report(store, out)
    if not manifest:  # a report made before reports listed their files: known by its own file names
        (out / "manifest.json").unlink()
    (out / "notes.txt").write_text("mine")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = runner.invoke(app, ["report", "--store", str(store), "--out", str(out), "--examples", "0"])
    one_line_error(result, f"{out / 'notes.txt'}: not written by `emodiff report`", "move it away", first=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    (out / "notes.txt").unlink()
    again = runner.invoke(app, ["report", "--store", str(store), "--out", str(out), "--examples", "0"])
    assert again.exit_code == 0, again.output
    listed = json.loads((out / "manifest.json").read_text())["files"]
    assert sorted(listed) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                                    if p.is_file() and p.name != "manifest.json")
    assert {"index.html", "report.md"} <= set(listed)


def test_report_refuses_a_manifest_it_did_not_write(store: Path, tmp_path: Path):
    out = tmp_path / "rep"
    _report(store, out)
    (out / "figures" / "mine").mkdir()
    (out / "manifest.json").write_text('{"files": ["figures/mine"]}')  # not a report's manifest: not trusted
    result = runner.invoke(app, ["report", "--store", str(store), "--out", str(out), "--examples", "0"])
    one_line_error(result, f"{out / 'figures' / 'mine'}: not written by `emodiff report` (and 1 more)")
    assert (out / "figures" / "mine").is_dir()


@pytest.mark.parametrize("out", [".", "..", "link"])
def test_report_out_is_a_folder_by_name(store: Path, tmp_path: Path, monkeypatch, out: str):
    work = tmp_path / "work"
    (work / "mine").mkdir(parents=True)
    (work / "link").symlink_to(work / "mine")
    monkeypatch.chdir(work / "mine")
    if out == "link":
        out = str(work / "link")
    result = runner.invoke(app, ["report", "--store", str(store), "--out", out, "--examples", "0"])
    one_line_error(result, f"--out {out}: ", "a symbolic link" if out.endswith("link") else "a folder by name",
                   first=True)
    assert list((work / "mine").iterdir()) == []


BAD_NAMES = ["a/b", ".", "..", ".tmp-x", "", "a b", "x" * 101, "a,b"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("command", [["sample", "--n", "4"], ["classify", "--epochs", "1"]])
def test_every_name_follows_one_rule(store: Path, command: list[str], name: str):
    before = store.read_bytes()
    result = runner.invoke(app, [*command, "--store", str(store), "--name", name, "--overwrite"])
    one_line_error(result, "--name", "expected a name of 1 to 100 ASCII letters, digits and - _ + . :", first=True)
    assert store.read_bytes() == before
    assert not list(store.parent.glob("*.partial"))


@pytest.mark.parametrize("out", ["my run", "a/..", "a:b/c,d"])
def test_a_run_folder_name_is_a_store_name(store: Path, tmp_path: Path, out: str):
    result = runner.invoke(app, ["train", "--store", str(store), "--out", f"{tmp_path}/{out}"])
    one_line_error(result, "--out", "the run's name (its last folder, /runs/NAME in the store)",
                   "expected a name of", first=True)


def test_a_set_named_after_its_run_follows_the_rule(store: Path, monkeypatch):
    monkeypatch.setattr("emodiff.sample.find_checkpoint", lambda store, run: (Path("my run/ckpt-0000003.pt"), "my run"))
    result = runner.invoke(app, ["sample", "--store", str(store), "--n", "4", "--run", "my run/ckpt-0000003.pt"])
    one_line_error(result, "--name not given, and the run's name 'my run': expected a name of", first=True)


def test_default_names_follow_the_rule():
    from emodiff.classify import ClassifyJob
    from emodiff.experiments import Augment
    from emodiff.generators import load_recipe
    from emodiff.records import check_name
    from emodiff.study_graph import experiment_job, generator_name

    recipe = load_recipe(Path("demo"))
    texts = ["real", "synthetic", "real+synthetic", "real+synthetic+mixup:0.4", "real + synthetic + mixup: 0.2",
             "real+specaugment", "real+real:400", "real+gan", "real+synthetic:demo+shuffle", "real+speed+noise"]
    for text in texts:
        for source, fraction in [(None, None), ("ravdess", None), ("ravdess", 0.1)]:
            job = experiment_job(Path("s.h5"), recipe, "crema-d" if source else "ravdess", text, "cpu", source,
                                 fraction)
            assert check_name(job.name) == job.name  # type: ignore[arg-type]
    for folds in ["loso", "session", "groups:6", "groups:6x2"]:
        for augment in ["", "synthetic:demo+mixup", "specaugment:4x10", "synthetic+real:400+uniform", "gan+speed"]:
            job = ClassifyJob(Path("s.h5"), "ravdess", folds=folds, augment=Augment.parse(augment))
            assert check_name(job.default_name()) == job.default_name()
    assert check_name(generator_name(["ravdess:01", "msp-improv:MSP-IMPROV-S01A-F01 x"]))


@pytest.mark.parametrize(("extra", "words"), [
    (["--compare-with", ""], "--compare-with '': expected the name of a /results group"),
    (["--name", "real", "--overwrite", "--compare-with", "real"], "--compare-with real: that is the result this run "
                                                                   "writes (/results/real)"),
    (["--compare-with", "ravdess-loso-real"], "that is the result this run writes (/results/ravdess-loso-real)"),
])
def test_compare_with_names_another_result(store: Path, extra: list[str], words: str):
    before = store.read_bytes()
    result = runner.invoke(app, ["classify", "--store", str(store), "--epochs", "1", *extra])
    one_line_error(result, words, first=True)
    assert store.read_bytes() == before


LONG = "a" * 256


@pytest.mark.parametrize(("command", "flag"), [
    (["inspect", "--store", f"{LONG}.h5"], "--store"),
    (["inspect", "--store", "/tmp/" + "b/" * 2600 + "s.h5"], "--store"),
    (["report", "--out", LONG], "--out"),
    (["report", "--out", f"{LONG}/rep"], "--out"),
    (["train", "--out", LONG], "--out"),
    (["study", "--out", LONG], "--out"),
    (["study", "--runs", LONG], "--runs"),
])
def test_a_path_too_long_is_one_line(store: Path, tmp_path: Path, monkeypatch, command: list[str], flag: str):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = command if "--store" in command else [*command, "--store", str(store)]
    if command[0] == "study":  # without the check, a study would start: make its first step fail at once
        args = [*command, "--store", str(tmp_path / "new.h5"), "--root", str(work)]
    result = runner.invoke(app, args)
    flat = one_line_error(result, f"{flag} ", "bytes", "expected", first=True)
    assert "Errno" not in flat and len(flat) < 400
    assert sorted(work.iterdir()) == []


def test_a_store_name_leaves_room_for_its_side_files(tmp_path: Path):
    result = runner.invoke(app, ["inspect", "--store", str(tmp_path / ("s" * 140))])
    one_line_error(result, "its name is 140 bytes; expected at most 135", "less 120 for the temporary names")


def test_train_out_that_is_a_file_is_one_line(store: Path, tmp_path: Path):
    golden = tmp_path / "golden.h5"
    golden.write_bytes(b"mine")
    result = runner.invoke(app, ["train", "--store", str(store), "--out", str(golden)])
    one_line_error(result, f"--out {golden}: a file, not a folder; expected a run folder", first=True)
    assert golden.read_bytes() == b"mine"


def test_a_path_too_long_met_inside_a_step_is_one_line(store: Path, monkeypatch):
    def too_long(*args, **kwargs):
        raise OSError(errno.ENAMETOOLONG, "File name too long", "/runs/" + "c" * 300 + "/ckpt-0000001.pt")

    monkeypatch.setattr("emodiff.prepare.prepare", too_long)
    result = runner.invoke(app, ["prepare", "ravdess", str(ravdess_sample()), "--store", str(store)])
    one_line_error(result, "/runs/cccc", "(322 characters): a name in this path is too long for the file system")


@pytest.fixture()
def threads_seen(monkeypatch) -> list[int]:
    """quality's job replaced by one that records torch's thread count and stops the command."""
    seen: list[int] = []

    def record(*args: object, **kwargs: object) -> None:
        seen.append(torch.get_num_threads())
        raise EmodiffError("job reached")

    monkeypatch.setattr("emodiff.quality.assess", record)
    before = torch.get_num_threads()
    yield seen
    torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["99999999999999999999", "4097"])
def test_absurd_threads_are_one_line(tmp_path: Path, threads_seen: list[int], value: str):
    result = runner.invoke(app, ["quality", "--store", str(tmp_path / "s.h5"), "--threads", value])
    one_line_error(result, f"--threads must be at most 4096, got {value}", first=True)
    assert threads_seen == []


def test_threads_are_capped_at_the_cores(tmp_path: Path, threads_seen: list[int], monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    result = runner.invoke(app, ["quality", "--store", str(tmp_path / "s.h5"), "--threads", "4000"])
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "note: --threads 4000 is more than the 2 cores this process may run on; using 2", lines
    assert lines[-1] == "error: job reached" and threads_seen == [2]
    monkeypatch.setenv("OMP_NUM_THREADS", "9999")  # the default, when set, is capped too
    result = runner.invoke(app, ["quality", "--store", str(tmp_path / "s.h5")])
    assert result.stderr.startswith("note: $OMP_NUM_THREADS 9999 is more than the 2 cores") and threads_seen == [2, 2]


# --- damaged stores: truncated, overwritten -----------------------------------------------------------------


@pytest.mark.parametrize("command", [["inspect"], ["classify", "--epochs", "1"]])
def test_a_truncated_store_is_damaged_not_being_written(store: Path, command: list[str]):
    # HDF5's message names the superblock ("sblock"), which a match on "lock" took for a writer
    with open(store, "r+b") as fh:
        fh.truncate(store.stat().st_size // 2)
    result = runner.invoke(app, [*command, "--store", str(store)])
    one_line_error(result, f"{store}: the file is damaged (truncated or overwritten: truncated file: eof =")


def test_a_store_held_by_a_writer_is_being_written(store: Path, monkeypatch):
    def held(*args, **kwargs):
        raise BlockingIOError(errno.EAGAIN, "Unable to synchronously open file (unable to lock file, errno = 11, "
                                            "error message = 'Resource temporarily unavailable')")

    monkeypatch.setattr(h5py, "File", held)
    monkeypatch.setattr(st, "READ_WAIT_S", 0.3)  # a reader waits this long for a writer's copy, then says so
    with pytest.raises(EmodiffError, match=r"s\.h5: the store is being written right now \(waited 0 s\)"), \
            st.open_store(store):
        pass


def test_a_damaged_dataset_is_named_by_its_readers(store: Path, tmp_path: Path):
    with h5py.File(store, "r") as f:
        chunk = f["corpora/ravdess/segments/mel"].id.get_chunk_info(0)
    with open(store, "r+b") as fh:  # inside the first compressed segment
        fh.seek(chunk.byte_offset + chunk.size // 4)
        fh.write(b"\xff" * 64)
    words = (f"{store}: /corpora/ravdess/segments/mel could not be read (the file is damaged: filter returned "
             "failure during read); `emodiff inspect` lists what is still readable")
    one_line_error(runner.invoke(app, ["classify", "--store", str(store), "--epochs", "1"]), words)
    with pytest.raises(EmodiffError) as err:
        _report(store, tmp_path / "report")
    assert str(err.value) == words
    with st.open_store(store) as f, pytest.raises(EmodiffError) as err:
        Corpus.read(f, "ravdess").load_mel(f)
    assert str(err.value) == words
    result = runner.invoke(app, ["inspect", "--store", str(store)])
    assert result.exit_code == 0 and "/corpora/ravdess" in result.stdout, result.output


def test_inspect_lists_a_store_whose_strings_are_damaged(store: Path):
    # every global heap (where HDF5 keeps variable-length strings: the utterance table, text attrs)
    store.write_bytes(store.read_bytes().replace(b"GCOL", b"XXXX"))
    result = runner.invoke(app, ["inspect", "--store", str(store)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "│ /corpora/ravdess │ could not be read:" in out  # its row in the groups table
    assert f"{store}: /corpora/ravdess could not be read (the file is damaged: bad global heap" in out
