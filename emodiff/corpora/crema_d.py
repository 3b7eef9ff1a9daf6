"""CREMA-D: the Crowd-sourced Emotional Multimodal Actors Dataset.

Cao, H., Cooper, D. G., Keutmann, M. K., Gur, R. C., Nenkova, A., & Verma, R. (2014).
CREMA-D: Crowd-sourced Emotional Multimodal Actors Dataset. IEEE Transactions on Affective
Computing, 5(4), 377-390. https://doi.org/10.1109/TAFFC.2014.2336244

Licence: Open Database License (ODbL) v1.0, contents under the Database Contents License;
source https://github.com/CheyneyComputerScience/CREMA-D (media stored with git-lfs).

Expected layout::

    AudioWAV/1001_DFA_ANG_XX.wav    ActorID _ sentence _ emotion _ level, 16 kHz
    VideoDemographics.csv           ActorID, Age, Sex, Race, Ethnicity (Sex: Male / Female)

The emotion is the one the actor was asked to portray (file name), not the perceived one.
ANG/HAP/SAD/NEU are kept (4900 files: 1271 each, neutral 1087); DIS and FEA are excluded.
The text is the sentence the code stands for. One session, so ``session`` is "".
A clone without ``git lfs pull`` holds ~130-byte pointer stubs instead of audio: each is
reported as a problem, as is the known silent file ``1076_MTI_SAD_XX`` (not opened).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emodiff.corpora._common import ListingBuilder, corpus_root, visible_files
from emodiff.corpora.base import Gender, Listing, Utterance
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError

KEPT: dict[str, int] = {"ANG": ANGRY, "HAP": HAPPY, "SAD": SAD, "NEU": NEUTRAL}
EXCLUDED: frozenset[str] = frozenset({"DIS", "FEA"})
LEVELS: frozenset[str] = frozenset({"LO", "MD", "HI", "XX"})
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
SILENT: frozenset[str] = frozenset({"1076_MTI_SAD_XX"})
DEMOGRAPHICS = "VideoDemographics.csv"

NAME_SCHEME = "ActorID_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)"
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_LFS_MAGIC = b"version https://git-lfs"
_SEXES: dict[str, Gender] = {"Female": "F", "Male": "M"}


def list_crema_d(root: Path) -> Listing:
    """List the 4-class utterances of a CREMA-D copy under ``root`` (no audio is decoded)."""
    root = corpus_root(root, "the CREMA-D folder holding AudioWAV/ and VideoDemographics.csv")
    if not (root / "AudioWAV").is_dir():
        raise EmodiffError(f"{root}: not a CREMA-D copy: expected AudioWAV/*.wav and {DEMOGRAPHICS}")
    genders = _genders(root / DEMOGRAPHICS)
    builder = ListingBuilder()
    for path in visible_files(root / "AudioWAV", "*.wav", builder=builder):
        if builder.claim(path.stem, path):
            _read_file(path, genders, builder)
    return builder.listing()


def _read_file(path: Path, genders: dict[str, Gender], builder: ListingBuilder) -> None:
    """Add one ``AudioWAV`` file, or record why it is left out."""
    match = _NAME.match(path.stem)
    if match is None or match[2] not in SENTENCES or match[4] not in LEVELS:
        builder.problem(path, f"file name does not follow {NAME_SCHEME}")
        return
    actor, sentence, label, _level = match.groups()
    emotion = builder.emotion(label, KEPT, EXCLUDED, path)
    if emotion is None:
        return
    if path.stem in SILENT:
        builder.problem(path, "known silent file in CREMA-D (no audio)")
    elif _is_lfs_pointer(path):
        builder.problem(path, "git-lfs pointer, not audio (run git lfs pull)")
    elif actor not in genders:
        builder.problem(path, f"actor {actor} not in {DEMOGRAPHICS}")
    else:
        builder.add(
            Utterance(
                id=path.stem,
                path=path,
                speaker=actor,
                gender=genders[actor],
                session="",
                emotion=emotion,
                text=SENTENCES[sentence],
            )
        )


def _genders(csv_path: Path) -> dict[str, Gender]:
    """ActorID -> "F"/"M" from ``VideoDemographics.csv``; EmodiffError if it is missing or malformed."""
    if not csv_path.is_file():
        raise EmodiffError(f"{csv_path}: missing (CREMA-D needs {DEMOGRAPHICS} for speaker gender)")
    # The csv is sometimes re-saved by spreadsheet tools with a byte-order mark.
    with csv_path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        if not {"ActorID", "Sex"} <= set(reader.fieldnames or ()):
            raise EmodiffError(f"{csv_path}: expected columns ActorID, Age, Sex, Race, Ethnicity")
        genders: dict[str, Gender] = {}
        for row in reader:
            actor, sex = (row["ActorID"] or "").strip(), (row["Sex"] or "").strip()
            if sex not in _SEXES:
                raise EmodiffError(f"{csv_path}: actor {actor}: Sex {sex!r}, expected Male or Female")
            genders[actor] = _SEXES[sex]
    return genders


def _is_lfs_pointer(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(len(_LFS_MAGIC)) == _LFS_MAGIC
