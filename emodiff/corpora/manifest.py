"""Any corpus from a manifest: a TSV or CSV file with one row per utterance (``emodiff prepare manifest FILE``).

The delimiter follows the extension (``.tsv`` tab, ``.csv`` comma), else it is sniffed from the
start of the file (tab, comma, semicolon or bar). The header names the columns. Each field is read
from the column that ``columns`` names for it, else from the one header column (any case) that
has one of its usual names:

    field    usual names                          required?
    audio    path, audio, file, file_id, wav      yes: relative to the audio root (default: the manifest's
                                                  folder) and below it, or absolute
    emotion  emotion, label                       yes: the corpus's label, through the label map
    speaker  speaker, speaker_id, actor           yes
    text     text, transcript                     no ("" without): the transcript
    gender   gender, sex                          no ("" without): F, M, female or male, any case
    session  session                              no ("" without)
    id       id, utterance_id                     no: default the audio file's name without extension

The label map takes the corpus's labels (any case) to the four emotions; a label spelt as one of
them (``Happy``) maps to it unless the map says otherwise. Rows of any other label are counted in
``excluded``, never dropped unseen.

A defect of the manifest itself stops the listing with one line naming the file, the line and what
was expected: no header or no rows, a missing or ambiguous column, a row whose field count differs
from the header's, an empty audio/emotion/speaker, a gender other than the four spellings, a
relative path leading out of the audio root, no row of the four emotions, no row's audio found at all.
A defect of the copy is a problem, skipped and listed as other readers list theirs: a missing audio
file, a dangling symlink, a duplicate id.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emodiff.corpora import CORPORA, NAME_RULE, canonical_name
from emodiff.corpora._common import ListingBuilder, dangling_reason, is_dangling, squeeze
from emodiff.corpora.base import Gender, Listing, Utterance
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError

FIELDS: dict[str, tuple[str, ...]] = {
    "audio": ("path", "audio", "file", "file_id", "wav"),
    "emotion": ("emotion", "label"),
    "speaker": ("speaker", "speaker_id", "actor"),
    "text": ("text", "transcript"),
    "gender": ("gender", "sex"),
    "session": ("session",),
    "id": ("id", "utterance_id"),
}
REQUIRED: tuple[str, ...] = ("audio", "emotion", "speaker")
DELIMITERS: dict[str, str] = {".tsv": "\t", ".csv": ","}
_GENDERS: dict[str, Gender] = {"f": "F", "female": "F", "m": "M", "male": "M"}
_SNIFF_BYTES = 65536


@dataclass(frozen=True)
class ManifestSpec:
    """How to read a manifest: ``prepare manifest``'s ``--labels``, ``--columns`` and ``--audio-root``."""

    labels: dict[str, str] = field(default_factory=dict)  # corpus label, lower-case -> emotion name
    columns: dict[str, str] = field(default_factory=dict)  # field -> header column, lower-case
    audio_root: str | None = None  # absolute; None: the manifest's folder

    @classmethod
    def parse(cls, labels: str = "", columns: str = "", audio_root: Path | None = None) -> ManifestSpec:
        """The spec of ``--labels LABEL=EMOTION,...``, ``--columns FIELD=COLUMN,...`` and ``--audio-root DIR``;
        EmodiffError naming the flag for a malformed one."""
        label_map = _pairs(labels, "--labels", "LABEL=EMOTION")
        _emotion_ids(label_map)
        column_map = _pairs(columns, "--columns", "FIELD=COLUMN")
        unknown = [name for name in column_map if name not in FIELDS]
        if unknown:
            raise EmodiffError(f"--columns {unknown[0]}={column_map[unknown[0]]}: unknown field {unknown[0]!r}; "
                               f"expected one of {', '.join(FIELDS)}")
        if audio_root is not None and not audio_root.is_dir():
            raise EmodiffError(f"--audio-root {audio_root}: no such directory")
        return cls(label_map, column_map, None if audio_root is None else os.path.abspath(audio_root))

    def reader_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`list_manifest`; ``prepare`` records them in the group's config."""
        return {"labels": dict(self.labels), "columns": dict(self.columns), "audio_root": self.audio_root}


