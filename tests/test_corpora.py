"""Corpus readers on miniature copies of the official layouts, and RAVDESS on the real subset."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from miniature import (
    EXCLUDED,
    expected_problems,
    make_crema_d,
    make_iemocap,
    make_msp_improv,
    make_ravdess,
    write_tone,
)

from emodiff.corpora import Problem, list_corpus
from emodiff.corpora.crema_d import list_crema_d
from emodiff.corpora.iemocap import list_iemocap
from emodiff.corpora.msp_improv import list_msp_improv
from emodiff.corpora.ravdess import list_ravdess
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError

REAL_RAVDESS = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "ravdess"


def fields(listing) -> list[tuple]:
    """Every field but the path, which is checked separately against the layout."""
    return [(u.id, u.speaker, u.gender, u.session, u.emotion, u.text, u.duration_s) for u in listing.utterances]


# --- IEMOCAP --------------------------------------------------------------------------------


def test_iemocap_miniature(tmp_path: Path) -> None:
    expected = make_iemocap(tmp_path)
    listing = list_iemocap(tmp_path)
    assert listing.utterances == expected
    # Written out independently of the miniature's own bookkeeping.
    assert fields(listing) == [
        ("Ses01F_impro01_F000", "Ses01F", "F", "1", NEUTRAL, "Excuse me.", 0.7),
        ("Ses01F_impro01_F002", "Ses01F", "F", "1", ANGRY, "", 0.4),
        ("Ses01F_impro01_M001", "Ses01M", "M", "1", HAPPY, "Oh that's great !", 0.8),
        ("Ses01M_script01_1_F000", "Ses01F", "F", "1", HAPPY, "What a lovely day.", 0.6),
        ("Ses01M_script01_1_M000", "Ses01M", "M", "1", SAD, "I miss her.", 0.9),
        ("Ses02M_impro03_F000", "Ses02F", "F", "2", SAD, "I'm sorry.", 0.3),
        ("Ses02M_impro03_M000", "Ses02M", "M", "2", ANGRY, "Get out!", 1.1),
        ("Ses05F_script02_2_M010", "Ses05M", "M", "5", NEUTRAL, "The sea is calm tonight.", 0.8),
    ]
    first = listing.utterances[0].path
    assert first == tmp_path / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    assert first.is_absolute() and all(u.path.is_file() for u in listing.utterances)
    assert sf.info(first).samplerate == 16_000
    assert listing.excluded == EXCLUDED["iemocap"] == {"fru": 1, "oth": 1, "sur": 1, "xxx": 1}
    assert listing.problems == expected_problems("iemocap", tmp_path) == []


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.write(text)


def test_iemocap_unknown_label_duplicate_and_missing_audio(tmp_path: Path) -> None:
    expected = make_iemocap(tmp_path)
    labels = tmp_path / "Session2/dialog/EmoEvaluation/Ses02M_impro03.txt"
    first_labels = tmp_path / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    _append(labels, "[5.0000 - 5.5000]\tSes02M_impro03_F009\tzzz\t[2.0, 2.0, 2.0]\n\n")
    _append(labels, "[9.0000 - 9.5000]\tSes01F_impro01_F000\tang\t[2.0, 2.0, 2.0]\n\n")
    (tmp_path / "Session2/sentences/wav/Ses02M_impro03/Ses02M_impro03_M000.wav").unlink()
    listing = list_iemocap(tmp_path)
    assert listing.problems == [
        Problem(str(tmp_path / "Session2/sentences/wav/Ses02M_impro03/Ses02M_impro03_M000.wav"), "audio file missing"),
        Problem(str(labels), "unknown label 'zzz' for Ses02M_impro03_F009"),
        Problem(str(labels), f"duplicate utterance id Ses01F_impro01_F000 (also at {first_labels}:3)"),
    ]
    assert listing.utterances == [u for u in expected if u.id != "Ses02M_impro03_M000"]
    assert listing.excluded == EXCLUDED["iemocap"]


def test_iemocap_malformed_id_is_a_problem(tmp_path: Path) -> None:
    make_iemocap(tmp_path)
    labels = tmp_path / "Session2/dialog/EmoEvaluation/Ses02M_impro03.txt"
    _append(labels, "[5.0000 - 5.5000]\tSes02M_impro03_Q1\tneu\t[2.0, 2.0, 2.0]\n")
    (problem,) = list_iemocap(tmp_path).problems
    assert problem.path == str(labels)
    assert problem.reason.startswith("utterance id 'Ses02M_impro03_Q1' does not follow Ses0N")


def test_iemocap_session_without_labels_is_not_a_release(tmp_path: Path) -> None:
    make_iemocap(tmp_path)
    (tmp_path / "Session3/dialog/EmoEvaluation").rmdir()
    with pytest.raises(EmodiffError, match=r"not an IEMOCAP release: expected Session1\.\.Session5.*Session3"):
        list_iemocap(tmp_path)


# --- MSP-IMPROV -----------------------------------------------------------------------------


def test_msp_improv_miniature(tmp_path: Path) -> None:
    expected = make_msp_improv(tmp_path)
    listing = list_msp_improv(tmp_path)
    assert listing.utterances == expected
    assert fields(listing) == [
        ("MSP-IMPROV-S01A-F01-S-FM01", "F01", "F", "1", ANGRY, "", None),
        ("MSP-IMPROV-S01H-F01-T-FM01", "F01", "F", "1", HAPPY, "How can I help you?", None),
        ("MSP-IMPROV-S02S-M01-P-MF02", "M01", "M", "1", SAD, "", None),
        ("MSP-IMPROV-S03N-M02-R-MF01", "M02", "M", "2", NEUTRAL, "I am going to the store.", None),
        ("MSP-IMPROV-S05N-F03-S-FM03", "F03", "F", "3", NEUTRAL, "", None),
    ]
    path = listing.utterances[0].path
    assert path == tmp_path / "Audio/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav"
    assert sf.info(path).samplerate == 48_000
    assert listing.excluded == EXCLUDED["msp-improv"] == {"O": 1, "X": 1}
    assert listing.problems == []


def test_msp_improv_misspelt_label_file_and_registry_alias(tmp_path: Path) -> None:
    expected = make_msp_improv(tmp_path)
    (tmp_path / "Evaluation.txt").rename(tmp_path / "Evalution.txt")
    listing = list_corpus("MSP_IMPROV", tmp_path)
    assert listing.utterances == expected
    assert listing.excluded == {"O": 1, "X": 1}


def test_msp_improv_unknown_label_duplicate_and_missing_audio(tmp_path: Path) -> None:
    expected = make_msp_improv(tmp_path)
    evaluation = tmp_path / "Evaluation.txt"
    header_line = (
        evaluation.read_text(encoding="utf-8")
        .splitlines()
        .index("UTD-IMPROV-S01H-F01-T-FM01.avi; H; A:3.000000; V:3.500000; D:3.000000 ; N:NaN;")
        + 1
    )
    _append(evaluation, "\nUTD-IMPROV-S06A-F06-S-FM01.avi; Q; A:3.0; V:3.0; D:3.0 ; N:3.0;\n")
    _append(evaluation, "\nUTD-IMPROV-S01H-F01-T-FM01.avi; A; A:3.0; V:3.0; D:3.0 ; N:3.0;\n")
    _append(evaluation, "\nUTD-IMPROV-S07S-M04-R-MF03.avi; S; A:3.0; V:3.0; D:3.0 ; N:3.0;\n")
    mirror = write_tone(tmp_path / "Audio/copy/MSP-IMPROV-S02S-M01-P-MF02.wav", 0.2, 48_000)
    listing = list_msp_improv(tmp_path)
    original = tmp_path / "Audio/session1/S02S/P/MSP-IMPROV-S02S-M01-P-MF02.wav"
    assert listing.problems == [
        # "copy" sorts before "session1", so the copy is the one kept and the original reported.
        Problem(str(original), f"duplicate utterance id MSP-IMPROV-S02S-M01-P-MF02 (also at {mirror})"),
        Problem(str(evaluation), "unknown label 'Q' for MSP-IMPROV-S06A-F06-S-FM01"),
        Problem(
            str(evaluation),
            f"duplicate utterance id MSP-IMPROV-S01H-F01-T-FM01 (also at {evaluation}:{header_line})",
        ),
        Problem(str(tmp_path / "Audio/session4/S07S/R/MSP-IMPROV-S07S-M04-R-MF03.wav"), "audio file missing"),
    ]
    kept = {u.id: u.path for u in listing.utterances}
    assert kept.pop("MSP-IMPROV-S02S-M01-P-MF02") == mirror
    assert kept == {u.id: u.path for u in expected if u.id != "MSP-IMPROV-S02S-M01-P-MF02"}


def test_msp_improv_bad_name_is_a_problem(tmp_path: Path) -> None:
    make_msp_improv(tmp_path)
    _append(tmp_path / "Evaluation.txt", "\nUTD-IMPROV-S01A-F09-S-FM01.avi; A; A:3.0; V:3.0; D:3.0 ; N:3.0;\n")
    (problem,) = list_msp_improv(tmp_path).problems
    assert problem.reason.startswith("utterance id 'MSP-IMPROV-S01A-F09-S-FM01' does not follow MSP-IMPROV-S{NN}")


# --- CREMA-D --------------------------------------------------------------------------------


def test_crema_d_miniature(tmp_path: Path) -> None:
    expected = make_crema_d(tmp_path)
    listing = list_crema_d(tmp_path)
    assert listing.utterances == expected
    assert fields(listing) == [
        ("1001_DFA_ANG_XX", "1001", "M", "", ANGRY, "Don't forget a jacket", None),
        ("1001_IEO_HAP_HI", "1001", "M", "", HAPPY, "It's eleven o'clock", None),
        ("1002_TIE_NEU_XX", "1002", "F", "", NEUTRAL, "That is exactly what happened", None),
        ("1002_WSI_SAD_XX", "1002", "F", "", SAD, "We'll stop in a couple of minutes", None),
        ("1076_MTI_NEU_XX", "1076", "F", "", NEUTRAL, "Maybe tomorrow it will be cold", None),
    ]
    assert listing.utterances[0].path == tmp_path / "AudioWAV/1001_DFA_ANG_XX.wav"
    assert listing.excluded == EXCLUDED["crema-d"] == {"DIS": 1, "FEA": 1}
    assert (
        listing.problems
        == expected_problems("crema-d", tmp_path)
        == [
            Problem(str(tmp_path / "AudioWAV/1002_TAI_ANG_XX.wav"), "git-lfs pointer, not audio (run git lfs pull)"),
            Problem(str(tmp_path / "AudioWAV/1076_MTI_SAD_XX.wav"), "known silent file in CREMA-D (no audio)"),
        ]
    )


def test_crema_d_bad_names_and_unknown_label(tmp_path: Path) -> None:
    expected = make_crema_d(tmp_path)
    audio = tmp_path / "AudioWAV"
    for stem in ("1001_DFA_XYZ_XX", "1001_ABC_ANG_XX", "1001-DFA-ANG-XX", "1099_DFA_ANG_XX"):
        write_tone(audio / f"{stem}.wav", 0.2, 16_000)
    listing = list_crema_d(tmp_path)
    assert listing.utterances == expected
    reasons = {Path(p.path).stem: p.reason for p in listing.problems}
    assert reasons == {
        "1001-DFA-ANG-XX": "file name does not follow ActorID_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)",
        "1001_ABC_ANG_XX": "file name does not follow ActorID_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)",
        "1001_DFA_XYZ_XX": "unknown label 'XYZ'",
        "1099_DFA_ANG_XX": "actor 1099 not in VideoDemographics.csv",
        "1002_TAI_ANG_XX": "git-lfs pointer, not audio (run git lfs pull)",
        "1076_MTI_SAD_XX": "known silent file in CREMA-D (no audio)",
    }


def test_crema_d_requires_demographics(tmp_path: Path) -> None:
    make_crema_d(tmp_path)
    (tmp_path / "VideoDemographics.csv").unlink()
    with pytest.raises(EmodiffError, match="VideoDemographics.csv: missing"):
        list_crema_d(tmp_path)


def test_crema_d_rejects_unknown_sex(tmp_path: Path) -> None:
    make_crema_d(tmp_path)
    _append(tmp_path / "VideoDemographics.csv", "1003,30,Unknown,Asian,Not Hispanic\n")
    with pytest.raises(EmodiffError, match="actor 1003: Sex 'Unknown', expected Male or Female"):
        list_crema_d(tmp_path)


# --- RAVDESS --------------------------------------------------------------------------------


@pytest.mark.parametrize("calm", ["drop", "neutral"])
def test_ravdess_miniature(tmp_path: Path, calm: str) -> None:
    expected = make_ravdess(tmp_path, calm=calm)
    listing = list_ravdess(tmp_path, calm=calm)
    assert listing.utterances == expected
    kids, dogs = "Kids are talking by the door", "Dogs are sitting by the door"
    calm_rows = [
        ("03-01-02-01-01-01-01", "01", "M", "", NEUTRAL, kids, None),
        ("03-01-02-02-02-02-02", "02", "F", "", NEUTRAL, dogs, None),
    ]
    assert fields(listing) == [
        ("03-01-01-01-01-01-01", "01", "M", "", NEUTRAL, kids, None),
        *(calm_rows if calm == "neutral" else []),
        ("03-01-03-01-02-02-02", "02", "F", "", HAPPY, dogs, None),
        ("03-01-04-02-01-01-02", "02", "F", "", SAD, kids, None),
        ("03-01-05-02-02-01-01", "01", "M", "", ANGRY, dogs, None),
    ]
    assert listing.utterances[0].path == tmp_path / "Actor_01/03-01-01-01-01-01-01.wav"
    assert sf.info(tmp_path / "Actor_02/03-01-03-01-02-02-02.wav").channels == 2
    excluded = {"fearful": 1, "song": 1} | ({"calm": 2} if calm == "drop" else {})
    assert listing.excluded == excluded
    if calm == "drop":
        assert excluded == EXCLUDED["ravdess"]
    mirror = tmp_path / "Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav"
    assert (
        listing.problems
        == expected_problems("ravdess", tmp_path)
        == [
            Problem(
                str(mirror),
                "duplicate utterance id 03-01-01-01-01-01-01 "
                f"(also at {tmp_path / 'Actor_01/03-01-01-01-01-01-01.wav'})",
            )
        ]
    )


def test_ravdess_video_unknown_emotion_and_bad_name(tmp_path: Path) -> None:
    expected = make_ravdess(tmp_path)
    for name in ("01-01-03-01-01-01-03.wav", "03-01-09-01-01-01-03.wav", "03-01-03-01-01-01-25.flac"):
        write_tone(tmp_path / "Actor_03" / name, 0.2, 48_000)
    listing = list_ravdess(tmp_path)
    assert listing.utterances == expected
    assert listing.excluded == EXCLUDED["ravdess"] | {"video": 1}
    bad_name = (
        "file name does not follow MM-VV-EE-II-SS-RR-AA (modality-channel-emotion-intensity-statement-repetition-actor)"
    )
    # In sorted path order, whatever the suffix.
    assert listing.problems == [
        Problem(str(tmp_path / "Actor_03/03-01-03-01-01-01-25.flac"), bad_name),
        Problem(str(tmp_path / "Actor_03/03-01-09-01-01-01-03.wav"), "unknown label '09'"),
        *expected_problems("ravdess", tmp_path),
    ]


def test_ravdess_rejects_unknown_calm_policy(tmp_path: Path) -> None:
    make_ravdess(tmp_path)
    with pytest.raises(ValueError, match="unknown calm policy 'keep'; expected one of drop, neutral"):
        list_ravdess(tmp_path, calm="keep")  # type: ignore[arg-type]


@pytest.mark.skipif(not REAL_RAVDESS.is_dir(), reason=f"real RAVDESS subset not found at {REAL_RAVDESS}")
def test_ravdess_real_subset() -> None:
    listing = list_ravdess(REAL_RAVDESS)
    assert len(listing.utterances) == 672
    assert Counter(u.emotion for u in listing.utterances) == {NEUTRAL: 96, HAPPY: 192, SAD: 192, ANGRY: 192}
    assert len({u.speaker for u in listing.utterances}) == 24
    genders = {u.speaker: u.gender for u in listing.utterances}
    assert Counter(genders.values()) == {"F": 12, "M": 12}
    assert genders["01"] == "M" and genders["24"] == "F"
    assert {u.text for u in listing.utterances} == {"Kids are talking by the door", "Dogs are sitting by the door"}
    assert all(u.path.suffix == ".flac" and u.path.is_file() for u in listing.utterances)
    assert all(u.path.parent.name == f"Actor_{u.speaker}" for u in listing.utterances)
    assert listing.excluded == {} and listing.problems == []


# --- all corpora ----------------------------------------------------------------------------


@pytest.mark.parametrize("corpus", ["iemocap", "msp-improv", "crema-d", "ravdess"])
def test_missing_root(tmp_path: Path, corpus: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(EmodiffError, match=rf"^{root}: no such directory \(expected the "):
        list_corpus(corpus, root)


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        ("iemocap", r"not an IEMOCAP release: expected Session1\.\.Session5/dialog/EmoEvaluation/\*\.txt$"),
        ("msp-improv", r"not an MSP-IMPROV copy: expected Evaluation\.txt and Audio/session1\.\.6/"),
        ("crema-d", r"not a CREMA-D copy: expected AudioWAV/\*\.wav and VideoDemographics\.csv$"),
        ("ravdess", r"not a RAVDESS copy: expected Actor_01\.\.Actor_24/ holding files named like"),
    ],
)
def test_wrong_layout(tmp_path: Path, corpus: str, message: str) -> None:
    # Another corpus's folder: some audio, but not this corpus's layout.
    write_tone(tmp_path / "wav" / "clip.wav", 0.2, 16_000)
    (tmp_path / "README.txt").write_text("not a corpus\n", encoding="utf-8")
    with pytest.raises(EmodiffError, match=rf"^{tmp_path}: {message}"):
        list_corpus(corpus, tmp_path)


def test_records_keep_the_users_path_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A relative root gives absolute paths; symlinked roots are not resolved away.
    real = tmp_path / "real"
    expected = make_ravdess(real)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    listing = list_ravdess(Path("link"))
    assert [u.path for u in listing.utterances] == [tmp_path / "link" / u.path.relative_to(real) for u in expected]
    assert all(os.path.isabs(u.path) for u in listing.utterances)
