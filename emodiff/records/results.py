"""`/results/<name>`: a classify run, one fold per group (docs/store.md)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.records.base import InSection, Meta, as_float, as_int, as_list, as_str, children, file_name, group_at
from emodiff.store import (
    attrs_dict,
    read_data,
    write_group,
    write_table,
)


@dataclass(frozen=True)
class StoredFold:
    """One fold (per seed) of ``/results/<name>``."""

    name: str
    attrs: dict[str, Any]
    uar: float | None
    wa: float | None
    f1: float | None  # the `macro_f1` attr
    best_epoch: int | None
    val_uar: float | None
    seed: int | None
    synthetic: str
    leaky: bool
    confusion: np.ndarray | None  # [4, 4] counts, rows true, columns predicted
    n_train: int | None = None  # utterances trained and tested on (None when not stored as integers)
    n_test: int | None = None

    @property
    def unit(self) -> str:
        """The fold this group is one seed of: its name without ``@seedN`` (the unit of paired statistics)."""
        return self.name.split("@seed")[0]

    @classmethod
    def of(cls, g: h5py.Group) -> StoredFold:
        a = attrs_dict(g)
        conf = read_data(g["confusion"]).astype(np.int64) if "confusion" in g else None
        if conf is not None and conf.shape != (len(EMOTIONS), len(EMOTIONS)):
            raise ValueError(f"{g.name}/confusion has shape {conf.shape}, expected (4, 4)")
        n_train, n_test = (int(v) if isinstance(v, (int, np.integer)) else None
                           for v in (a.get("n_train"), a.get("n_test")))
        return cls(name=g.name.rsplit("/", 1)[-1], attrs=a, uar=as_float(a, "uar"), wa=as_float(a, "wa"),
                   f1=as_float(a, "macro_f1"), best_epoch=as_int(a, "best_epoch"), val_uar=as_float(a, "val_uar"),
                   seed=as_int(a, "seed"), synthetic=as_str(a, "synthetic"), leaky=bool(a.get("leaky", False)),
                   confusion=conf, n_train=n_train, n_test=n_test)


@dataclass(frozen=True)
class Results(InSection):
    """``/results/<name>``: a classify run's summary attrs and its folds (read defensively; the
    report falls back on the ``config`` for results written before an attr existed)."""

    SECTION = "results"

    name: str
    meta: Meta
    attrs: dict[str, Any]
    folds: tuple[StoredFold, ...]
    corpus: str = ""
    train_corpus: str = ""
    protocol: str = ""
    target_fraction: float | None = None  # NaN (None here) unless adaptation
    train_on: str = ""
    augment: str = ""
    synthetic: str = ""
    leaky: bool = False
    repeats: int | None = None
    seeds: tuple[str, ...] = ()
    split_seed: int | None = None
    fold_scheme: str = ""  # the `folds` attr: the within-corpus protocol asked for (loso, groups:K, ...)
    paired_baseline: str = ""  # the result it was compared with (classify --compare-with), if any

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Results:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{file_name(f)}: no /results/{name}")
        a = attrs_dict(g)
        # A fold is a subgroup holding a confusion matrix or a uar attr (not `predictions`).
        folds = tuple(StoredFold.of(g[k]) for k in children(g, "/")
                      if "confusion" in g[k] or "uar" in g[k].attrs)
        return cls(name=name, meta=Meta.of(g), attrs=a, folds=folds, corpus=as_str(a, "corpus"),
                   train_corpus=as_str(a, "train_corpus"), protocol=as_str(a, "protocol"),
                   target_fraction=as_float(a, "target_fraction"), train_on=as_str(a, "train_on"),
                   augment=as_str(a, "augment"), synthetic=as_str(a, "synthetic"), leaky=bool(a.get("leaky", False)),
                   repeats=as_int(a, "repeats"), seeds=as_list(a, "seeds"), split_seed=as_int(a, "split_seed"),
                   fold_scheme=as_str(a, "folds"), paired_baseline=as_str(a, "paired_baseline"))

    @property
    def paired_attrs(self) -> dict[str, Any]:
        """The ``paired_*`` attrs, as :meth:`~emodiff.ser.paired.PairedComparison.from_attrs` reads them."""
        return {k: v for k, v in self.attrs.items() if k.startswith("paired_")}

    def uar_by_key(self, validation: bool = False) -> dict[tuple[str, int], float]:
        """UAR per (fold, seed): what :func:`emodiff.ser.paired.compare` pairs (a fold without a seed attr: 0);
        with ``validation`` the best validation UAR each run kept its weights for."""
        return {(x.unit, x.seed if x.seed is not None else 0): v for x in self.folds
                if (v := x.val_uar if validation else x.uar) is not None}

    def fold_sizes(self, validation: bool = False) -> dict[str, tuple[int, int]] | None:
        """(n_test, n_train) utterances per fold, the corrected t-test's sizes ((n_val, n_train) with
        ``validation``); None when a fold lacks them."""
        held = "n_val" if validation else "n_test"
        sizes = {x.unit: (as_int(x.attrs, held), as_int(x.attrs, "n_train")) for x in self.folds}
        if any(a is None or b is None for a, b in sizes.values()):
            return None
        return sizes  # type: ignore[return-value]

    def summary(self, metric: str) -> tuple[float | None, float | None]:
        """(``<metric>_mean``, ``<metric>_std``) as stored, for uar, wa or f1."""
        return as_float(self.attrs, f"{metric}_mean"), as_float(self.attrs, f"{metric}_std")


class ResultsWriter:
    """The groups and attrs of a ``/results/<name>`` being run: one :meth:`fold` per (fold, seed) as it
    finishes, then :meth:`finish` with the run's attrs and, with a baseline, :meth:`paired`."""

    def __init__(self, group: h5py.Group) -> None:
        self.group = group

    def fold(self, name: str, *, confusion: np.ndarray, ids: Sequence[str], corpora: Sequence[str],
             speakers: Sequence[str], true: np.ndarray, pred: np.ndarray, log_probs: np.ndarray, uar: float,
             wa: float, macro_f1: float, best_epoch: int, val_uar: float, epochs_run: int, best_step: int,
             steps_run: int, seed: int, synthetic: str, leaky: bool, n_train: int, n_val: int, n_test: int,
             test_speakers: Sequence[str], val_speakers: Sequence[str], l2: float | None = None) -> None:
        """The fold group ``name``: ``confusion`` [4, 4] (rows true), ``predictions/`` (one row per test
        utterance: ``ids``, ``corpora``, ``speakers``, ``true`` and ``pred`` classes, ``log_probs`` [U, 4]) and
        the fold's attrs; the speakers are ``corpus:speaker``, stored as a JSON list. ``l2`` (classifier.kind
        stats: the L2 strength kept) is written only when given."""
        g = self.group.create_group(name)
        g.create_dataset("confusion", data=confusion)
        write_table(g.create_group("predictions"), {
            "id": list(ids), "corpus": list(corpora), "speaker": list(speakers), "true": true.astype(np.int8),
            "pred": pred.astype(np.int8)})
        g.create_dataset("predictions/log_probs", data=log_probs.astype(np.float32))
        g.attrs.update(uar=uar, wa=wa, macro_f1=macro_f1, best_epoch=best_epoch, val_uar=val_uar,
                       epochs_run=epochs_run, best_step=best_step, steps_run=steps_run, seed=seed,
                       synthetic=synthetic, leaky=leaky, n_train=n_train, n_val=n_val, n_test=n_test,
                       test_speakers=json.dumps(list(test_speakers)), val_speakers=json.dumps(list(val_speakers)))
        if l2 is not None:
            g.attrs["l2"] = l2

    def finish(self, *, corpus: str, train_corpus: str, protocol: str, folds: str, target_fraction: float | None,
               train_on: str, augment: str, leaky: bool, repeats: int, seeds: Sequence[int], split_seed: int,
               synthetic: Sequence[str], summary: Mapping[str, float]) -> None:
        """The run's attrs: what it trained and tested on, the seeds, the synthetic sets its folds used and
        ``summary`` (``uar_mean``, ``uar_std``, ``uar_seed_std``, the same for wa and f1); ``target_fraction``
        None is stored as NaN (not adaptation)."""
        self.group.attrs.update(
            corpus=corpus, train_corpus=train_corpus, protocol=protocol, folds=folds,
            target_fraction=target_fraction if target_fraction is not None else math.nan,
            train_on=train_on, augment=augment, leaky=leaky, repeats=repeats,
            seeds=json.dumps(list(seeds)), split_seed=split_seed,
            synthetic=",".join(synthetic), **summary)

    def paired(self, attrs: Mapping[str, Any]) -> None:
        """The comparison with the baseline: the ``paired_*`` attrs of
        :meth:`~emodiff.ser.paired.PairedComparison.as_attrs`."""
        self.group.attrs.update(attrs)


@contextlib.contextmanager
def write_results(store: Path, name: str, *, config: Mapping[str, Any], overwrite: bool = False,
                  what: str = "") -> Iterator[ResultsWriter]:
    """Run ``/results/<name>``: yields a :class:`ResultsWriter`; the group joins the store when the block ends
    (``write_group``: on an exception the store is unchanged)."""
    with write_group(store, Results.path(name), config=config, overwrite=overwrite,
                     what=what or f"classify {name}") as g:
        yield ResultsWriter(g)
