"""What a hostile user finds (issue 10): a full disk, foreign HDF5 files, dangling symlinks, rich
markup and emoji codes in user text, an unsafe checkpoint, tables that cut paths."""

from __future__ import annotations

import errno
import shutil
from io import StringIO
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cli_checks import one_line_error
from miniature import make_crema_d, make_iemocap, make_msp_improv, make_ravdess
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.checkpoint import load_checkpoint
from emodiff.cli import _prepared_corpora, app, render
from emodiff.corpora import list_corpus
from emodiff.data import ravdess_sample
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareJob, prepare
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
    with st.open_store(store) as f:
        stats = corpus_stats(f["corpora/ravdess"])
        tables = [render.groups_table(f, store), render.emotion_table(stats), render.speaker_table(stats),
                  render.attrs_table(stats), render.skipped_table(stats), render.synthetic_table(f["synthetic"])]
        for table in tables:
            for column in table.columns:
                assert column.overflow == "fold" and not column.no_wrap, (table.title, column.header)
        buf = StringIO()
        render.store_overview(Console(file=buf, width=60), store)
    assert "…" not in buf.getvalue()
