"""Read a store into plain dataclasses for the report, defensively.

Every attr may be missing in a partial or older store: a missing number becomes ``None``, a
missing string ``""``. A group that cannot be read at all (a dataset missing, a bad attr) is left
out and named in :attr:`StoreContents.problems`, which the page shows, rather than stopping the
report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from emodiff import store as st
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment
from emodiff.records import Comparison, Corpus, Embeddings, Fold, Meta, Quality, Results, Run, Synthetic, children
from emodiff.ser.paired import PairedComparison, compare
from emodiff.summary import CorpusStats, corpus_stats

T = TypeVar("T")

GroupMeta = Meta  # the standard attrs every group carries (docs/store.md), as written


@dataclass
class CorpusInfo:
    stats: CorpusStats
    meta: GroupMeta


@dataclass
class EmbeddingInfo:
    model: str
    corpus: str
    utterances: int
    dim: int | None
    template: str
    meta: GroupMeta


@dataclass
class RunInfo:
    name: str
    step: int | None
    checkpoint: str
    sha256: str
    corpora: list[str]
    training_speakers: list[str]
    final: dict[str, float]  # final_<metric> attrs without the prefix, e.g. {"loss": 0.12}
    meta: GroupMeta


@dataclass
class SyntheticInfo:
    name: str
    n: int
    per_emotion: list[int]  # segments per emotion, EMOTIONS order
    frames: int
    generator: str  # the family that drew it
    drawn_with: str  # how, in the family's words (sampler, steps, guidance, ...)
    seed: int | None
    run: str
    checkpoint: str
    sha256: str
    training_speakers: list[str]  # corpus:speaker
    meta: GroupMeta

    @property
    def corpora(self) -> list[str]:
        """The corpora the generator was trained on, in first-seen order."""
        return list(dict.fromkeys(s.partition(":")[0] for s in self.training_speakers if ":" in s))


@dataclass
class QualityInfo:
    """``/quality/<set>``: one row per emotion, whatever columns its table holds."""

    name: str
    corpus: str
    classifier: str  # JSON of the yardstick classifier's settings, as stored
    rows: list[str]  # the `emotion` column
    columns: dict[str, np.ndarray]  # numeric columns
    text_columns: dict[str, list[str]]  # other str columns with something in them (e.g. `note`)
    summary: dict[str, float]  # numeric group attrs (set-level values such as mad_mean)
    meta: GroupMeta


@dataclass
class FoldInfo:
    name: str
    uar: float | None
    wa: float | None
    f1: float | None
    best_epoch: int | None
    seed: int | None
    confusion: np.ndarray | None  # [4, 4] counts, rows true, columns predicted
    n_train: int | None = None  # utterances trained and tested on (the fold's `n_train`, `n_test` attrs)
    n_test: int | None = None

    @property
    def unit(self) -> str:
        """The fold without its seed: the name before ``@seedN``, which every seed of the fold shares."""
        return self.name.split("@seed")[0]


@dataclass
class ResultInfo:
    name: str
    corpus: str  # the test corpus
    train_corpus: str
    protocol: str  # loso | session | groups:K | groups:KxR | cross-corpus | adaptation | as stored
    target_fraction: float | None
    train_on: str
    augment: str  # "synthetic+mixup:0.2"-style, "" for none
    synthetic: str
    leaky: bool
    repeats: int
    uar: tuple[float, float] | None  # (mean, std) as stored
    wa: tuple[float, float] | None  # stored, else from the folds (see metric_of)
    f1: tuple[float, float] | None
    folds: list[FoldInfo]
    classifier: dict[str, Any]  # the config's classifier section
    meta: GroupMeta
    baseline: str = ""  # the result it is compared with (`paired_baseline`, else the config's `baseline`)
    paired_attrs: dict[str, Any] = field(default_factory=dict)  # the `paired_*` attrs as stored
    paired: PairedComparison | None = None  # against `baseline`, the fold as the unit (see pair_results)

    @property
    def confusion(self) -> np.ndarray | None:
        """Confusion counts summed over folds and repeats."""
        mats = [f.confusion for f in self.folds if f.confusion is not None]
        return np.sum(mats, axis=0) if mats else None

    @property
    def folds_per_repeat(self) -> int:
        return len(self.folds) // self.repeats if self.repeats > 0 else len(self.folds)


@dataclass
class DirectInfo:
    """``/comparisons/<name>``: ``experiment`` against ``baseline`` and the comparison, recomputed from their
    folds when both results are in the store, else as stored (None when neither can be had)."""

    name: str
    experiment: str
    baseline: str
    paired: PairedComparison | None


def direct_comparison(c: Comparison, results: dict[str, ResultInfo], problems: list[str]) -> DirectInfo:
    """``c`` with its comparison from the two results' per-(fold, seed) UARs, as :func:`pair_results` does for
    a result's baseline; a comparison that cannot be had is named in ``problems``."""
    a, b = results.get(c.baseline), results.get(c.experiment)
    if a is not None and b is not None:
        paired = from_folds(a, b)
        if isinstance(paired, PairedComparison):
            return DirectInfo(c.name, c.experiment, c.baseline, paired)
        problems.append(f"/comparisons/{c.name}: could not be computed from the folds ({paired}); the stored "
                        "attrs are shown")
    try:
        stored = PairedComparison.from_attrs(c.paired_attrs, c.experiment)
    except (KeyError, ValueError, TypeError) as err:
        problems.append(f"/comparisons/{c.name}: its paired_* attrs could not be read ({type(err).__name__}: {err}); "
                        "not shown")
        stored = None
    return DirectInfo(c.name, c.experiment, c.baseline, stored)


