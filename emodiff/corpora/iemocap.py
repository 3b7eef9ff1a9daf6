"""IEMOCAP: the Interactive Emotional Dyadic Motion Capture database (USC SAIL).

Busso, C., Bulut, M., Lee, C.-C., Kazemzadeh, A., Mower, E., Kim, S., Chang, J. N., Lee, S.,
& Narayanan, S. S. (2008). IEMOCAP: interactive emotional dyadic motion capture database.
Language Resources and Evaluation, 42(4), 335-359. https://doi.org/10.1007/s10579-008-9076-6

Licence: research use under the USC SAIL release form (https://sail.usc.edu/iemocap/); the
corpus cannot be redistributed, so tests run on a generated miniature.

Expected layout (``IEMOCAP_full_release/``)::

    Session1 .. Session5/
        dialog/EmoEvaluation/<dialog>.txt       consensus labels (sub-directories ignored)
        dialog/transcriptions/<dialog>.txt      "<id> [start-end]: text"
        sentences/wav/<dialog>/<id>.wav         16 kHz mono turns; <dialog> = id minus 5 chars

Every ``SessionN`` folder present must hold ``dialog/EmoEvaluation``; missing sessions are
allowed (partial copies), so check the count: the full 4-class set is 5531 utterances
(neu 1708, hap+exc 1636, ang 1103, sad 1084), ``exc`` merged into happy. ``speaker`` is
``SesNN`` + the letter of the actor actually speaking (the letter before the final 3-digit
index), not the dialog prefix; ``duration_s`` is end - start of the label header.
"""

from __future__ import annotations

import re
from pathlib import Path

from emodiff.corpora._common import ListingBuilder, corpus_root, is_dangling, squeeze, visible_files
from emodiff.corpora.base import Listing, Utterance
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError

KEPT: dict[str, int] = {"neu": NEUTRAL, "hap": HAPPY, "exc": HAPPY, "sad": SAD, "ang": ANGRY}
EXCLUDED: frozenset[str] = frozenset({"fru", "xxx", "sur", "fea", "oth", "dis"})

ID_SCHEME = "Ses0N{F|M}_{impro|script}NN..._{F|M}NNN"
_ID = re.compile(r"^Ses(0[1-5])[FM]_(?:impro|script)\w*_([FM])\d{3}$")
_HEADER = re.compile(r"^\[\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*\]\s+(\S+)\s+(\S+)")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
_NONSPEECH = re.compile(r"\[[^\]]*\]")


def list_iemocap(root: Path) -> Listing:
    """List the 4-class utterances of an IEMOCAP release under ``root`` (no audio is read)."""
    root = corpus_root(root, "the IEMOCAP_full_release folder")
    builder = ListingBuilder()
    for session in _sessions(root):
        for label_file in visible_files(session / "dialog" / "EmoEvaluation", "*.txt", builder=builder):
            _read_dialog(session, label_file, builder)
    return builder.listing()


def _sessions(root: Path) -> list[Path]:
    """The ``SessionN`` folders of ``root``; EmodiffError unless each holds labels."""
    expected = "expected Session1..Session5/dialog/EmoEvaluation/*.txt"
    sessions = [path for path in sorted(root.glob("Session[1-5]")) if path.is_dir()]
    if not sessions:
        raise EmodiffError(f"{root}: not an IEMOCAP release: {expected}")
    for session in sessions:
        if not (session / "dialog" / "EmoEvaluation").is_dir():
            raise EmodiffError(f"{root}: not an IEMOCAP release: {expected} ({session.name} has none)")
    if not any(visible_files(s / "dialog" / "EmoEvaluation", "*.txt") for s in sessions):
        raise EmodiffError(f"{root}: not an IEMOCAP release: {expected} (no label files found)")
    return sessions


def _read_dialog(session: Path, label_file: Path, builder: ListingBuilder) -> None:
    """Add the turns labelled in one ``EmoEvaluation/<dialog>.txt``."""
    texts = _read_transcripts(session / "dialog" / "transcriptions" / label_file.name)
    for lineno, line in enumerate(_lines(label_file), start=1):
        if not line.startswith("["):
            continue  # rater lines ("C-E1:", "A-E3:"), the "%" column header, blank lines
        match = _HEADER.match(line)
        if match is None:
            builder.problem(label_file, f"line {lineno}: malformed turn header {line.strip()!r}")
            continue
        start, end, utt_id, label = match.groups()
        if not builder.claim(utt_id, label_file, f"{label_file}:{lineno}"):
            continue
        id_match = _ID.match(utt_id)
        if id_match is None:
            builder.problem(label_file, f"utterance id {utt_id!r} does not follow {ID_SCHEME}")
            continue
        emotion = builder.emotion(label, KEPT, EXCLUDED, label_file, f" for {utt_id}")
        if emotion is None:
            continue
        session_digits, speaking = id_match.groups()
        audio = session / "sentences" / "wav" / utt_id[:-5] / f"{utt_id}.wav"
        if not audio.is_file():
            if is_dangling(audio):
                builder.dangling(audio)
            else:
                builder.problem(audio, "audio file missing")
            continue
        builder.add(
            Utterance(
                id=utt_id,
                path=audio,
                speaker=f"Ses{session_digits}{speaking}",
                gender="F" if speaking == "F" else "M",
                session=str(int(session_digits)),
                emotion=emotion,
                text=texts.get(utt_id, ""),
                duration_s=round(float(end) - float(start), 4),
            )
        )


def _read_transcripts(path: Path) -> dict[str, str]:
    """Id -> cleaned text from one transcription file; {} when the dialog has none.

    Lines are keyed by their own id and looked up by label id, so transcript-only ids
    (``_MXX0`` overlaps, unlabelled turns) are simply never asked for.
    """
    if not path.is_file():
        return {}
    texts: dict[str, str] = {}
    for line in _lines(path):
        match = _TRANSCRIPT.match(line.strip())
        if match is not None:
            utt_id, text = match.groups()
            texts[utt_id] = squeeze(_NONSPEECH.sub(" ", text))
    return texts


def _lines(path: Path) -> list[str]:
    # A few release files carry stray non-UTF-8 bytes; one bad byte must not lose a dialog.
    return path.read_text(encoding="utf-8", errors="replace").splitlines()
