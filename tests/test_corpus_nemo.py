"""The nEMO reader: the real subset in ../shared/corpora/nemo, a miniature with every defect, `prepare nemo`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from cli_checks import one_line_error
from miniature import write_tone
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.cli import app
from emodiff.corpora import Problem, Utterance, list_corpus
from emodiff.corpora.nemo import COLUMNS, list_nemo
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError

REAL_NEMO = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "nemo"
needs_real = pytest.mark.skipif(not REAL_NEMO.is_dir(), reason="../shared/corpora/nemo not present")
runner = CliRunner()

HEADER = "\t".join(COLUMNS)


def _row(file_id: str, emotion: str, text: str = "Ala ma kota.", speaker: str = "EB0", gender: str = "female") -> str:
    return "\t".join([file_id, emotion, text, text.lower().rstrip("."), speaker, gender, "27"])


@needs_real
def test_real_subset() -> None:
    listing = list_nemo(REAL_NEMO)
    assert len(listing.utterances) == 864 and listing.excluded == {} and listing.problems == []
    assert Counter(u.emotion for u in listing.utterances) == {NEUTRAL: 216, HAPPY: 216, SAD: 216, ANGRY: 216}
    assert Counter(u.speaker for u in listing.utterances) == dict.fromkeys(
        ["EB0", "IC0", "KD0", "KS0", "MK0", "MP0", "SM0", "TP0", "WR0"], 96)
    genders = {u.speaker: u.gender for u in listing.utterances}
    assert sorted(s for s, g in genders.items() if g == "F") == ["EB0", "IC0", "KD0", "MK0"]
    assert {u.session for u in listing.utterances} == {""}
    first = listing.utterances[0]
    assert (first.id, first.text, first.emotion) == ("EB0_anger_1", "Lubię czytać przed snem.", ANGRY)
    assert first.path == REAL_NEMO / "samples" / "EB0_anger_1.flac"
    assert all(u.path.is_file() and u.id.split("_")[0] == u.speaker for u in listing.utterances)
    assert all(u.text and u.text == u.text.strip() for u in listing.utterances)
    assert [u.id for u in list_corpus("NEMO", REAL_NEMO).utterances] == [u.id for u in listing.utterances]


def test_miniature_with_every_defect(tmp_path: Path) -> None:
    samples = tmp_path / "samples"
    for stem in ("EB0_anger_1", "EB0_neutral_2", "KS0_sadness_3", "KS0_fear_4", "KS0_surprised_5", "EB0_joy_6",
                 "EB0_happiness_8", "EB0_happiness_9"):
        write_tone(samples / f"{stem}.wav", 0.3, 24_000)
    write_tone(samples / "KS0_happiness_10.flac", 0.3, 22_050)  # a transcoded copy of the listed .wav
    (samples / "EB0_anger_11.wav").symlink_to(tmp_path / "gone.wav")
    rows = [
        _row("EB0_anger_1.wav", "anger", "Lubię  czytać\u00a0przed snem."),
        _row("EB0_neutral_2.wav", "neutral", speaker="        EB0"),  # the release pads speaker_id
        _row("KS0_sadness_3.wav", "sadness", speaker="KS0", gender="Male"),
        _row("KS0_fear_4.wav", "fear", speaker="KS0", gender="male"),
        _row("KS0_surprised_5.wav", "surprised", speaker="KS0", gender="male"),
        _row("EB0_joy_6.wav", "joy"),
        _row("EB0_happiness_7.wav", "happiness"),  # no audio
        _row("EB0_anger_1.wav", "anger"),  # listed twice
        _row("EB0_happiness_8.wav", "happiness", gender="other"),
        "\t".join(["EB0_happiness_9.wav", "happiness", "too few fields"]),
        _row("KS0_happiness_10.wav", "happiness", speaker="KS0", gender="male"),
        _row("EB0_anger_11.wav", "anger"),
        _row("../EB0_anger_12.wav", "anger"),
        "",
    ]
    (tmp_path / "data.tsv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    listing = list_nemo(tmp_path)
    assert listing.utterances == [
        Utterance("EB0_anger_1", samples / "EB0_anger_1.wav", "EB0", "F", "", ANGRY, "Lubię czytać przed snem."),
        Utterance("EB0_neutral_2", samples / "EB0_neutral_2.wav", "EB0", "F", "", NEUTRAL, "Ala ma kota."),
        Utterance("KS0_happiness_10", samples / "KS0_happiness_10.flac", "KS0", "M", "", HAPPY, "Ala ma kota."),
        Utterance("KS0_sadness_3", samples / "KS0_sadness_3.wav", "KS0", "M", "", SAD, "Ala ma kota."),
    ]
    assert listing.excluded == {"fear": 1, "surprised": 1}
    tsv = tmp_path / "data.tsv"
    assert listing.problems == [
        Problem(f"{tsv}:7", "unknown label 'joy' for EB0_joy_6"),
        Problem(str(samples / "EB0_happiness_7.wav"), f"missing audio ({tsv}:8)"),
        Problem(f"{tsv}:9", f"duplicate utterance id EB0_anger_1 (also at {tsv}:2)"),
        Problem(f"{tsv}:10", "speaker 'EB0', gender 'other': expected a speaker_id and female or male"),
        Problem(f"{tsv}:11", "3 fields, expected 7 as in the header"),
        Problem(str(samples / "EB0_anger_11.wav"), f"dangling symlink -> {tmp_path / 'gone.wav'}"),
        Problem(f"{tsv}:14", "file_id '../EB0_anger_12.wav': expected a file name in samples/"),
    ]


def test_a_missing_column_is_one_line_naming_the_file(tmp_path: Path) -> None:
    header = "\t".join(c for c in COLUMNS if c != "speaker_id")
    (tmp_path / "data.tsv").write_text(f"{header}\nEB0_anger_1.wav\tanger\ta\ta\tfemale\t27\n", encoding="utf-8")
    expected = (f"{tmp_path / 'data.tsv'}: expected the tab-separated columns file_id, emotion, raw_text, "
                "normalized_text, speaker_id, gender, age; missing speaker_id")
    with pytest.raises(EmodiffError) as err:
        list_nemo(tmp_path)
    assert str(err.value) == expected
    result = runner.invoke(app, ["prepare", "nemo", str(tmp_path), "--store", str(tmp_path / "s.h5")])
    one_line_error(result, expected, first=True)
    assert not (tmp_path / "s.h5").exists()


def test_not_a_nemo_copy(tmp_path: Path) -> None:
    write_tone(tmp_path / "samples" / "EB0_anger_1.wav", 0.2, 24_000)
    with pytest.raises(EmodiffError, match=rf"^{tmp_path}: not a nEMO copy: expected data.tsv and samples/"):
        list_nemo(tmp_path)


@needs_real
def test_prepare_nemo_end_to_end(tmp_path: Path) -> None:
    store = tmp_path / "s.h5"
    args = ["prepare", "nemo", str(REAL_NEMO), "--store", str(store), "--limit", "8", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "/corpora/nemo: 8 utterances" in " ".join(result.stdout.split())
    with st.open_store(store) as f:
        g = f["corpora/nemo"]
        table = st.read_table(g["utterances"])
        assert g.attrs["corpus"] == "nemo" and g.attrs["root"] == str(REAL_NEMO.resolve())
    assert len(table["id"]) == 8 and set(table["emotion"].tolist()) == {0, 1, 2, 3}
    assert set(table["source_rate"].tolist()) == {22050} and set(table["gender"].tolist()) == {"F", "M"}