def manifest_name(manifest: Path, name: str | None = None) -> str:
    """The store name of the corpus listed by ``manifest``: ``name``, else the file's name without its
    extension, lower-cased. EmodiffError for a name no corpus group may have, or one of the corpora
    with a reader of their own (their layout says more than a manifest would)."""
    given = Path(manifest).stem if name is None else name
    try:
        key = canonical_name(given, "--name")
    except EmodiffError:
        if name is not None:
            raise
        raise EmodiffError(f"{manifest}: its name {given!r} is no corpus name ({NAME_RULE}); "
                           "give one with --name") from None
    if key in CORPORA:
        where = f"--name {given}" if name is not None else f"{manifest}: its name {given}"
        raise EmodiffError(f"{where}: {key} has a reader of its own; prepare it with `emodiff prepare {key} ROOT`, "
                           "or give this corpus another --name")
    return key


def list_manifest(manifest: Path, labels: Mapping[str, str] | None = None, columns: Mapping[str, str] | None = None,
                  audio_root: str | Path | None = None) -> Listing:
    """List the 4-class utterances of the manifest file ``manifest`` (see the module docstring; no audio is decoded)."""
    manifest = Path(os.path.abspath(manifest))
    if manifest.is_dir():
        raise EmodiffError(f"{manifest}: a folder; expected a manifest file (.tsv or .csv, one row per utterance)")
    if not manifest.is_file():
        raise EmodiffError(f"{manifest}: no such file (expected a manifest, .tsv or .csv, one row per utterance)")
    emotions = {name: i for i, name in enumerate(EMOTIONS)} | _emotion_ids(labels or {})
    reader = _Reader(manifest, emotions, manifest.parent if audio_root is None else Path(os.path.abspath(audio_root)))
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as stream:
            rows = csv.reader(stream, delimiter=_delimiter(manifest, stream))
            header = [name.strip().lower() for name in next(rows, [])]
            if not any(header):
                raise EmodiffError(f"{manifest}: empty; expected a header line naming the columns, then one row "
                                   "per utterance")
            reader.columns(header, {k.strip().lower(): v.strip().lower() for k, v in (columns or {}).items()})
            for row in rows:
                if any(value.strip() for value in row):
                    reader.row(rows.line_num, row)
    except UnicodeDecodeError as err:
        raise EmodiffError(f"{manifest}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise EmodiffError(f"{manifest}: not readable as delimited text ({err})") from None
    return reader.listing()


class _Reader:
    """The rows of one manifest into a :class:`ListingBuilder`, with what the end checks need to know."""

    def __init__(self, manifest: Path, emotions: dict[str, int], base: Path) -> None:
        self.manifest, self.emotions, self.base = manifest, emotions, base
        self.builder = ListingBuilder()
        self.index: dict[str, int] = {}
        self.header: list[str] = []
        self.rows = self.mapped = self.found = 0
        self.first_missing = ""

    def columns(self, header: list[str], chosen: Mapping[str, str]) -> None:
        """Find each field's column in ``header``; EmodiffError for a missing or ambiguous one."""
        self.header = header
        shown = ", ".join(header)
        for name, usual in FIELDS.items():
            if name in chosen:
                if chosen[name] not in header:
                    raise EmodiffError(f"{self.manifest}: --columns {name}={chosen[name]}: no such column "
                                       f"(the header has {shown})")
                self.index[name] = header.index(chosen[name])
                continue
            present = [column for column in usual if column in header]
            if len(present) > 1:
                raise EmodiffError(f"{self.manifest}: columns {' and '.join(present)} could both be the {name}; "
                                   f"choose one with --columns {name}=COLUMN")
            if present:
                self.index[name] = header.index(present[0])
            elif name in REQUIRED:
                raise EmodiffError(f"{self.manifest}: no {name} column; expected one named {', '.join(usual)} "
                                   f"(any case) or --columns {name}=COLUMN (the header has {shown})")

    def row(self, line: int, row: list[str]) -> None:
        """Add one row, or count its label as excluded, or record a problem; EmodiffError for a malformed row."""
        self.rows += 1
        at = f"{self.manifest}: line {line}"
        if len(row) != len(self.header):
            raise EmodiffError(f"{at}: {len(row)} fields, expected {len(self.header)} as in the header")
        value = {name: row[i].strip() for name, i in self.index.items()}
        for name in REQUIRED:
            if not value[name]:
                raise EmodiffError(f"{at}: empty {name} (column {self.header[self.index[name]]}); expected a value")
        gender: Gender = ""
        if "gender" in value:
            if value["gender"].lower() not in _GENDERS:
                raise EmodiffError(f"{at}: gender {value['gender']!r}; expected F, M, female or male (any case)")
            gender = _GENDERS[value["gender"].lower()]
        path = self._path(value["audio"], at)
        utt_id = value.get("id") or path.stem
        if not self.builder.claim(utt_id, f"{self.manifest}:{line}"):
            return
        emotion = self.emotions.get(value["emotion"].lower())
        if emotion is None:
            self.builder.exclude(value["emotion"])
            return
        self.mapped += 1
        if not path.is_file():
            reason = dangling_reason(path) if is_dangling(path) else f"missing audio ({self.manifest.name} line {line})"
            self.builder.problem(path, reason)
            self.first_missing = self.first_missing or f"line {line}: {path}"
            return
        self.found += 1
        self.builder.add(Utterance(id=utt_id, path=path, speaker=value["speaker"], gender=gender,
                                   session=value.get("session", ""), emotion=emotion,
                                   text=squeeze(value.get("text", ""))))

    def _path(self, written: str, at: str) -> Path:
        """The audio file a row names: absolute as written, else below the audio root."""
        if os.path.isabs(written):
            return Path(os.path.normpath(written))
        path = os.path.normpath(self.base / written)
        if os.path.commonpath([self.base, path]) != str(self.base):
            raise EmodiffError(f"{at}: audio path {written!r} leads out of {self.base}; expected a path below it "
                               "(see --audio-root) or an absolute one")
        return Path(path)

    def listing(self) -> Listing:
        """The listing; EmodiffError when nothing of the four emotions, or no audio at all, was found."""
        listing = self.builder.listing()
        if self.rows == 0:
            raise EmodiffError(f"{self.manifest}: no rows after the header; expected one row per utterance")
        if self.mapped == 0 and listing.excluded:
            labels = ", ".join(f"{label} {n}" for label, n in listing.excluded.items())
            raise EmodiffError(f"{self.manifest}: no row's emotion is one of {', '.join(EMOTIONS)} or mapped to one "
                               f"(labels: {labels}); map them with --labels LABEL=EMOTION,...")
        if self.mapped and not self.found and self.first_missing:
            raise EmodiffError(f"{self.manifest}: the audio of none of its {self.mapped} rows of the four emotions "
                               f"was found (first: {self.first_missing}); relative paths start at {self.base} "
                               "(see --audio-root)")
        return listing


def _pairs(text: str, flag: str, form: str) -> dict[str, str]:
    """``a=b, c=d`` -> {"a": "b", "c": "d"}, both sides stripped and lower-cased; EmodiffError naming ``flag``."""
    pairs: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = (side.strip().lower() for side in item.partition("="))
        if not sep or not key or not value or "=" in value:
            raise EmodiffError(f"{flag} {text}: {item!r} is not {form}; expected {form} pairs separated by commas")
        if key in pairs:
            raise EmodiffError(f"{flag} {text}: {key} is given twice")
        pairs[key] = value
    return pairs


def _emotion_ids(labels: Mapping[str, str]) -> dict[str, int]:
    """A label map (label -> emotion name) as label (lower-case) -> emotion id; EmodiffError for another name."""
    ids = {}
    for label, emotion in labels.items():
        if emotion.strip().lower() not in EMOTIONS:
            raise EmodiffError(f"--labels {label}={emotion}: {emotion!r} is none of the four emotions; expected "
                               f"{', '.join(EMOTIONS)}")
        ids[label.strip().lower()] = EMOTIONS.index(emotion.strip().lower())
    return ids


def _delimiter(manifest: Path, stream: Any) -> str:
    """The manifest's delimiter: from its extension, else sniffed from its start (the stream is rewound)."""
    if manifest.suffix.lower() in DELIMITERS:
        return DELIMITERS[manifest.suffix.lower()]
    sample = stream.read(_SNIFF_BYTES)
    stream.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters="\t,;|").delimiter
    except csv.Error:
        raise EmodiffError(f"{manifest}: cannot tell its delimiter; name it .tsv (tab-separated) or .csv "
                           "(comma-separated)") from None
