"""`/embeddings/<corpus>`: the text condition vectors (docs/store.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff.errors import EmodiffError
from emodiff.records.base import Meta, as_int, as_str, children, file_name, group_at, made_from
from emodiff.store import (
    attrs_dict,
    read_data,
    write_group,
    write_table,
)

# gzip level 1: hidden states barely compress beyond the zero padding, which level 1 already gets.
GZIP_LEVEL = 1


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
    pooled_dim: int = 0  # D of pooled [U, D]

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
                   truncated=as_int(a, "truncated") or 0,
                   pooled_dim=int(g["pooled"].shape[1]) if "pooled" in g else 0)

    def made_from(self, corpus: Meta | None) -> bool:
        """Whether these embeddings were made from the corpus ``corpus`` now in the store (:func:`made_from`)."""
        return made_from(corpus, self.corpus_created, self.meta.created)

    def _path(self) -> str:
        return self.path(self.model, self.corpus)

    def load_tokens(self, f: h5py.File) -> np.ndarray:
        """[U, L, D] float16, zero past ``lengths``."""
        return read_data(f[self._path()]["tokens"]).astype(np.float16, copy=False)

    def load_lengths(self, f: h5py.File) -> np.ndarray:
        return read_data(f[self._path()]["lengths"])

    def load_pooled(self, f: h5py.File) -> np.ndarray:
        return read_data(f[self._path()]["pooled"])


class EmbeddingsWriter:
    """The datasets of an ``/embeddings/<model>/<corpus>`` being encoded: ``tokens`` [U, L, D] float16 (one row
    per chunk, shuffle + gzip) filled batch by batch with :meth:`write`, then the rest with :meth:`finish`."""

    def __init__(self, group: h5py.Group, rows: int, width: int, dim: int) -> None:
        self.group = group
        self.tokens = group.create_dataset(
            "tokens",
            shape=(rows, width, dim),
            dtype=np.float16,
            chunks=(1, width, dim),
            compression="gzip",
            compression_opts=GZIP_LEVEL,
            shuffle=True,
        )

    def write(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        """Token states [B, L, D] of ``rows`` (increasing: h5py writes rows in increasing order), zero past each
        text's length; whole rows, so each chunk is compressed once."""
        self.tokens[rows] = tokens

    def finish(self, *, pooled: np.ndarray, lengths: np.ndarray, texts: Sequence[str], source: str, model_name: str,
               template: str, pooling: str, dim: int, max_length: int, corpus: str, corpus_created: str,
               truncated: int) -> None:
        """``pooled`` [U, D] float32, ``lengths`` [U] int32, the condition ``texts`` and the attrs (``source``, the
        folder or name loaded, is the ``model`` attr); the group is complete after this."""
        self.group.create_dataset("pooled", data=pooled)
        self.group.create_dataset("lengths", data=lengths)
        write_table(self.group, {"text": texts})
        self.group.attrs.update(
            model=source,
            model_name=model_name,
            template=template,
            pooling=pooling,
            dim=dim,
            max_length=max_length,
            corpus=corpus,
            corpus_created=corpus_created,
            truncated=truncated,
        )


@contextlib.contextmanager
def write_embeddings(store: Path, model: str, corpus: str, *, config: Mapping[str, Any], rows: int, width: int,
                     dim: int, overwrite: bool = False, what: str = "") -> Iterator[EmbeddingsWriter]:
    """Encode ``/embeddings/<model>/<corpus>``: yields an :class:`EmbeddingsWriter` for ``rows`` texts of at most
    ``width`` tokens of ``dim`` values; the group joins the store when the block ends (``write_group``)."""
    with write_group(store, Embeddings.path(model, corpus), config=config, overwrite=overwrite,
                     what=what or f"embed {corpus}") as g:
        yield EmbeddingsWriter(g, rows, width, dim)
