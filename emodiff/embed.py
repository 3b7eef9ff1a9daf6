"""``emodiff embed``: each utterance's condition text -> ``/embeddings/<model>/<corpus>``.

One text per row of ``/corpora/<corpus>/utterances``, worded by the template and encoded by
:class:`emodiff.text.TextEncoder`. Texts are encoded longest first in batches of similar
length (little padding, and a batch too large for memory fails at once rather than at the
end) and written back in row order, so row ``i`` of every dataset is utterance ``i``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff import store as st
from emodiff.devices import check_device
from emodiff.errors import EmodiffError
from emodiff.progress import QUIET, Progress
from emodiff.records import Corpus, Embeddings, Same, existing_in, meta, none_prepared, not_prepared, write_embeddings
from emodiff.text import (
    DEFAULT_MODEL,
    DEFAULT_TEMPLATE,
    TextEncoder,
    check_template,
    model_name,
    render_condition,
)


@dataclass(frozen=True)
class EmbedJob:
    """One ``embed`` run: the store and every setting; ``corpus`` None means every prepared corpus in the store."""

    store: Path
    corpus: list[str] | None = None
    model: str = DEFAULT_MODEL
    template: str = DEFAULT_TEMPLATE
    batch_size: int = 64
    device: str = "cpu"
    max_length: int = 128
    overwrite: bool = False

    def __post_init__(self) -> None:
        check_template(self.template)
        check_device(self.device)
        if self.batch_size < 1:
            raise EmodiffError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.max_length < 2:
            raise EmodiffError(f"--max-length must be at least 2 ([CLS] and [SEP]), got {self.max_length}")
        if not str(self.model).strip():
            raise EmodiffError("--model must name a model or a folder, got an empty string")
        if self.corpus is not None:
            if not self.corpus or any(not str(c).strip() for c in self.corpus):
                raise EmodiffError(f"--corpus must name corpora, got {self.corpus!r}")
            if len(set(self.corpus)) != len(self.corpus):
                raise EmodiffError(f"--corpus names a corpus twice: {self.corpus!r}")

    @property
    def model_name(self) -> str:
        """The store-safe name the embeddings are filed under: ``/embeddings/<model_name>``."""
        return model_name(self.model)

    def group_config(self, corpus: str) -> dict[str, Any]:
        """The settings recorded in (and hashed into) the group of ``corpus``."""
        return {"model": self.model_name, "template": self.template, "max_length": self.max_length, "corpus": corpus}


@dataclass
class EmbedResult:
    """What ``embed`` did for one corpus: wrote its group, or found it already there.

    ``stale`` (only when ``already_there``) says the group was made with other settings or from
    an earlier preparation of the corpus: ``--overwrite`` redoes it. ``truncated`` counts texts
    longer than ``max_length`` tokens; ``max_tokens`` is L of ``tokens`` [U, L, D].
    """

    corpus: str
    group: str
    utterances: int
    dim: int
    seconds: float
    already_there: bool
    stale: bool = False
    max_tokens: int = 0
    truncated: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Texts:
    """One corpus to encode: its group and its condition texts, in row order."""

    corpus: str
    group: str
    texts: list[str]
    corpus_created: str


def embed(job: EmbedJob, progress: Progress = QUIET) -> list[EmbedResult]:
    """Embed the condition texts of ``job.corpus`` (default: all prepared corpora) into ``job.store``.

    Corpora whose group exists are skipped (``already_there``) unless ``job.overwrite``. Every
    corpus is checked and its texts rendered before the model is loaded; the model is loaded
    only if some corpus needs it. For each corpus encoded, ``progress`` hears its number of
    texts (a new total per corpus) and the size of each batch done. Raises EmodiffError for a missing
    store or corpus, a bad utterance table, or a model that cannot be loaded; a corpus whose
    write fails leaves the store as it was for that corpus.
    """
    store = Path(job.store)
    results: dict[str, EmbedResult] = {}
    todo: list[_Texts] = []
    with _open(store, job) as f:
        corpora = _corpora(f, store, job)
        for corpus in corpora:
            group = Embeddings.path(job.model_name, corpus)
            if Embeddings.exists(f, job.model_name, corpus) and not job.overwrite:
                results[corpus] = _existing(f, group, corpus, job)
            else:
                todo.append(_read_texts(f, store, corpus, group, job.template))
    if todo:
        encoder = TextEncoder(job.model, device=job.device, max_length=job.max_length)
        for texts in todo:
            results[texts.corpus] = _embed_corpus(store, texts, encoder, job, progress)
    return [results[c] for c in corpora]


@contextlib.contextmanager
def _open(store: Path, job: EmbedJob) -> Iterator[h5py.File]:
    if not store.exists():
        what = job.corpus[0] if job.corpus and len(job.corpus) == 1 else "CORPUS"
        raise EmodiffError(f"{store}: no store there; run `emodiff prepare {what} ROOT` first, or pass --store")
    with st.open_store(store) as f:
        yield f


def _corpora(f: h5py.File, store: Path, job: EmbedJob) -> list[str]:
    """The corpus groups to embed, in the store's spelling; all are checked before any work."""
    prepared = Corpus.names(f)
    if job.corpus is None:
        if not prepared:
            raise none_prepared(store)
        return prepared
    names = []
    for name in job.corpus:
        # Accept the CLI's spellings (MSP_IMPROV, msp-improv) of the store's group names.
        key = name.strip().lower().replace("_", "-")
        match = name if name in prepared else key if key in prepared else None
        if match is None:
            raise not_prepared(store, key, note=f"prepared: {', '.join(prepared) or 'none'}")
        names.append(match)
    return names


