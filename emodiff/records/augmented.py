"""`/augmented/<corpus>/<kind>`: speed- or noise-perturbed copies (docs/store.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from emodiff.errors import EmodiffError
from emodiff.records.base import Meta, as_int, as_str, children, file_name, group_at, made_from, meta
from emodiff.records.corpus import Corpus
from emodiff.records.segments import SegmentWriter
from emodiff.store import (
    attrs_dict,
    read_data,
)


@dataclass(frozen=True)
class Augmented:
    """``/augmented/<corpus>/<kind>``: offline copies of a corpus's utterances; mels on demand."""

    corpus: str
    kind: str
    meta: Meta
    attrs: dict[str, Any]
    seg_utt: np.ndarray  # [N] int64, row in /corpora/<corpus>/utterances
    seg_frames: np.ndarray  # [N] int64
    seg_param: np.ndarray  # [N] float32, the speed factor or SNR
    params: tuple[float, ...] = ()
    param_unit: str = ""
    seed: int | None = None
    corpus_created: str = ""  # the ``created`` of the /corpora/<corpus> the copies were made from

    @staticmethod
    def path(corpus: str, kind: str) -> str:
        return f"augmented/{corpus}/{kind}"

    @staticmethod
    def names(f: h5py.File, corpus: str) -> list[str]:
        """The kinds made of ``corpus``."""
        return children(f, f"augmented/{corpus}")

    @staticmethod
    def exists(f: h5py.File, corpus: str, kind: str) -> bool:
        return group_at(f, Augmented.path(corpus, kind)) is not None

    @classmethod
    def read(cls, f: h5py.File, corpus: str, kind: str) -> Augmented:
        """The copies, refused (one line naming the fix) when they were made from an earlier preparation of the
        corpus: their ``utt`` rows would index another utterance table, i.e. other labels."""
        g = group_at(f, cls.path(corpus, kind))
        if g is None:
            raise EmodiffError(f"{file_name(f)}: no /{cls.path(corpus, kind)}; run `emodiff augment {kind} "
                               f"--corpus {corpus}` first")
        a = attrs_dict(g)
        s = g["segments"]
        params = a.get("params", ())
        record = cls(corpus=corpus, kind=kind, meta=Meta.of(g), attrs=a,
                     seg_utt=read_data(s["utt"]).astype(np.int64), seg_frames=read_data(s["frames"]).astype(np.int64),
                     seg_param=read_data(s["param"]) if "param" in s else np.zeros(len(s["utt"]), np.float32),
                     params=tuple(float(p) for p in np.atleast_1d(params)), param_unit=as_str(a, "param_unit"),
                     seed=as_int(a, "seed"), corpus_created=as_str(a, "corpus_created"))
        record._check_fresh(f)
        return record

    def _check_fresh(self, f: h5py.File) -> None:
        """The copies must be made from the corpus now in the store (:func:`made_from`), and every copy's utterance row
        must exist."""
        corpus = meta(f, Corpus.path(self.corpus))
        utterances = f[Corpus.path(self.corpus)]["utterances/id"].shape[0] if corpus is not None else 0
        past_the_table = len(self.seg_utt) > 0 and int(self.seg_utt.max()) >= utterances
        if not made_from(corpus, self.corpus_created, self.meta.created) or past_the_table:
            raise EmodiffError(f"{file_name(f)}: /{self.path(self.corpus, self.kind)} was made from an earlier "
                               f"preparation of /corpora/{self.corpus}; make it again with `emodiff augment "
                               f"{self.kind} --corpus {self.corpus} --overwrite`")

    def load_mel(self, f: h5py.File) -> np.ndarray:
        return read_data(f[self.path(self.corpus, self.kind)]["segments/mel"]).astype(np.float16)


def augmented_segments(group: h5py.Group, shape: tuple[int, int], dtype: str | np.dtype) -> SegmentWriter:
    """The ``segments/`` of ``/augmented/<corpus>/<kind>``: a :class:`SegmentWriter` whose extra per-segment column
    is ``param`` (float32, the speed factor or SNR of each copy: ``append(row, mel, frames, param=value)``)."""
    return SegmentWriter(group, shape, dtype, extra={"param": np.float32})


def write_augmented_attrs(group: h5py.Group, *, corpus: str, kind: str, params: Sequence[float], seed: int,
                          param_unit: str, corpus_created: str) -> None:
    """The attrs of ``/augmented/<corpus>/<kind>``, written once its segments are closed."""
    group.attrs.update(corpus=corpus, kind=kind, params=list(params), seed=seed, param_unit=param_unit,
                       corpus_created=corpus_created)
