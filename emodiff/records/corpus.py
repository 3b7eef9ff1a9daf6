"""`/corpora/<corpus>`: the prepared corpus (utterances, segments) and its errors (docs/store.md)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from emodiff.errors import EmodiffError
from emodiff.records.base import InSection, Meta, as_float, as_int, as_json, as_str, file_name, group_at, meta
from emodiff.store import (
    attrs_dict,
    foreign_members,
    open_store,
    read_data,
    read_table,
    write_table,
)

if TYPE_CHECKING:  # only for annotations: the corpus readers are not needed to read or write a store
    from emodiff.corpora import Problem, Utterance


def not_prepared(store: Path | str, corpus: str, note: str = "") -> EmodiffError:
    """The error for a step that needs ``/corpora/<corpus>`` when the store lacks it."""
    return EmodiffError(f"{store}: corpus {corpus} is not prepared{f' ({note})' if note else ''}; "
                        f"run `emodiff prepare {corpus} ROOT` first")


def none_prepared(store: Path | str) -> EmodiffError:
    return EmodiffError(f"{store}: holds no prepared corpus; run `emodiff prepare CORPUS ROOT` first")


def prepared_corpora(store: Path, note: Callable[[str], object]) -> list[str]:
    """The corpus groups `emodiff prepare` wrote; anything else under /corpora is ignored, told to ``note``.
    EmodiffError when there is none."""
    names: list[str] = []
    with open_store(store) as f:
        for key in Corpus.names(f):
            standard = meta(f, Corpus.path(key))
            if standard is not None and standard.config_hash:  # the standard attrs of a group emodiff wrote
                names.append(key)
            else:
                note(f"/corpora/{key} is a group emodiff did not write; ignored")
        section = f.get("corpora")
        for key in foreign_members(section) if section is not None else []:
            note(f"/corpora/{key} is not a corpus group (a dataset another tool put there); ignored")
    if not names:
        raise none_prepared(store)
    return names


@dataclass(frozen=True)
class Corpus(InSection):
    """``/corpora/<name>``: the utterance table, the segment index and the corpus's settings.

    The mels stay in the store until :meth:`load_mel`; ``mel_path`` names them for a lazy reader.
    """

    SECTION = "corpora"

    name: str
    meta: Meta
    attrs: dict[str, Any]
    utterances: dict[str, np.ndarray]  # columns, one row per utterance (docs/store.md)
    seg_utt: np.ndarray  # [N] int64, the utterance row of each segment
    seg_frames: np.ndarray  # [N] int64, valid frames of each segment
    mel_shape: tuple[int, ...]  # (N, n_mels, segment_frames)
    mel_dtype: str
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    corpus: str = ""
    root: str = ""
    dtype: str = ""
    calm: str = ""
    n_skipped: int | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    sample_rate: int | None = None
    n_fft: int | None = None
    hop: int | None = None
    win: int | None = None
    n_mels: int | None = None
    fmin: float | None = None
    fmax: float | None = None
    segment_frames: int | None = None
    log_min: float | None = None
    log_max: float | None = None

    @property
    def mel_path(self) -> str:
        return f"corpora/{self.name}/segments/mel"

    @classmethod
    def read(cls, f: h5py.File, name: str, note: str = "") -> Corpus:
        """The record of ``/corpora/<name>``; :func:`not_prepared` (with ``note``) when it is not there."""
        g = group_at(f, cls.path(name))
        if g is None:
            raise not_prepared(file_name(f), name, note)
        a = attrs_dict(g)
        mel = g["segments/mel"]
        skipped = read_table(g["skipped"]) if "skipped" in g else {}
        excluded = as_json(a, "excluded")
        return cls(
            name=name, meta=Meta.of(g), attrs=a, utterances=read_table(g["utterances"]),
            seg_utt=read_data(g["segments/utt"]).astype(np.int64),
            seg_frames=read_data(g["segments/frames"]).astype(np.int64),
            mel_shape=tuple(mel.shape), mel_dtype=str(mel.dtype),
            skipped=tuple(zip(skipped.get("path", []), skipped.get("reason", []), strict=True)),
            corpus=as_str(a, "corpus"), root=as_str(a, "root"), dtype=as_str(a, "dtype"), calm=as_str(a, "calm"),
            n_skipped=as_int(a, "n_skipped"), excluded=excluded if isinstance(excluded, dict) else {},
            sample_rate=as_int(a, "sample_rate"), n_fft=as_int(a, "n_fft"), hop=as_int(a, "hop"), win=as_int(a, "win"),
            n_mels=as_int(a, "n_mels"), fmin=as_float(a, "fmin"), fmax=as_float(a, "fmax"),
            segment_frames=as_int(a, "segment_frames"), log_min=as_float(a, "log_min"), log_max=as_float(a, "log_max"))

    def load_mel(self, f: h5py.File) -> np.ndarray:
        """Every segment's mel [N, n_mels, frames] as float16."""
        return read_data(f[self.mel_path]).astype(np.float16, copy=False)

    @property
    def seg_emotion(self) -> np.ndarray:
        """[N] int64, the emotion of each segment's utterance."""
        return self.utterances["emotion"].astype(np.int64)[self.seg_utt]

    def qualified_speakers(self) -> np.ndarray:
        """[U] ``corpus:speaker``, the form a generator's training speakers are recorded in."""
        return np.array([f"{self.name}:{s}" for s in self.utterances["speaker"]])

    @staticmethod
    def utterance_table(f: h5py.File, name: str) -> dict[str, np.ndarray] | None:
        """The ``utterances`` columns of ``/corpora/<name>`` alone (no segment index); None when the group
        lacks the table."""
        g = group_at(f, Corpus.path(name))
        if g is None:
            raise not_prepared(file_name(f), name)
        return read_table(g["utterances"]) if "utterances" in g else None


def write_corpus(group: h5py.Group, kept: Sequence[tuple[Utterance, float, int]], problems: Sequence[Problem], *,
                 corpus: str, root: str, dtype: str, excluded: Mapping[str, int], mel: Mapping[str, Any],
                 calm: str | None = None) -> None:
    """The tables and attrs of a prepared ``/corpora/<corpus>`` (its ``segments/`` are :class:`SegmentWriter`'s):
    ``utterances``, one row per kept (utterance, decoded duration in s, source sample rate), in segment order;
    ``skipped`` (path, reason); then the attrs: the corpus's settings, ``mel`` (MelConfig.attrs) and, for
    RAVDESS only, ``calm``."""
    utts = [u for u, _, _ in kept]
    write_table(group.create_group("utterances"), {
        "id": [u.id for u in utts],
        "speaker": [u.speaker for u in utts],
        "gender": [u.gender for u in utts],
        "session": [u.session for u in utts],
        "emotion": np.array([u.emotion for u in utts], dtype=np.int8),
        "text": [u.text for u in utts],
        "duration_s": np.array([d for _, d, _ in kept], dtype=np.float32),
        "source_rate": np.array([r for _, _, r in kept], dtype=np.int32),
        "path": [str(u.path) for u in utts],
    })
    write_table(group.create_group("skipped"), {
        "path": [p.path for p in problems], "reason": [p.reason for p in problems],
    })
    group.attrs.update(
        corpus=corpus, root=root, dtype=dtype, excluded=json.dumps(dict(excluded), sort_keys=True),
        n_skipped=len(problems), **mel, **({"calm": calm} if calm is not None else {}),
    )
