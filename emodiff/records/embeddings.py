"""`/embeddings/<corpus>`: the text condition vectors (docs/store.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from emodiff.errors import EmodiffError
from emodiff.records.base import Meta, as_int, as_str, children, file_name, group_at
from emodiff.store import (
    attrs_dict,
    read_data,
)


@dataclass(frozen=True)
class Embeddings:
    """``/embeddings/<model>/<corpus>``: one condition text per utterance, encoded; arrays on demand."""

    model: str  # the group name (store-safe model name)
    corpus: str
    meta: Meta
    attrs: dict[str, Any]
    rows: int  # U
    width: int  # L of tokens [U, L, D]
    source: str = ""  # the `model` attr: the folder or name loaded
    template: str = ""
    pooling: str = ""
    dim: int | None = None
    max_length: int | None = None
    corpus_created: str = ""
    truncated: int = 0

    @staticmethod
    def path(model: str, corpus: str) -> str:
        return f"embeddings/{model}/{corpus}"

    @staticmethod
    def models(f: h5py.File) -> list[str]:
        return children(f, "embeddings")

    @staticmethod
    def names(f: h5py.File, model: str) -> list[str]:
        """The corpora embedded with ``model``."""
        return children(f, f"embeddings/{model}")

    @staticmethod
    def exists(f: h5py.File, model: str, corpus: str) -> bool:
        return group_at(f, Embeddings.path(model, corpus)) is not None

    @classmethod
    def read(cls, f: h5py.File, model: str, corpus: str) -> Embeddings:
        g = group_at(f, cls.path(model, corpus))
        if g is None:
            raise EmodiffError(f"{file_name(f)}: /{cls.path(model, corpus)} is missing; run "
                               f"`emodiff embed --corpus {corpus} --model {model}` first")
        a = attrs_dict(g)
        return cls(model=model, corpus=as_str(a, "corpus") or corpus, meta=Meta.of(g), attrs=a,
                   rows=len(g["pooled"]) if "pooled" in g else 0,
                   width=int(g["tokens"].shape[1]) if "tokens" in g else 0, source=as_str(a, "model"),
                   template=as_str(a, "template"), pooling=as_str(a, "pooling"), dim=as_int(a, "dim"),
                   max_length=as_int(a, "max_length"), corpus_created=as_str(a, "corpus_created"),
                   truncated=as_int(a, "truncated") or 0)

    def _path(self) -> str:
        return self.path(self.model, self.corpus)

    def load_tokens(self, f: h5py.File) -> np.ndarray:
        """[U, L, D] float16, zero past ``lengths``."""
        return read_data(f[self._path()]["tokens"]).astype(np.float16, copy=False)

    def load_lengths(self, f: h5py.File) -> np.ndarray:
        return read_data(f[self._path()]["lengths"])

    def load_pooled(self, f: h5py.File) -> np.ndarray:
        return read_data(f[self._path()]["pooled"])