@dataclass
class StoreContents:
    path: Path
    root_version: str
    corpora: list[CorpusInfo] = field(default_factory=list)
    embeddings: list[EmbeddingInfo] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)
    synthetic: list[SyntheticInfo] = field(default_factory=list)
    quality: list[QualityInfo] = field(default_factory=list)
    results: list[ResultInfo] = field(default_factory=list)
    directs: list[DirectInfo] = field(default_factory=list)  # /comparisons: one result against another
    problems: list[str] = field(default_factory=list)  # groups left out, and why

    def corpus(self, name: str) -> CorpusInfo | None:
        return next((c for c in self.corpora if c.stats.name == name), None)


def collect(store: Path) -> StoreContents:
    """Everything the report shows, read from ``store`` (EmodiffError if it is missing or not HDF5)."""
    with st.open_store(store) as f:
        out = StoreContents(path=Path(store), root_version=str(f.attrs.get("emodiff_version", "")))
        out.corpora = _each(f, "corpora", out.problems, lambda name: _corpus(f[Corpus.path(name)]))
        out.embeddings = [e for model in Embeddings.models(f)
                          for e in _each(f, f"embeddings/{model}", out.problems,
                                         lambda corpus, model=model: _embedding(Embeddings.read(f, model, corpus)))]
        out.runs = _each(f, "runs", out.problems, lambda name: _run(Run.read(f, name)))
        out.synthetic = _each(f, "synthetic", out.problems, lambda name: _synthetic(Synthetic.read(f, name)))
        out.quality = _each(f, "quality", out.problems, lambda name: _quality(Quality.read(f, name)))
        out.results = _each(f, "results", out.problems, lambda name: _result(Results.read(f, name)))
        stored = _each(f, "comparisons", out.problems, lambda name: Comparison.read(f, name))
    pair_results(out.results, out.problems)
    by_name = {r.name: r for r in out.results}
    out.directs = [direct_comparison(c, by_name, out.problems) for c in stored]
    return out


def _each(f: h5py.File, section: str, problems: list[str], read: Callable[[str], T]) -> list[T]:
    """``read(name)`` of every group in ``section``; one that cannot be read is named in ``problems``."""
    out = []
    for name in children(f, section):
        try:
            out.append(read(name))
        except (KeyError, ValueError, TypeError, IndexError, OSError) as err:
            problems.append(f"/{section}/{name} could not be read ({type(err).__name__}: {err}); left out")
        except EmodiffError as err:  # a dataset in a damaged file (emodiff.store.read_data): names itself
            problems.append(f"/{section}/{name} left out: {err}")
    return out


def _corpus(g: h5py.Group) -> CorpusInfo:
    return CorpusInfo(corpus_stats(g), Meta.of(g))


def _str(a: dict[str, Any], key: str) -> str:
    v = a.get(key)
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def _embedding(e: Embeddings) -> EmbeddingInfo:
    return EmbeddingInfo(model=e.model, corpus=e.corpus, utterances=e.rows, dim=e.dim, template=e.template,
                         meta=e.meta)


def _run(r: Run) -> RunInfo:
    return RunInfo(name=r.name, step=r.step, checkpoint=r.checkpoint, sha256=r.sha256, corpora=list(r.corpora),
                   training_speakers=list(r.training_speakers), final=r.final, meta=r.meta)


def _synthetic(s: Synthetic) -> SyntheticInfo:
    p = s.provenance
    return SyntheticInfo(
        name=s.name, n=len(s.emotion), per_emotion=s.per_emotion, frames=int(s.mel_shape[-1]) if s.mel_shape else 0,
        generator=p.generator, drawn_with=p.drawn_with, seed=p.seed, run=p.run, checkpoint=p.checkpoint,
        sha256=p.checkpoint_sha256, training_speakers=list(p.training_speakers), meta=s.meta)


_STANDARD_ATTRS = {"seed", "config_hash", "created", "emodiff_version", "config"}


