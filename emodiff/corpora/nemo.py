"""nEMO: a dataset of emotional speech in Polish.

Christop, I. (2024). nEMO: Dataset of Emotional Speech in Polish. In Proceedings of the 2024 Joint
International Conference on Computational Linguistics, Language Resources and Evaluation
(LREC-COLING 2024), 12111-12116, Torino, Italia. https://aclanthology.org/2024.lrec-main.1059

Licence: CC BY-NC-SA 4.0 (non-commercial); source https://github.com/amu-cai/nEMO.

Expected layout (the repository as cloned)::

    data.tsv                  file_id, emotion, raw_text, normalized_text, speaker_id, gender, age
    samples/EB0_anger_1.wav   audio named by file_id ({speaker}_{emotion}_{sentence}), 24 kHz mono

Nine actors (four female, five male) portray six states. anger, happiness, sadness and neutral are
kept (3076 of the 4481 files: neutral 809, happy 749, sad 769, angry 749); fear and surprised are
excluded. The id is the file name without its extension, the speaker ``speaker_id`` (the release
pads it with spaces; every field is stripped), the gender ``female``/``male`` -> F/M, the text the
orthographic ``raw_text`` (Polish, with punctuation). One session, so ``session`` is "".
A copy whose audio was transcoded (``EB0_anger_1.flac`` for the listed ``.wav``) is accepted.
"""

from __future__ import annotations

import csv
from pathlib import Path

from emodiff.corpora._common import ListingBuilder, corpus_root, dangling_reason, is_dangling, squeeze
from emodiff.corpora.base import Gender, Listing, Utterance
from emodiff.emotions import ANGRY, HAPPY, NEUTRAL, SAD
from emodiff.errors import EmodiffError

KEPT: dict[str, int] = {"anger": ANGRY, "happiness": HAPPY, "sadness": SAD, "neutral": NEUTRAL}
EXCLUDED: frozenset[str] = frozenset({"fear", "surprised"})
COLUMNS: tuple[str, ...] = ("file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender", "age")
LABELS = "data.tsv"
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac")

_GENDERS: dict[str, Gender] = {"female": "F", "male": "M"}


def list_nemo(root: Path) -> Listing:
    """List the 4-class utterances of a nEMO copy under ``root`` (no audio is decoded)."""
    root = corpus_root(root, "the nEMO folder holding data.tsv and samples/")
    labels = root / LABELS
    if not labels.is_file():
        raise EmodiffError(f"{root}: not a nEMO copy: expected {LABELS} and samples/<file_id>")
    builder = ListingBuilder()
    # The transcripts hold typographic quotes and no tab, so the file is read without quote handling.
    with labels.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in COLUMNS if name not in header]
        if missing:
            raise EmodiffError(f"{labels}: expected the tab-separated columns {', '.join(COLUMNS)}; "
                               f"missing {', '.join(missing)}")
        for row in reader:
            if any(field.strip() for field in row):
                _read_row(root, labels, reader.line_num, header, row, builder)
    return builder.listing()


def _read_row(root: Path, labels: Path, line: int, header: list[str], row: list[str],
              builder: ListingBuilder) -> None:
    """Add one row of ``data.tsv``, or count or report why it is left out."""
    where = f"{labels}:{line}"
    if len(row) != len(header):
        builder.problem(where, f"{len(row)} fields, expected {len(header)} as in the header")
        return
    fields = {name: value.strip() for name, value in zip(header, row, strict=True)}
    file_id, speaker = fields["file_id"], fields["speaker_id"]
    if not file_id or file_id.startswith(".") or Path(file_id).name != file_id:
        builder.problem(where, f"file_id {file_id!r}: expected a file name in samples/")
        return
    utt_id = Path(file_id).stem
    if not builder.claim(utt_id, where):
        return
    emotion = builder.emotion(fields["emotion"], KEPT, EXCLUDED, where, f" for {utt_id}")
    if emotion is None:
        return
    gender = _GENDERS.get(fields["gender"].lower())
    if gender is None or not speaker:
        builder.problem(where, f"speaker {speaker!r}, gender {fields['gender']!r}: expected a speaker_id and "
                               "female or male")
        return
    path = _audio(root / "samples", file_id)
    if path is None:
        listed = root / "samples" / file_id
        builder.problem(listed, dangling_reason(listed) if is_dangling(listed) else f"missing audio ({where})")
        return
    builder.add(Utterance(id=utt_id, path=path, speaker=speaker, gender=gender, session="", emotion=emotion,
                          text=squeeze(fields["raw_text"])))


def _audio(samples: Path, file_id: str) -> Path | None:
    """``samples/<file_id>``, else the same name with another audio suffix (a transcoded copy), else None."""
    listed = samples / file_id
    if listed.is_file():
        return listed
    for suffix in AUDIO_SUFFIXES:
        other = listed.with_suffix(suffix)
        if other != listed and other.is_file():
            return other
    return None