def _existing(f: h5py.File, group: str, corpus: str, job: EmbedJob) -> EmbedResult:
    record = Embeddings.read(f, job.model_name, corpus)
    same_config = isinstance(existing_in(f, group, job.group_config(corpus)), Same)
    same_corpus = record.made_from(meta(f, Corpus.path(corpus)))
    return EmbedResult(
        corpus=corpus,
        group=f"/{group}",
        utterances=record.rows,
        dim=record.pooled_dim,
        seconds=0.0,
        already_there=True,
        stale=not (same_config and same_corpus),
        max_tokens=record.width,
        truncated=record.truncated,
        attrs=record.attrs,
    )


def _read_texts(f: h5py.File, store: Path, corpus: str, group: str, template: str) -> _Texts:
    """Read and check the utterance table of ``corpus`` and word one condition text per row."""
    where = f"{store}:/corpora/{corpus}/utterances"
    table = Corpus.utterance_table(f, corpus)
    if table is None:
        raise EmodiffError(f"{where}: missing; run `emodiff prepare {corpus} ROOT --overwrite` to rebuild it")
    missing = [k for k in ("id", "text", "emotion", "speaker", "gender") if k not in table]
    if missing:
        raise EmodiffError(f"{where}: lacks column(s) {', '.join(missing)}; re-run `emodiff prepare {corpus} ROOT`")
    if len(table["id"]) == 0:
        raise EmodiffError(f"{where}: no utterances to embed")
    texts = []
    for i, row_id in enumerate(table["id"]):
        try:
            texts.append(
                render_condition(
                    template,
                    text=str(table["text"][i]),
                    emotion=int(table["emotion"][i]),
                    speaker=str(table["speaker"][i]),
                    gender=str(table["gender"][i]),
                    corpus=corpus,
                )
            )
        except ValueError as err:
            raise EmodiffError(f"{where}: row {i} ({row_id}): {err}") from None
    corpus_meta = meta(f, Corpus.path(corpus))
    return _Texts(corpus, group, texts, corpus_meta.created if corpus_meta else "")


def _embed_corpus(
    store: Path,
    texts: _Texts,
    encoder: TextEncoder,
    job: EmbedJob,
    progress: Progress,
) -> EmbedResult:
    start = time.perf_counter()
    n, dim = len(texts.texts), encoder.dim
    counts = encoder.count_tokens(texts.texts)
    width = int(min(counts.max(), encoder.max_length))  # L: the longest text after truncation
    order = np.argsort(-counts, kind="stable")
    progress.total(n)
    with write_embeddings(store, job.model_name, texts.corpus, config=job.group_config(texts.corpus), rows=n,
                          width=width, dim=dim, overwrite=job.overwrite, what=f"embed {texts.corpus}") as writer:
        pooled = np.zeros((n, dim), np.float32)
        lengths = np.zeros(n, np.int32)
        for lo in range(0, n, job.batch_size):
            rows = np.sort(order[lo : lo + job.batch_size])  # h5py writes rows in increasing order
            p, t, k = encoder.encode([texts.texts[i] for i in rows])
            full = np.zeros((len(rows), width, dim), np.float16)
            full[:, : t.shape[1]] = t
            writer.write(rows, full)
            pooled[rows], lengths[rows] = p, k
            progress.advance(len(rows))
        writer.finish(
            pooled=pooled,
            lengths=lengths,
            texts=texts.texts,
            source=str(encoder.source),
            model_name=encoder.name,
            template=job.template,
            pooling=encoder.pooling,
            dim=dim,
            max_length=encoder.max_length,
            corpus=texts.corpus,
            corpus_created=texts.corpus_created,
            truncated=int(np.sum(counts > encoder.max_length)),
        )
    with st.open_store(store) as f:  # the attrs with the standard ones write_group added on the way in
        attrs = Embeddings.read(f, job.model_name, texts.corpus).attrs
    return EmbedResult(
        corpus=texts.corpus,
        group=f"/{texts.group}",
        utterances=n,
        dim=dim,
        seconds=time.perf_counter() - start,
        already_there=False,
        max_tokens=width,
        truncated=int(attrs["truncated"]),
        attrs=attrs,
    )

