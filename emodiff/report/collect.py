"""Read a store into its records for the report, defensively.

Every group is read by its record (emodiff/records/: a missing number becomes ``None``, a missing
string ``""``); a corpus is summarised (:class:`~emodiff.summary.CorpusStats`). A result becomes a
:class:`ResultInfo`, the report's view of it: the record's folds, with the settings that older
results keep only in their config, and its comparison with its baseline. A group that cannot be read
at all (a dataset missing, a bad attr) is left out and named in :attr:`StoreContents.problems`, which
the page shows, rather than stopping the report.
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
from emodiff.records import Comparison, Corpus, Embeddings, Meta, Quality, Results, Run, StoredFold, Synthetic, children
from emodiff.ser.paired import PairedComparison, compare
from emodiff.summary import CorpusStats, corpus_stats

T = TypeVar("T")


@dataclass
class ResultInfo:
    """A ``/results`` record as the report shows it: the settings written before their attrs existed taken from
    its config, mean and std recomputed from the folds when not stored, and its comparison with its baseline
    (set by :func:`pair_results` once every result is read)."""

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
    folds: list[StoredFold]
    classifier: dict[str, Any]  # the config's classifier section
    meta: Meta
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
    corpora: list[CorpusStats] = field(default_factory=list)
    embeddings: list[Embeddings] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    synthetic: list[Synthetic] = field(default_factory=list)
    quality: list[Quality] = field(default_factory=list)
    results: list[ResultInfo] = field(default_factory=list)
    directs: list[DirectInfo] = field(default_factory=list)  # /comparisons: one result against another
    problems: list[str] = field(default_factory=list)  # groups left out, and why

    def corpus(self, name: str) -> CorpusStats | None:
        return next((c for c in self.corpora if c.name == name), None)


def collect(store: Path) -> StoreContents:
    """Everything the report shows, read from ``store`` (EmodiffError if it is missing or not HDF5)."""
    with st.open_store(store) as f:
        out = StoreContents(path=Path(store), root_version=str(f.attrs.get("emodiff_version", "")))
        out.corpora = _each(f, "corpora", out.problems, lambda name: corpus_stats(f[Corpus.path(name)]))
        out.embeddings = [e for model in Embeddings.models(f)
                          for e in _each(f, f"embeddings/{model}", out.problems,
                                         lambda corpus, model=model: Embeddings.read(f, model, corpus))]
        out.runs = _each(f, "runs", out.problems, lambda name: Run.read(f, name))
        out.synthetic = _each(f, "synthetic", out.problems, lambda name: Synthetic.read(f, name))
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


def _quality(q: Quality) -> Quality:
    """``q``, its table's and attrs' views read now (``emotions``, ``numeric``, ``text``, ``summary``), so that a
    group whose table cannot be shown is left out here, as one that cannot be read."""
    _ = q.emotions, q.numeric, q.text, q.summary
    return q


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
    folds = list(r.folds)
    corpus = r.corpus or str(cfg.get("corpus", ""))
    augment = r.augment if "augment" in r.attrs else augment_text(cfg.get("augment"))
    classifier = cfg.get("classifier") if isinstance(cfg.get("classifier"), dict) else {}
    return ResultInfo(
        name=r.name, corpus=corpus, train_corpus=r.train_corpus or str(cfg.get("train_corpus") or corpus),
        protocol=r.protocol or r.fold_scheme or str(cfg.get("protocol") or cfg.get("folds") or ""),
        target_fraction=r.target_fraction, train_on=r.train_on or str(cfg.get("train_on", "")),
        augment=augment, synthetic=r.synthetic, leaky=r.leaky, repeats=max(1, r.repeats or 1),
        uar=metric_of(r.summary("uar"), [f.uar for f in folds]),
        wa=metric_of(r.summary("wa"), [f.wa for f in folds]),
        f1=metric_of(r.summary("f1"), [f.f1 for f in folds]),
        folds=folds, classifier=classifier, meta=r.meta,
        baseline=r.paired_baseline or str(cfg.get("baseline") or ""),
        paired_attrs=r.paired_attrs)
