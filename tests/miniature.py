"""Miniature copies of the official corpus layouts, for tests (``from miniature import ...``).

Each ``make_<corpus>(root)`` writes a handful of short clips under ``root`` with the official
names, folder layout and file formats, including the pitfalls the corpus readers must handle, and
returns EXACTLY the :class:`Utterance` records ``list_<corpus>(root)`` must produce, sorted by
id. What the reader must count or report besides them is stated here too:

- ``EXCLUDED[corpus]``: the ``Listing.excluded`` counts (RAVDESS: with ``calm="drop"``; with
  ``calm="neutral"`` the "calm" key is absent and its clips are in the records).
- ``expected_problems(corpus, root)``: the ``Listing.problems`` the miniature carries on purpose.

Corpus keys are the canonical names of :data:`emodiff.corpora.CORPORA`. Paths in records are
absolute (``os.path.abspath`` of ``root``, symlinks kept). Clips are 0.2-1.2 s of quiet tone:
IEMOCAP and CREMA-D 16 kHz mono WAV, MSP-IMPROV and RAVDESS 48 kHz WAV, one RAVDESS clip stereo.
This API is shared with the ``prepare`` step tests: extend it, do not change it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from emodiff.corpora.base import Problem, Utterance
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD

EXCLUDED: dict[str, dict[str, int]] = {
    "iemocap": {"fru": 1, "oth": 1, "sur": 1, "xxx": 1},
    "msp-improv": {"O": 1, "X": 1},
    "crema-d": {"DIS": 1, "FEA": 1},
    "ravdess": {"calm": 2, "fearful": 1, "song": 1},
}

# Bytes of a macOS resource fork: not text, not audio. A reader that reads it fails loudly.
_APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xff\xfe\x00"
_LFS_STUB = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 52478\n"
)


def write_tone(path: Path, seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> Path:
    """Write ``seconds`` of a quiet sine plus noise as 16-bit PCM (WAV, or FLAC for ``.flac``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    tone = 0.1 * np.sin(2 * np.pi * (220.0 + 20.0 * seed) * t)
    data = tone[:, None] + 0.01 * rng.standard_normal((t.size, channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data if channels > 1 else data[:, 0], sample_rate, subtype="PCM_16")
    return path


def _absolute(root: Path) -> Path:
    return Path(os.path.abspath(root))


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- IEMOCAP --------------------------------------------------------------------------------

# (session, dialog, [(turn id, start, end, label, transcript or None)])
_IEMOCAP_DIALOGS = [
    (
        1,
        "Ses01F_impro01",
        [
            ("Ses01F_impro01_F000", 6.2901, 6.9901, "neu", "Excuse me."),
            ("Ses01F_impro01_M000", 7.5712, 8.1712, "fru", "Do you have your forms?"),
            ("Ses01F_impro01_F001", 10.01, 10.51, "xxx", "Yeah."),
            # A male turn in an F-prefixed dialog: speaker Ses01M, not Ses01F.
            ("Ses01F_impro01_M001", 11.25, 12.05, "exc", "Oh  [LAUGHTER] that's   great [BREATHING]!"),
            ("Ses01F_impro01_F002", 13.0, 13.4, "ang", None),  # labelled, no transcript line
        ],
    ),
    (
        1,
        "Ses01M_script01_1",
        [
            ("Ses01M_script01_1_F000", 2.5, 3.1, "hap", "What a lovely day."),
            ("Ses01M_script01_1_M000", 3.5, 4.4, "sad", "I miss her."),
        ],
    ),
    (
        2,
        "Ses02M_impro03",
        [
            ("Ses02M_impro03_F000", 1.0, 1.3, "sad", "I'm sorry."),
            ("Ses02M_impro03_M000", 1.5, 2.6, "ang", "Get out!"),
            ("Ses02M_impro03_M001", 3.0, 3.25, "sur", "What?"),
        ],
    ),
    (
        5,
        "Ses05F_script02_2",
        [
            ("Ses05F_script02_2_M010", 40.125, 40.925, "neu", "The sea is calm tonight."),
            ("Ses05F_script02_2_F011", 41.0, 41.2, "oth", "Hm."),
        ],
    ),
]
_IEMOCAP_EMOTIONS = {"neu": NEUTRAL, "hap": HAPPY, "exc": HAPPY, "sad": SAD, "ang": ANGRY}
_IEMOCAP_CLEAN = {
    "Ses01F_impro01_M001": "Oh that's great !",
}


def make_iemocap(root: Path) -> list[Utterance]:
    """Write a miniature ``IEMOCAP_full_release`` under ``root``; return the expected records.

    Session1..Session5 all exist (3 and 4 empty); pitfalls: rater lines (external and self),
    the "%" column header, ``xxx``/``fru``/``sur``/``oth`` labels, ``exc`` and ``hap``, a
    ``Categorical/`` per-evaluator file that must be ignored, male turns in an F-prefixed dialog
    and the reverse, ``[LAUGHTER]`` tokens, an ``XX`` transcript id, a labelled turn without a
    transcript line, and AppleDouble ``._`` files beside labels, transcripts and audio.
    """
    root = _absolute(root)
    for session in range(1, 6):
        for sub in ("dialog/EmoEvaluation", "dialog/transcriptions", "sentences/wav"):
            (root / f"Session{session}" / sub).mkdir(parents=True, exist_ok=True)
    expected = []
    for number, (session, dialog, turns) in enumerate(_IEMOCAP_DIALOGS):
        dialog_dir = root / f"Session{session}" / "dialog"
        _write_text(dialog_dir / "EmoEvaluation" / f"{dialog}.txt", _iemocap_labels(turns))
        _write_text(dialog_dir / "transcriptions" / f"{dialog}.txt", _iemocap_transcript(turns))
        for index, (utt_id, start, end, label, text) in enumerate(turns):
            wav = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utt_id}.wav"
            write_tone(wav, end - start, 16_000, seed=10 * number + index)
            if label in _IEMOCAP_EMOTIONS:
                speaking = utt_id[-4]
                expected.append(
                    Utterance(
                        id=utt_id,
                        path=wav,
                        speaker=f"Ses0{session}{speaking}",
                        gender=speaking,
                        session=str(session),
                        emotion=_IEMOCAP_EMOTIONS[label],
                        text=_IEMOCAP_CLEAN.get(utt_id, text or ""),
                        duration_s=round(end - start, 4),
                    )
                )
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation"
    # Per-evaluator labels in turn-header form: reading sub-directories would duplicate ids.
    _write_text(
        evaluation / "Categorical" / "Ses01F_impro01_e2_cat.txt",
        "[6.2901 - 6.9901]\tSes01F_impro01_F000\tzzz\t[2.5000, 2.5000, 2.5000]\n",
    )
    # Resource forks can hold stale text; a reader that reads this one gets a duplicate id.
    stale = b"\n[6.2901 - 6.9901]\tSes01F_impro01_F000\tzzz\t[2.5000, 2.5000, 2.5000]\n"
    (evaluation / "._Ses01F_impro01.txt").write_bytes(_APPLEDOUBLE + stale)
    (root / "Session1" / "dialog" / "transcriptions" / "._Ses01F_impro01.txt").write_bytes(_APPLEDOUBLE)
    (root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "._Ses01F_impro01_F000.wav").write_bytes(_APPLEDOUBLE)
    return sorted(expected, key=lambda utt: utt.id)


def _iemocap_labels(turns: list) -> str:
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for utt_id, start, end, label, _text in turns:
        lines += [
            f"[{start:.4f} - {end:.4f}]\t{utt_id}\t{label}\t[2.5000, 3.0000, 3.5000]",
            "C-E1:\tNeutral state;\t()",
            "C-E3:\tFrustration; Anger;\t(annoyed)",
            f"C-{utt_id[-4]}1:\tNeutral state;\t()",
            "A-E3:\tval 3; act 2; dom  2;\t()",
            "",
        ]
    return "\n".join(lines) + "\n"


def _iemocap_transcript(turns: list) -> str:
    lines = [
        f"{utt_id} [{start:08.4f}-{end:08.4f}]: {text}" for utt_id, start, end, _l, text in turns if text is not None
    ]
    # Overlapping speech gets an XX id; it has no label and must not break the parser.
    lines.insert(1, f"{turns[0][0][:-4]}MXX0 [000.1000-000.5000]: Mm-hmm.")
    return "\n".join(lines) + "\n"


# --- MSP-IMPROV -----------------------------------------------------------------------------

# (name after "MSP-IMPROV-", consensus letter, text file content or None)
_MSP_CLIPS = [
    ("S01A-F01-S-FM01", "A", None),
    ("S01H-F01-T-FM01", "H", "  How can I help   you?\n"),
    ("S02S-M01-P-MF02", "S", None),
    ("S03N-M02-R-MF01", "N", "I am going to the store."),
    ("S05N-F03-S-FM03", "N", None),
    ("S04A-F03-S-FM03", "O", None),
    ("S05H-M03-P-MF04", "X", None),
]
_MSP_EMOTIONS = {"A": ANGRY, "H": HAPPY, "S": SAD, "N": NEUTRAL}


def make_msp_improv(root: Path) -> list[Utterance]:
    """Write a miniature MSP-IMPROV copy under ``root``; return the expected records.

    Pitfalls: ``UTD-IMPROV`` names in ``Evaluation.txt``, a rater listed twice, O and X
    consensus, a NaN attribute, audio in ``Audio/sessionN/S01A/S/`` with ``.avi`` beside one
    wav, ``Text/<id>.txt`` for two clips only, and an AppleDouble wav.
    """
    root = _absolute(root)
    blocks, expected = [], []
    for index, (name, letter, text) in enumerate(_MSP_CLIPS):
        utt_id = f"MSP-IMPROV-{name}"
        sentence, actor, condition, _turn = name.split("-")
        wav = root / "Audio" / f"session{int(actor[1:])}" / sentence / condition / f"{utt_id}.wav"
        write_tone(wav, 0.3 + 0.1 * index, 48_000, seed=index)
        blocks.append(_msp_block(name, letter, duplicate_rater=index == 0))
        if text is not None:
            _write_text(root / "Text" / f"{utt_id}.txt", text)
        if letter in _MSP_EMOTIONS:
            expected.append(
                Utterance(
                    id=utt_id,
                    path=wav,
                    speaker=actor,
                    gender=actor[0],
                    session=str(int(actor[1:])),
                    emotion=_MSP_EMOTIONS[letter],
                    text=" ".join((text or "").split()),
                )
            )
    _write_text(root / "Evaluation.txt", "\n".join(blocks))
    first = expected[0].path
    first.with_suffix(".avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI ")
    (first.parent / f"._{first.name}").write_bytes(_APPLEDOUBLE)
    return sorted(expected, key=lambda utt: utt.id)


def _msp_block(name: str, letter: str, duplicate_rater: bool) -> str:
    lines = [f"UTD-IMPROV-{name}.avi; {letter}; A:3.000000; V:3.500000; D:3.000000 ; N:NaN;"]
    lines += [f"rater{r:03d}; Neutral; Concerned; A:3.000000; V:3.000000; D:3.000000; N:4.000000;" for r in (7, 12, 31)]
    if duplicate_rater:
        lines.append(lines[-1])
    return "\n".join(lines) + "\n"


# --- CREMA-D --------------------------------------------------------------------------------

_CREMA_ACTORS = (
    "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
    "1002,21,Female,Caucasian,Not Hispanic\n1076,25,Female,African American,Not Hispanic\n"
)
# (stem, text, kept emotion or None)
_CREMA_FILES = [
    ("1001_DFA_ANG_XX", "Don't forget a jacket", ANGRY),
    ("1001_IEO_HAP_HI", "It's eleven o'clock", HAPPY),
    ("1001_IOM_FEA_XX", "", None),
    ("1002_TIE_NEU_XX", "That is exactly what happened", NEUTRAL),
    ("1002_WSI_SAD_XX", "We'll stop in a couple of minutes", SAD),
    ("1002_ITS_DIS_XX", "", None),
    ("1076_MTI_NEU_XX", "Maybe tomorrow it will be cold", NEUTRAL),
]
_CREMA_GENDERS = {"1001": "M", "1002": "F", "1076": "F"}


def make_crema_d(root: Path) -> list[Utterance]:
    """Write a miniature CREMA-D copy under ``root``; return the expected records.

    Pitfalls: DIS and FEA files, the silent ``1076_MTI_SAD_XX`` (an empty WAV), a git-lfs
    pointer stub ``1002_TAI_ANG_XX.wav``, and an AppleDouble wav.
    """
    root = _absolute(root)
    audio = root / "AudioWAV"
    _write_text(root / "VideoDemographics.csv", _CREMA_ACTORS)
    expected = []
    for index, (stem, text, emotion) in enumerate(_CREMA_FILES):
        wav = write_tone(audio / f"{stem}.wav", 0.4 + 0.1 * index, 16_000, seed=index)
        if emotion is not None:
            actor = stem[:4]
            expected.append(
                Utterance(
                    id=stem,
                    path=wav,
                    speaker=actor,
                    gender=_CREMA_GENDERS[actor],
                    session="",
                    emotion=emotion,
                    text=text,
                )
            )
    write_tone(audio / "1076_MTI_SAD_XX.wav", 0.0, 16_000)
    _write_text(audio / "1002_TAI_ANG_XX.wav", _LFS_STUB)
    (audio / "._1001_DFA_ANG_XX.wav").write_bytes(_APPLEDOUBLE)
    return sorted(expected, key=lambda utt: utt.id)


# --- RAVDESS --------------------------------------------------------------------------------

_KIDS, _DOGS = "Kids are talking by the door", "Dogs are sitting by the door"
# (stem, kept emotion with calm="drop", with calm="neutral")
_RAVDESS_FILES = [
    ("03-01-01-01-01-01-01", NEUTRAL, NEUTRAL),
    ("03-01-05-02-02-01-01", ANGRY, ANGRY),
    ("03-01-02-01-01-01-01", None, NEUTRAL),
    ("03-01-06-01-01-01-01", None, None),
    ("03-01-03-01-02-02-02", HAPPY, HAPPY),  # written stereo
    ("03-01-04-02-01-01-02", SAD, SAD),
    ("03-01-02-02-02-02-02", None, NEUTRAL),
    ("03-02-03-01-01-01-02", None, None),  # song
]
_RAVDESS_MIRROR = "Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav"


def make_ravdess(root: Path, calm: str = "drop") -> list[Utterance]:
    """Write a miniature RAVDESS speech copy under ``root``; return the expected records.

    ``Actor_01`` (male) and ``Actor_02`` (female) hold neutral, calm x2, happy (stereo), sad,
    angry, fearful and one song file; a mirror folder repeats ``03-01-01-01-01-01-01.wav``
    (reported as a duplicate) and an AppleDouble file sits beside it. ``calm`` is the policy the
    records are computed for ("drop" or "neutral").
    """
    if calm not in ("drop", "neutral"):
        raise ValueError(f"unknown calm policy {calm!r}; expected one of drop, neutral")
    root = _absolute(root)
    expected = []
    for index, (stem, dropped, merged) in enumerate(_RAVDESS_FILES):
        actor = stem[-2:]
        wav = write_tone(
            root / f"Actor_{actor}" / f"{stem}.wav",
            0.2 + 0.1 * index,
            48_000,
            channels=2 if index == 4 else 1,
            seed=index,
        )
        emotion = dropped if calm == "drop" else merged
        if emotion is not None:
            expected.append(
                Utterance(
                    id=stem,
                    path=wav,
                    speaker=actor,
                    gender="M" if int(actor) % 2 else "F",
                    session="",
                    emotion=emotion,
                    text=_KIDS if stem[12:14] == "01" else _DOGS,
                )
            )
    write_tone(root / _RAVDESS_MIRROR, 0.2, 48_000)
    (root / "Actor_01" / "._03-01-01-01-01-01-01.wav").write_bytes(_APPLEDOUBLE)
    return sorted(expected, key=lambda utt: utt.id)


def expected_problems(corpus: str, root: Path) -> list[Problem]:
    """The problems ``list_<corpus>(root)`` must report for the miniature under ``root``."""
    root = _absolute(root)
    if corpus == "crema-d":
        return [
            Problem(str(root / "AudioWAV" / "1002_TAI_ANG_XX.wav"), "git-lfs pointer, not audio (run git lfs pull)"),
            Problem(str(root / "AudioWAV" / "1076_MTI_SAD_XX.wav"), "known silent file in CREMA-D (no audio)"),
        ]
    if corpus == "ravdess":
        first = root / "Actor_01" / "03-01-01-01-01-01-01.wav"
        reason = f"duplicate utterance id 03-01-01-01-01-01-01 (also at {first})"
        return [Problem(str(root / _RAVDESS_MIRROR), reason)]
    if corpus in ("iemocap", "msp-improv"):
        return []
    raise ValueError(f"unknown corpus {corpus!r}; expected one of iemocap, msp-improv, crema-d, ravdess")
