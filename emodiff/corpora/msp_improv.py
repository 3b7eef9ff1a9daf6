"""MSP-IMPROV: an acted corpus of dyadic interactions to study emotion perception (UT Dallas MSP lab).

Busso, C., Parthasarathy, S., Burmania, A., AbdelWahab, M., Sadoughi, N., & Mower Provost, E.
(2017). MSP-IMPROV: An acted corpus of dyadic interactions to study emotion perception. IEEE
Transactions on Affective Computing, 8(1), 67-80. https://doi.org/10.1109/TAFFC.2016.2515617

Licence: academic licence agreement with the MSP lab (https://ecs.utdallas.edu/research/
researchlabs/msp-lab/MSP-Improv.html); not redistributable, tests use a generated miniature.

Expected layout::

    Evaluation.txt          (the misspelt Evalution.txt of some copies is accepted too)
    Audio/session1..6/S01A/P/MSP-IMPROV-S01A-F01-P-FM01.wav
    Text/<id>.txt           optional, one transcript per utterance

``Evaluation.txt`` holds one block per clip: a header ``UTD-IMPROV-<name>.avi; <consensus>;
A:..; V:..; D:..; N:..;`` then rater lines and a blank line. Only the header consensus is
used (A/H/S/N -> angry/happy/sad/neutral; O and X are excluded), so repeated rater lines are
harmless. The 4-class set is 7798 utterances (neutral 3477, happy 2644, sad 885, angry 792).
Audio is found by searching ``Audio/`` recursively and matching file stems, so copies that
flatten the session tree still work. ``speaker``/``gender``/``session`` come from the 4th name
field (``F01`` -> speaker "F01", "F", session "1"), which names the dialog's actor and may not
be the speaking one for every turn: prefer leave-one-session-out splits.

Text: the corpus ships no transcripts for all turns. ``Text/<id>.txt`` is used when present,
else the text is "" - non-target turns need a transcript source (or ASR) for text conditioning.
"""

from __future__ import annotations

import re
from pathlib import Path

from emodiff.corpora._common import (
    ListingBuilder,
    corpus_root,
    duplicate_reason,
    squeeze,
    visible_files,
)
from emodiff.corpora.base import Listing, Utterance
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError

KEPT: dict[str, int] = {"A": ANGRY, "H": HAPPY, "S": SAD, "N": NEUTRAL}
EXCLUDED: frozenset[str] = frozenset({"O", "X"})
LABEL_FILES: tuple[str, ...] = ("Evaluation.txt", "Evalution.txt")

NAME_SCHEME = "MSP-IMPROV-S{NN}{A|H|S|N}-{F|M}{0N}-{P|R|S|T}-{F|M}{F|M}{NN}"
_NAME = re.compile(r"^MSP-IMPROV-S\d{2}[AHSN]-([FM])(0[1-6])-[PRST]-[FM]{2}\d{2}$")
# A clip header; rater lines start with the rater's name, never with the corpus prefix.
_HEADER = re.compile(r"^(?:UTD|MSP)-IMPROV-([^;\s]+?)(?:\.avi)?\s*;\s*([^;\s]*)\s*;")


def list_msp_improv(root: Path) -> Listing:
    """List the 4-class utterances of an MSP-IMPROV copy under ``root`` (no audio is read)."""
    root = corpus_root(root, "the MSP-IMPROV folder holding Evaluation.txt and Audio/")
    label_file = _label_file(root)
    builder = ListingBuilder()
    audio = _index_audio(root / "Audio", builder)
    lines = label_file.read_text(encoding="utf-8", errors="replace").splitlines()
    for lineno, line in enumerate(lines, start=1):
        match = _HEADER.match(line.strip())
        if match is None:
            continue  # rater lines and blank block separators
        name, label = match.groups()
        utt_id = f"MSP-IMPROV-{name}"
        if not builder.claim(utt_id, label_file, f"{label_file}:{lineno}"):
            continue
        name_match = _NAME.match(utt_id)
        if name_match is None:
            builder.problem(label_file, f"utterance id {utt_id!r} does not follow {NAME_SCHEME}")
            continue
        emotion = builder.emotion(label, KEPT, EXCLUDED, label_file, f" for {utt_id}")
        if emotion is None:
            continue
        if utt_id not in audio:
            if utt_id not in builder.dangling_stems:  # a dangling symlink is reported once, as itself
                builder.problem(_official_path(root, utt_id), "audio file missing")
            continue
        gender, digits = name_match.groups()
        builder.add(
            Utterance(
                id=utt_id,
                path=audio[utt_id],
                speaker=f"{gender}{digits}",
                gender="F" if gender == "F" else "M",
                session=str(int(digits)),
                emotion=emotion,
                text=_text(root / "Text" / f"{utt_id}.txt"),
            )
        )
    return builder.listing()


def _label_file(root: Path) -> Path:
    """The evaluation file, under either spelling; EmodiffError when the layout is not MSP-IMPROV."""
    found = [root / name for name in LABEL_FILES if (root / name).is_file()]
    if not found or not (root / "Audio").is_dir():
        raise EmodiffError(f"{root}: not an MSP-IMPROV copy: expected Evaluation.txt and Audio/session1..6/*/*/*.wav")
    return found[0]


def _index_audio(audio_dir: Path, builder: ListingBuilder) -> dict[str, Path]:
    """Stem -> wav path under ``Audio/``; a second file with the same stem is a duplicate."""
    index: dict[str, Path] = {}
    for path in visible_files(audio_dir, "*.wav", recursive=True, builder=builder):
        if path.stem in index:
            builder.problem(path, duplicate_reason(path.stem, str(index[path.stem])))
        else:
            index[path.stem] = path
    return index


def _official_path(root: Path, utt_id: str) -> Path:
    """Where the official layout keeps ``utt_id`` (for problem reports)."""
    _, _, sentence, actor, condition, _ = utt_id.split("-")
    return root / "Audio" / f"session{int(actor[1:])}" / sentence / condition / f"{utt_id}.wav"


def _text(path: Path) -> str:
    return squeeze(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else ""
