"""`/synthetic/<name>`: a generated set, its attrs and its writer (docs/store.md)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.records.base import InSection, Meta, as_int, as_json, as_list, as_str, file_name, group_at
from emodiff.records.segments import DEFLATE_LEVEL
from emodiff.store import (
    attrs_dict,
    read_data,
    reading,
    write_group,
    write_table,
)


@dataclass(frozen=True)
class SyntheticAttrs:
    """The provenance attrs of ``/synthetic/<name>`` (docs/store.md), the same for every generator family.

    ``drawing`` holds the family's own settings (for diffusion: sampler, steps, eta, guidance,
    parameterization), written as attrs of their own; ``drawn_with`` says them in one line for tables.
    """

    checkpoint: str = ""
    checkpoint_sha256: str = ""
    run: str = ""
    seed: int | None = None
    generator: str = "diffusion"  # the family that drew the set (emodiff/generators/)
    drawn_with: str = ""
    drawing: dict[str, Any] = field(default_factory=dict)
    training_speakers: tuple[str, ...] = ()  # corpus:speaker, the generator's (for the leak guard)
    embed_model: str = ""
    template: str = ""
    recipe: dict[str, Any] | None = None  # the generator's recipe
    voices: str = "training"  # training, mix or gaussian (emodiff/voices.py); sets drawn before it: training

    @property
    def corpora(self) -> list[str]:
        """The corpora the generator was trained on (of its ``corpus:speaker`` training speakers), first seen first."""
        return list(dict.fromkeys(s.partition(":")[0] for s in self.training_speakers if ":" in s))

    def to_attrs(self) -> dict[str, Any]:
        return {**self.drawing, "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
                "run": self.run, "seed": self.seed, "generator": self.generator, "drawn_with": self.drawn_with,
                "training_speakers": json.dumps(list(self.training_speakers)), "embed_model": self.embed_model,
                "template": self.template, "recipe": json.dumps(self.recipe), "voices": self.voices}

    @classmethod
    def of(cls, a: Mapping[str, Any]) -> SyntheticAttrs:
        recipe = as_json(a, "recipe")
        drawing = {k: v for k, v in a.items() if k not in _SYNTHETIC_COMMON}
        drawn_with = as_str(a, "drawn_with") or ", ".join(str(x) for x in (  # sets drawn before drawn_with was kept
            a.get("sampler"), f"{a['steps']} steps" if "steps" in a else None,
            f"guidance {a['guidance']:g}" if a.get("guidance") else None) if x)
        return cls(checkpoint=as_str(a, "checkpoint"), checkpoint_sha256=as_str(a, "checkpoint_sha256"),
                   run=as_str(a, "run"), seed=as_int(a, "seed"), generator=as_str(a, "generator") or "diffusion",
                   drawn_with=drawn_with, drawing=drawing, training_speakers=as_list(a, "training_speakers"),
                   embed_model=as_str(a, "embed_model"), template=as_str(a, "template"),
                   recipe=recipe if isinstance(recipe, dict) else None, voices=as_str(a, "voices") or "training")


_SYNTHETIC_COMMON = {f.name for f in fields(SyntheticAttrs)} - {"drawing"} | {
    "config", "config_hash", "created", "emodiff_version", "rows_done"}


@dataclass(frozen=True)
class Synthetic(InSection):
    """``/synthetic/<name>``: labelled generated segments; the mels are read by :meth:`load_mel`."""

    SECTION = "synthetic"

    name: str
    meta: Meta
    attrs: dict[str, Any]
    provenance: SyntheticAttrs
    mel_shape: tuple[int, ...]  # (M, C, F); () when mel is missing
    emotion: np.ndarray  # [M] int64 (empty when the dataset is missing: see has_emotion)
    has_emotion: bool
    has_frames: bool  # sets drawn before the `frames` field lack it

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Synthetic:
        g = group_at(f, cls.path(name))
        if g is None:
            sets = cls.names(f)
            raise EmodiffError(f"{file_name(f)}: no synthetic set {name!r}; sets: {', '.join(sets) or 'none'}")
        a = attrs_dict(g)
        emotion = read_data(g["emotion"]).astype(np.int64) if "emotion" in g else np.zeros(0, np.int64)
        return cls(name=name, meta=Meta.of(g), attrs=a, provenance=SyntheticAttrs.of(a),
                   mel_shape=tuple(g["mel"].shape) if "mel" in g else (), emotion=emotion,
                   has_emotion="emotion" in g, has_frames="frames" in g)

    def check(self, store: Path | str, *, speakers: bool = False) -> None:
        """EmodiffError unless mel [M, C, F] and emotion [M] with ids in 0..3 are there (and, with
        ``speakers``, the training_speakers attr the leak guard needs)."""
        where = f"{store}: /synthetic/{self.name}"
        if not self.mel_shape or not self.has_emotion or (speakers and "training_speakers" not in self.attrs):
            what = "mel, emotion or its training_speakers attr" if speakers else "mel or emotion"
            raise EmodiffError(f"{where} lacks {what} (expected emodiff sample's layout)")
        if len(self.mel_shape) != 3 or self.emotion.shape != self.mel_shape[:1]:
            raise EmodiffError(f"{where}: expected mel (M, C, F) and emotion (M,), got {self.mel_shape} and "
                               f"{self.emotion.shape}")
        if len(self.emotion) and (self.emotion.min() < 0 or self.emotion.max() >= len(EMOTIONS)):
            raise EmodiffError(f"{where}/emotion holds ids outside 0..{len(EMOTIONS) - 1}")

    @property
    def per_emotion(self) -> list[int]:
        """Segments per emotion, in EMOTIONS order (ids outside 0..3 are not counted)."""
        e = self.emotion
        return [int(c) for c in np.bincount(e[(e >= 0) & (e < len(EMOTIONS))], minlength=len(EMOTIONS))]

    def load_mel(self, f: h5py.File) -> tuple[np.ndarray, np.ndarray | None]:
        """(mel [M, C, F] float16, valid frames [M] int64, or None for a set drawn before that field)."""
        g = f[self.path(self.name)]
        mel = read_data(g["mel"]).astype(np.float16)
        return mel, read_data(g["frames"]).astype(np.int64) if "frames" in g else None

    def load_speaker(self, f: h5py.File) -> np.ndarray | None:
        """Each segment's ``speaker`` [M] str (the training speaker whose transcript and voice it borrows), or None
        for a set without that column."""
        g = f[self.path(self.name)]
        if "speaker" not in g:
            return None
        with reading(g["speaker"]):
            return g["speaker"].asstr()[()].astype(str)


class SyntheticWriter:
    """The datasets of a ``/synthetic/<name>`` being drawn; rows are written in order and the count
    done is kept in the side file, so an interrupted draw resumes (write_group's ``resumable``)."""

    def __init__(self, group: h5py.Group, n: int, mel: tuple[int, int], cond_dim: int) -> None:
        self.group = group
        self.mel = group.require_dataset("mel", shape=(n, *mel), dtype=np.float16, chunks=(1, *mel), shuffle=True,
                                         compression="gzip", compression_opts=DEFLATE_LEVEL)
        self.cond = group.require_dataset("cond", shape=(n, cond_dim), dtype=np.float32)
        self.frames = group.require_dataset("frames", shape=(n,), dtype=np.int64)

    @property
    def done(self) -> int:
        """Rows written by this or an interrupted earlier draw."""
        return int(self.group.attrs.get("rows_done", 0))

    def write(self, lo: int, mel: np.ndarray, frames: np.ndarray, cond: np.ndarray) -> None:
        """Rows lo .. lo + len(mel): mels [B, C, F] in [-1, 1], valid frames [B], pooled condition [B, D]."""
        hi = lo + len(mel)
        self.mel[lo:hi] = mel.astype(np.float16)
        self.frames[lo:hi] = frames
        self.cond[lo:hi] = cond
        self.group.attrs["rows_done"] = hi
        self.group.file.flush()

    def finish(self, *, emotion: np.ndarray, speaker: Sequence[str], text: Sequence[str],
               source_utterance: Sequence[str], provenance: SyntheticAttrs, voice: np.ndarray | None = None,
               voice_partner: Sequence[str] | None = None, voice_weight: np.ndarray | None = None) -> None:
        """The per-segment labels and the provenance attrs; the set is complete after this. ``voice`` [N, S]
        (coefficients over the training speakers' embeddings), ``voice_partner`` and ``voice_weight`` [N] (a
        mix's second speaker and its weight) are written when given (``--voices mix`` or ``gaussian``)."""
        voices: dict[str, Any] = {"voice": None if voice is None else np.asarray(voice, dtype=np.float32),
                                  "voice_partner": None if voice_partner is None else list(voice_partner),
                                  "voice_weight": None if voice_weight is None else np.asarray(voice_weight,
                                                                                               dtype=np.float32)}
        write_table(self.group, {"emotion": np.asarray(emotion, dtype=np.int8), "speaker": list(speaker),
                                 "text": list(text), "source_utterance": list(source_utterance),
                                 **{k: v for k, v in voices.items() if v is not None}})
        if "rows_done" in self.group.attrs:
            del self.group.attrs["rows_done"]
        self.group.attrs.update(provenance.to_attrs())


@contextlib.contextmanager
def write_synthetic(store: Path, name: str, *, config: Mapping[str, Any], n: int, mel: tuple[int, int],
                    cond_dim: int, overwrite: bool = False, what: str = "") -> Iterator[SyntheticWriter]:
    """Draw ``/synthetic/<name>``: yields a :class:`SyntheticWriter` (resumable with the same ``config``)."""
    with write_group(store, Synthetic.path(name), config=config, overwrite=overwrite, what=what or f"sample {name}",
                     resumable=True) as g:
        yield SyntheticWriter(g, n, mel, cond_dim)


