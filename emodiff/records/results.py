"""`/results/<name>`: a classify run, one fold per group (docs/store.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.records.base import InSection, Meta, as_float, as_int, as_list, as_str, children, file_name, group_at
from emodiff.store import (
    attrs_dict,
    read_data,
)


@dataclass(frozen=True)
class Fold:
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

    @property
    def unit(self) -> str:
        """The fold this group is one seed of: its name without ``@seedN`` (the unit of paired statistics)."""
        return self.name.split("@seed")[0]

    @classmethod
    def of(cls, g: h5py.Group) -> Fold:
        a = attrs_dict(g)
        conf = read_data(g["confusion"]).astype(np.int64) if "confusion" in g else None
        if conf is not None and conf.shape != (len(EMOTIONS), len(EMOTIONS)):
            raise ValueError(f"{g.name}/confusion has shape {conf.shape}, expected (4, 4)")
        return cls(name=g.name.rsplit("/", 1)[-1], attrs=a, uar=as_float(a, "uar"), wa=as_float(a, "wa"),
                   f1=as_float(a, "macro_f1"), best_epoch=as_int(a, "best_epoch"), val_uar=as_float(a, "val_uar"),
                   seed=as_int(a, "seed"), synthetic=as_str(a, "synthetic"), leaky=bool(a.get("leaky", False)),
                   confusion=conf)


@dataclass(frozen=True)
class Results(InSection):
    """``/results/<name>``: a classify run's summary attrs and its folds (read defensively; the
    report falls back on the ``config`` for results written before an attr existed)."""

    SECTION = "results"

    name: str
    meta: Meta
    attrs: dict[str, Any]
    folds: tuple[Fold, ...]
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

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Results:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{file_name(f)}: no /results/{name}")
        a = attrs_dict(g)
        # A fold is a subgroup holding a confusion matrix or a uar attr (not `predictions`).
        folds = tuple(Fold.of(g[k]) for k in children(g, "/")
                      if "confusion" in g[k] or "uar" in g[k].attrs)
        return cls(name=name, meta=Meta.of(g), attrs=a, folds=folds, corpus=as_str(a, "corpus"),
                   train_corpus=as_str(a, "train_corpus"), protocol=as_str(a, "protocol"),
                   target_fraction=as_float(a, "target_fraction"), train_on=as_str(a, "train_on"),
                   augment=as_str(a, "augment"), synthetic=as_str(a, "synthetic"), leaky=bool(a.get("leaky", False)),
                   repeats=as_int(a, "repeats"), seeds=as_list(a, "seeds"), split_seed=as_int(a, "split_seed"))

    def uar_by_key(self) -> dict[tuple[str, int], float]:
        """UAR per (fold, seed): what :func:`emodiff.ser.paired.compare` pairs (a fold without a seed attr: 0)."""
        return {(x.unit, x.seed if x.seed is not None else 0): x.uar for x in self.folds if x.uar is not None}

    def fold_sizes(self) -> dict[str, tuple[int, int]] | None:
        """(n_test, n_train) utterances per fold, the corrected t-test's sizes; None when a fold lacks them."""
        sizes = {x.unit: (as_int(x.attrs, "n_test"), as_int(x.attrs, "n_train")) for x in self.folds}
        if any(a is None or b is None for a, b in sizes.values()):
            return None
        return sizes  # type: ignore[return-value]

    def summary(self, metric: str) -> tuple[float | None, float | None]:
        """(``<metric>_mean``, ``<metric>_std``) as stored, for uar, wa or f1."""
        return as_float(self.attrs, f"{metric}_mean"), as_float(self.attrs, f"{metric}_std")


