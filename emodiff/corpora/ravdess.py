"""RAVDESS: the Ryerson Audio-Visual Database of Emotional Speech and Song (speech part).

Livingstone, S. R., & Russo, F. A. (2018). The Ryerson Audio-Visual Database of Emotional
Speech and Song (RAVDESS): A dynamic, multimodal set of facial and vocal expressions in North
American English. PLoS ONE, 13(5), e0196391. https://doi.org/10.1371/journal.pone.0196391

Licence: CC BY-NC-SA 4.0 (non-commercial); Zenodo https://doi.org/10.5281/zenodo.1188976.

Expected layout: ``Audio_Speech_Actors_01-24.zip`` unpacked, ``Actor_01/`` .. ``Actor_24/``
with ``03-01-05-01-01-01-01.wav`` files (48 kHz); ``.flac`` transcodes are accepted too. Files
are found recursively, so a mirror that nests the actor folders deeper still works; when the
same file name occurs twice, the first in sorted path order is kept and the copy reported.

The stem has 7 two-digit fields: modality (03 audio-only) - vocal channel (01 speech, 02 song) -
emotion - intensity - statement (01 "Kids are talking by the door", 02 "Dogs are sitting by
the door") - repetition - actor (odd male, even female). Only audio-only speech is kept; other
files are counted as "video" / "song". Emotions 01 neutral, 03 happy, 04 sad, 05 angry are
kept; calm (02) is dropped (``calm="drop"``: 672 utterances) or merged into neutral
(``calm="neutral"``: 864); fearful, disgust and surprised are excluded. ``speaker`` is the actor
number ("01".."24"); the corpus has one session, so ``session`` is "".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from emodiff.corpora._common import ListingBuilder, corpus_root, visible_files
from emodiff.corpora.base import Listing, Utterance
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError

CalmPolicy = Literal["drop", "neutral"]
CALM_POLICIES: tuple[str, ...] = ("drop", "neutral")

KEPT: dict[str, int] = {"01": NEUTRAL, "03": HAPPY, "04": SAD, "05": ANGRY}
EXCLUDED: dict[str, str] = {"02": "calm", "06": "fearful", "07": "disgust", "08": "surprised"}
STATEMENTS: dict[str, str] = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}

NAME_SCHEME = "MM-VV-EE-II-SS-RR-AA (modality-channel-emotion-intensity-statement-repetition-actor)"
_NAME = re.compile(r"^(0[1-3])-(0[12])-(\d{2})-(0[12])-(0[12])-(0[12])-(0[1-9]|1\d|2[0-4])$")


def list_ravdess(root: Path, calm: CalmPolicy = "drop") -> Listing:
    """List the 4-class speech utterances of a RAVDESS copy under ``root`` (no audio is read).

    ``calm="drop"`` counts calm clips in ``excluded``; ``calm="neutral"`` labels them neutral.
    """
    if calm not in CALM_POLICIES:
        raise ValueError(f"unknown calm policy {calm!r}; expected one of {', '.join(CALM_POLICIES)}")
    root = corpus_root(root, "the RAVDESS folder holding Actor_01..Actor_24")
    builder = ListingBuilder()
    files = (visible_files(root, "*.wav", recursive=True, builder=builder)
             + visible_files(root, "*.flac", recursive=True, builder=builder))
    if not any(_NAME.match(path.stem) for path in files):
        raise EmodiffError(
            f"{root}: not a RAVDESS copy: expected Actor_01..Actor_24/ holding files named like "
            "03-01-05-01-01-01-01.wav (or .flac)"
        )
    for path in sorted(files):
        if builder.claim(path.stem, path):
            _read_file(path, calm, builder)
    return builder.listing()


def _read_file(path: Path, calm: CalmPolicy, builder: ListingBuilder) -> None:
    """Add one audio file, or count or report why it is left out."""
    match = _NAME.match(path.stem)
    if match is None:
        builder.problem(path, f"file name does not follow {NAME_SCHEME}")
        return
    modality, channel, emotion, _intensity, statement, _repetition, actor = match.groups()
    if modality != "03":
        builder.exclude("video")
    elif channel != "01":
        builder.exclude("song")
    elif emotion == "02" and calm == "neutral":
        _add(path, NEUTRAL, statement, actor, builder)
    elif emotion in EXCLUDED:
        builder.exclude(EXCLUDED[emotion])
    elif emotion not in KEPT:
        builder.problem(path, f"unknown label {emotion!r}")
    else:
        _add(path, KEPT[emotion], statement, actor, builder)


def _add(path: Path, emotion: int, statement: str, actor: str, builder: ListingBuilder) -> None:
    builder.add(
        Utterance(
            id=path.stem,
            path=path,
            speaker=actor,
            gender="M" if int(actor) % 2 == 1 else "F",
            session="",
            emotion=emotion,
            text=STATEMENTS[statement],
        )
    )