def _quality(q: Quality) -> QualityInfo:
    table = dict(q.table)
    rows = [str(r) for r in table.pop("emotion")]
    numeric = {k: v for k, v in table.items() if v.dtype.kind in "iuf" and v.ndim == 1}
    text = {k: [str(x) for x in v] for k, v in table.items() if k not in numeric and any(str(x) for x in v)}
    summary = {k: float(v) for k, v in q.attrs.items()
               if k not in _STANDARD_ATTRS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return QualityInfo(name=q.name, corpus=q.corpus, classifier=q.classifier, rows=rows, columns=numeric,
                       text_columns=text, summary=summary, meta=q.meta)


def _fold(x: Fold) -> FoldInfo:
    sizes = [x.attrs.get(k) for k in ("n_train", "n_test")]
    n_train, n_test = (int(v) if isinstance(v, (int, np.integer)) else None for v in sizes)
    return FoldInfo(name=x.name, uar=x.uar, wa=x.wa, f1=x.f1, best_epoch=x.best_epoch, seed=x.seed,
                    confusion=x.confusion, n_train=n_train, n_test=n_test)


def uar_by_key(r: ResultInfo) -> dict[tuple[str, int], float]:
    """UAR per (fold, seed) of ``r``: the fold's name without ``@seedN``, and its ``seed`` attr (else 0)."""
    return {(f.unit, f.seed if f.seed is not None else 0): f.uar for f in r.folds if f.uar is not None}


def from_folds(base: ResultInfo, r: ResultInfo) -> PairedComparison | str:
    """``r`` against ``base`` from their per-(fold, seed) UARs and ``r``'s fold sizes, with the settings
    classify uses; else why it cannot be computed."""
    sizes = {f.unit: (f.n_test, f.n_train) for f in r.folds}
    if not all(n_test is not None and n_train is not None for n_test, n_train in sizes.values()):
        return "its folds lack the n_test and n_train attrs"
    try:
        return compare(uar_by_key(base), uar_by_key(r), sizes,  # type: ignore[arg-type]
                       experiment=r.name, baseline=base.name)
    except EmodiffError as err:
        return str(err)


def pair_results(results: list[ResultInfo], problems: list[str]) -> None:
    """Set each result's ``paired`` comparison with its ``baseline``, the fold as the unit.

    When the baseline is in the store, the comparison is recomputed from the two results'
    per-(fold, seed) UARs and the folds' ``n_test``/``n_train`` (emodiff.ser.paired.compare, with
    the settings classify uses), so a store written before the fold was the unit gets fold-level
    statistics too. Otherwise the ``paired_*`` attrs are read as stored; a pair-level comparison
    of an older store is then not shown, and ``problems`` says why.
    """
    by_name = {r.name: r for r in results}
    for r in results:
        if not r.baseline:
            continue
        base = by_name.get(r.baseline)
        if base is not None:
            paired = from_folds(base, r)
            if isinstance(paired, PairedComparison):
                r.paired = paired
                continue
            why = paired
            problems.append(f"/results/{r.name}: its comparison with /results/{base.name} could not be computed "
                            f"from the folds ({why}); the stored paired_* attrs are shown, if any")
        try:
            r.paired = PairedComparison.from_attrs(r.paired_attrs, r.name)
        except (KeyError, ValueError, TypeError) as err:
            problems.append(f"/results/{r.name}: its paired_* attrs could not be read ({type(err).__name__}: "
                            f"{err}); no comparison shown")
            continue
        if r.paired is None and base is None and "paired_mean_diff" in r.paired_attrs:
            problems.append(f"/results/{r.name}: holds a comparison over (fold, seed) pairs from before the fold "
                            f"was the unit, and its baseline /results/{r.baseline} is not in the store to recompute "
                            "it from; not shown")


def augment_text(value: object) -> str:
    """The ``augment`` attr as text; older results keep it only as the config's dict."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return ""
    try:
        return Augment.from_config(value).label()
    except (EmodiffError, TypeError, ValueError):  # not one emodiff wrote: shown as stored
        return json.dumps(value, sort_keys=True)


def metric_of(stored: tuple[float | None, float | None], per_fold: list[float | None]) -> tuple[float, float] | None:
    """(mean, std): the stored pair when there is one, else mean and sample std (ddof 1) of the folds."""
    if stored[0] is not None:
        return stored[0], stored[1] if stored[1] is not None else 0.0
    values = [v for v in per_fold if v is not None]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _result(r: Results) -> ResultInfo:
    cfg = r.meta.config
    folds = [_fold(x) for x in r.folds]
    corpus = r.corpus or str(cfg.get("corpus", ""))
    augment = r.augment if "augment" in r.attrs else augment_text(cfg.get("augment"))
    classifier = cfg.get("classifier") if isinstance(cfg.get("classifier"), dict) else {}
    return ResultInfo(
        name=r.name, corpus=corpus, train_corpus=r.train_corpus or str(cfg.get("train_corpus") or corpus),
        protocol=r.protocol or _str(r.attrs, "folds") or str(cfg.get("protocol") or cfg.get("folds") or ""),
        target_fraction=r.target_fraction, train_on=r.train_on or str(cfg.get("train_on", "")),
        augment=augment, synthetic=r.synthetic, leaky=r.leaky, repeats=max(1, r.repeats or 1),
        uar=metric_of(r.summary("uar"), [f.uar for f in folds]),
        wa=metric_of(r.summary("wa"), [f.wa for f in folds]),
        f1=metric_of(r.summary("f1"), [f.f1 for f in folds]),
        folds=folds, classifier=classifier, meta=r.meta,
        baseline=_str(r.attrs, "paired_baseline") or str(cfg.get("baseline") or ""),
        paired_attrs={k: v for k, v in r.attrs.items() if k.startswith("paired_")})
