"""Any corpus from a manifest: the reader over real nEMO and RAVDESS files, its one-line errors, its flags,
`prepare manifest` end to end, and the later steps taking the corpus by its name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_checks import one_line_error
from miniature import write_tone
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.cli import app
from emodiff.corpora import Problem, Utterance, canonical_name
from emodiff.corpora.manifest import ManifestSpec, list_manifest, manifest_name
from emodiff.corpora.nemo import list_nemo
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError
from emodiff.text import DEFAULT_TEMPLATE, render_condition

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"
NEMO, RAVDESS = SHARED / "nemo", SHARED / "ravdess"
needs_real = pytest.mark.skipif(not (NEMO.is_dir() and RAVDESS.is_dir()),
                                reason="../shared/corpora/nemo or ../shared/corpora/ravdess not present")
runner = CliRunner()
LABELS = "anger=angry, happiness=happy ,sadness=sad"


def _mix(tmp_path: Path) -> Path:
    """``mix.csv``: four nEMO clips copied below it (relative paths) and three RAVDESS ones (absolute), with
    labels of both corpora, a capitalised header, a quoted comma, a row without audio and two unmapped labels."""
    (tmp_path / "audio").mkdir()
    for stem in ("EB0_anger_1", "EB0_happiness_1", "KS0_sadness_1", "KS0_neutral_1"):
        shutil.copy(NEMO / "samples" / f"{stem}.flac", tmp_path / "audio")
    r1, r2 = RAVDESS / "Actor_01", RAVDESS / "Actor_02"
    rows = [
        "Path,Emotion,Speaker,Gender,Text",
        'audio/EB0_anger_1.flac,anger,EB0,female,"Lubię czytać, przed snem."',
        "audio/EB0_happiness_1.flac,happiness,EB0,F,Ala ma kota.",
        "audio/KS0_sadness_1.flac,sadness,KS0,male,",
        "./audio/KS0_neutral_1.flac,Neutral,KS0,M,Ola ma psa.",
        "audio/KS0_fear_1.flac,fear,KS0,M,",
        f"{r1 / '03-01-05-01-01-01-01.flac'},angry,r01,Male,Kids are talking by the door",
        f"{r2 / '03-01-03-01-01-01-02.flac'},HAPPY,r02,FEMALE,Kids are talking by the door",
        f"{r2 / '03-01-04-01-01-01-02.flac'},calm,r02,f,Kids are talking by the door",
        "audio/EB0_sadness_2.flac,sadness,EB0,female,",
    ]
    manifest = tmp_path / "Mix.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


@needs_real
def test_reader_over_real_files(tmp_path: Path) -> None:
    manifest = _mix(tmp_path)
    listing = list_manifest(manifest, labels=ManifestSpec.parse(LABELS).labels)
    audio, r1, r2 = tmp_path / "audio", RAVDESS / "Actor_01", RAVDESS / "Actor_02"
    assert listing.utterances == [
        Utterance("03-01-03-01-01-01-02", r2 / "03-01-03-01-01-01-02.flac", "r02", "F", "", HAPPY,
                  "Kids are talking by the door"),
        Utterance("03-01-05-01-01-01-01", r1 / "03-01-05-01-01-01-01.flac", "r01", "M", "", ANGRY,
                  "Kids are talking by the door"),
        Utterance("EB0_anger_1", audio / "EB0_anger_1.flac", "EB0", "F", "", ANGRY, "Lubię czytać, przed snem."),
        Utterance("EB0_happiness_1", audio / "EB0_happiness_1.flac", "EB0", "F", "", HAPPY, "Ala ma kota."),
        Utterance("KS0_neutral_1", audio / "KS0_neutral_1.flac", "KS0", "M", "", NEUTRAL, "Ola ma psa."),
        Utterance("KS0_sadness_1", audio / "KS0_sadness_1.flac", "KS0", "M", "", SAD, ""),
    ]
    assert listing.excluded == {"calm": 1, "fear": 1}
    assert listing.problems == [Problem(str(audio / "EB0_sadness_2.flac"), "missing audio (Mix.csv line 10)")]


@needs_real
def test_nemo_data_tsv_as_a_manifest_lists_what_the_reader_does() -> None:
    spec = ManifestSpec.parse(LABELS, "text=raw_text", NEMO / "samples")
    listing = list_manifest(NEMO / "data.tsv", **spec.reader_options())
    assert listing.utterances == list_nemo(NEMO).utterances and len(listing.utterances) == 864
    assert listing.excluded == {} and listing.problems == []


@needs_real
def test_prepare_manifest_end_to_end_and_the_name_downstream(tmp_path: Path) -> None:
    manifest, store = _mix(tmp_path), tmp_path / "s.h5"
    args = ["prepare", "manifest", str(manifest), "--labels", LABELS, "--store", str(store), "--workers", "1"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "/corpora/mix: 6 utterances" in out and "calm" in out and "EB0_sadness_2.flac" in out
    with st.open_store(store) as f:
        g = f["corpora/mix"]
        attrs = st.attrs_dict(g)
        table, skipped = st.read_table(g["utterances"]), st.read_table(g["skipped"])
    config = json.loads(attrs["config"])
    assert attrs["corpus"] == "mix" and attrs["root"] == config["root"] == str(manifest.resolve())
    assert config["labels"] == {"anger": "angry", "happiness": "happy", "sadness": "sad"}
    assert config["columns"] == {} and config["audio_root"] is None
    assert json.loads(attrs["excluded"]) == {"calm": 1, "fear": 1} and attrs["n_skipped"] == 1
    assert list(skipped["reason"]) == ["missing audio (Mix.csv line 10)"]
    assert sorted(table["speaker"].tolist()) == ["EB0", "EB0", "KS0", "KS0", "r01", "r02"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already holds /corpora/mix (6 utterances" in " ".join(again.stdout.split())

    embedded = runner.invoke(app, ["embed", "--corpus", "mix", "--store", str(store)])
    assert embedded.exit_code == 0, embedded.output
    with st.open_store(store) as f:
        assert f["embeddings/all-MiniLM-L6-v2/mix/pooled"].shape == (6, 384)
    classified = runner.invoke(app, ["classify", "--corpus", "mix", "--store", str(store), "--epochs", "1",
                                     "--device", "cpu", "--threads", "1"])
    assert classified.exit_code == 0, classified.output
    assert "/results/mix-loso-real (loso)" in " ".join(classified.stdout.split())
    one_line_error(runner.invoke(app, ["embed", "--corpus", "mixx", "--store", str(store)]),
                   "corpus mixx is not prepared (prepared: mix)")
    one_line_error(runner.invoke(app, ["classify", "--corpus", "mixx", "--store", str(store), "--device", "cpu"]),
                   "unknown corpus 'mixx'", "`emodiff prepare manifest FILE --name mixx`", "prepared in", ": mix)")


def _tones(tmp_path: Path, *names: str) -> None:
    for name in names:
        write_tone(tmp_path / name, 0.2, 16_000)


def test_optional_columns_and_the_copys_defects(tmp_path: Path) -> None:
    _tones(tmp_path, "a/1.wav", "b/1.wav", "c.wav")
    (tmp_path / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (tmp_path / "m.tsv").write_text(
        "ID\twav\tlabel\tactor\tsession\n"
        "a1\ta/1.wav\tsad\tx\t1\n"
        "b1\tb/1.wav\tneutral\ty\t2\n"
        "a1\tc.wav\tsad\ty\t2\n"  # a duplicate id
        "c1\tmissing.wav\thappy\ty\t2\n"
        "d1\tgone.wav\tangry\ty\t2\n", encoding="utf-8")
    listing = list_manifest(tmp_path / "m.tsv")
    assert listing.utterances == [Utterance("a1", tmp_path / "a/1.wav", "x", "", "1", SAD, ""),
                                  Utterance("b1", tmp_path / "b/1.wav", "y", "", "2", NEUTRAL, "")]
    m = tmp_path / "m.tsv"
    assert listing.problems == [
        Problem(f"{m}:4", f"duplicate utterance id a1 (also at {m}:2)"),
        Problem(str(tmp_path / "missing.wav"), "missing audio (m.tsv line 5)"),
        Problem(str(tmp_path / "gone.wav"), f"dangling symlink -> {tmp_path / 'nowhere.wav'}"),
    ]
    unsaid = render_condition(DEFAULT_TEMPLATE, text="", emotion=SAD, speaker="x", gender="")
    assert unsaid == "A speaker (x) sounds sad."  # no gender column: the text says none


def test_delimiter_sniffed_unless_the_extension_says(tmp_path: Path) -> None:
    _tones(tmp_path, "1.wav")
    (tmp_path / "m.txt").write_text("file;emotion;speaker\n1.wav;angry;s\n", encoding="utf-8")
    assert [u.emotion for u in list_manifest(tmp_path / "m.txt").utterances] == [ANGRY]
    (tmp_path / "one.txt").write_text("file\n1.wav\n", encoding="utf-8")
    with pytest.raises(EmodiffError, match="cannot tell its delimiter; name it .tsv"):
        list_manifest(tmp_path / "one.txt")


ROW = "1.wav,angry,s,F"
BAD_MANIFESTS = [
    ("", {}, "empty; expected a header line naming the columns"),
    ("path,emotion,speaker\n", {}, "no rows after the header; expected one row per utterance"),
    ("path,emotion,gender\n1.wav,angry,F\n", {},
     "no speaker column; expected one named speaker, speaker_id, actor (any case) or --columns speaker=COLUMN "
     "(the header has path, emotion, gender)"),
    ("path,file,emotion,speaker\n1.wav,1.wav,angry,s\n", {},
     "columns path and file could both be the audio; choose one with --columns audio=COLUMN"),
    ("path,emotion,speaker\n1.wav,angry,s\n", {"audio": "wave"}, "--columns audio=wave: no such column"),
    (f"path,emotion,speaker,gender\n{ROW}\n1.wav,angry,s,x\n", {},
     "line 3: gender 'x'; expected F, M, female or male (any case)"),
    ("path,emotion,speaker\n../1.wav,angry,s\n", {}, "line 2: audio path '../1.wav' leads out of"),
    ("path,emotion,speaker\n1.wav,angry\n", {}, "line 2: 2 fields, expected 3 as in the header"),
    ("path,emotion,speaker\n1.wav,angry, \n", {}, "line 2: empty speaker (column speaker); expected a value"),
    ("path,emotion,speaker\n1.wav,fear,s\n2.wav,fear,t\n3.wav,joy,s\n", {},
     "no row's emotion is one of neutral, happy, sad, angry or mapped to one (labels: fear 2, joy 1); map them "
     "with --labels LABEL=EMOTION"),
    ("path,emotion,speaker\n2.wav,angry,s\n3.wav,sad,s\n", {},
     "the audio of none of its 2 rows of the four emotions was found (first: line 2: "),
]


@pytest.mark.parametrize(("text", "columns", "message"), BAD_MANIFESTS)
def test_a_bad_manifest_is_one_line_naming_file_and_line(tmp_path: Path, text: str, columns: dict,
                                                          message: str) -> None:
    _tones(tmp_path / "audio", "1.wav")
    manifest = tmp_path / "audio" / "m.csv"
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(EmodiffError) as err:
        list_manifest(manifest, columns=columns)
    assert str(err.value).startswith(f"{manifest}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_not_a_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(EmodiffError, match="a folder; expected a manifest file"):
        list_manifest(tmp_path)
    (tmp_path / "m.csv").write_bytes(b"path,emotion,speaker\n\xff\xfe,angry,s\n")
    with pytest.raises(EmodiffError, match=r"m.csv: not UTF-8 text"):
        list_manifest(tmp_path / "m.csv")


@pytest.mark.parametrize(("labels", "columns", "message"), [
    ("anger=angy", "", "--labels anger=angy: 'angy' is none of the four emotions; expected neutral, happy, sad, angry"),
    ("anger", "", "--labels anger: 'anger' is not LABEL=EMOTION"),
    ("a=sad,A=happy", "", "--labels a=sad,A=happy: a is given twice"),
    ("", "voice=wav", "--columns voice=wav: unknown field 'voice'; expected one of audio, emotion, speaker, text"),
    ("", "audio=", "--columns audio=: 'audio=' is not FIELD=COLUMN"),
])
def test_flags_are_checked(labels: str, columns: str, message: str) -> None:
    with pytest.raises(EmodiffError) as err:
        ManifestSpec.parse(labels, columns)
    assert str(err.value).startswith(message)


def test_names(tmp_path: Path) -> None:
    assert manifest_name(tmp_path / "My_Corpus.tsv") == "my_corpus" and manifest_name(Path("x.csv"), "EmoDB") == "emodb"
    for given in ("ravdess", "MSP_IMPROV", "nemo"):
        with pytest.raises(EmodiffError, match=r"has a reader of its own; prepare it with `emodiff prepare "):
            manifest_name(tmp_path / "m.tsv", given)
    with pytest.raises(EmodiffError, match=r"--name 'a/b': expected a corpus name of 1 to 64 letters"):
        manifest_name(tmp_path / "m.tsv", "a/b")
    with pytest.raises(EmodiffError, match=r"its name 'my corpus' is no corpus name .*; give one with --name$"):
        manifest_name(tmp_path / "my corpus.tsv")
    assert [canonical_name(n) for n in ("MSP_IMPROV", " RAVDESS ", "crema_d", "My_Corp", "emo-db")] == [
        "msp-improv", "ravdess", "crema-d", "my_corp", "emo-db"]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    _tones(tmp_path, "1.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,emotion,speaker,gender\n{ROW}\n1.wav,angry,s,X\n", encoding="utf-8")
    store = ["--store", str(tmp_path / "s.h5")]
    one_line_error(runner.invoke(app, ["prepare", "manifest", str(manifest), *store]),
                   f"{manifest}: line 3: gender 'X'; expected F, M, female or male (any case)", first=True)
    one_line_error(runner.invoke(app, ["prepare", "manifest", str(manifest), "--name", "ravdess", *store]),
                   "--name ravdess: ravdess has a reader of its own; prepare it with `emodiff prepare ravdess ROOT`",
                   first=True)
    one_line_error(runner.invoke(app, ["prepare", "ravdess", str(tmp_path), "--labels", "a=sad", *store]),
                   "--name, --labels, --columns and --audio-root are for `emodiff prepare manifest FILE`", first=True)
    one_line_error(runner.invoke(app, ["prepare", "manifest", str(manifest), "--audio-root", "nowhere", *store]),
                   "--audio-root nowhere: no such directory", first=True)
    one_line_error(runner.invoke(app, ["prepare", "mycorpus", str(manifest), *store]),
                   "unknown corpus 'mycorpus'", "`emodiff prepare manifest FILE --name mycorpus`", first=True)
    assert not (tmp_path / "s.h5").exists()


def test_study_needs_no_folder_for_a_prepared_corpus(tmp_path: Path) -> None:
    from emodiff.study import _bundled

    store = tmp_path / "s.h5"
    with pytest.raises(EmodiffError, match=r"study.root is empty; .*`emodiff prepare manifest FILE --name mix`"):
        _bundled(store, "mix")
    with st.write_group(store, "corpora/mix", config={}):
        pass
    assert _bundled(store, "mix") == Path()
