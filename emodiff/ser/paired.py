"""An experiment against its baseline with the fold as the unit (numpy; the tests: emodiff/ser/inference.py).

Both were scored on the same (fold, seed) keys. A fold's seeds only change the classifier's
initialisation and batch order: its test speakers, its training data and its generator are the
same, so its (fold, seed) pairs are not independent replicates. :func:`fold_differences`
averages them within each fold,

    d_j = (1/S) sum_s [UAR_b(j, s) - UAR_a(j, s)],   j = 1..J,

where every distinct fold name is one unit (J = r x k for r repeated partitions into k folds).
:func:`compare` applies to d [J] the corrected resampled t-test, the sign-flip permutation test
and the percentile bootstrap over folds, and bundles them into a :class:`PairedComparison`,
which writes the ``paired_*`` attrs of a ``/results`` group (docs/store.md) and the one-line
form used in reports. UARs are fractions in [0, 1]; only :meth:`PairedComparison.text` shows
percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from emodiff.errors import EmodiffError
from emodiff.ser.inference import TOL, CorrectedT, SignFlip, bootstrap_ci, corrected_t, sign_flip_p

UNIT = "fold"  # the `paired_unit` attr: what one observation of the tests is


def _sorted_keys(keys: set[Hashable]) -> list[Hashable]:
    """Keys in sorted order (by repr when they do not compare), so the pairs' order is reproducible."""
    try:
        return sorted(keys)  # type: ignore[type-var]
    except TypeError:
        return sorted(keys, key=repr)


def _brief(keys: Sequence[Hashable], limit: int = 3) -> str:
    """At most ``limit`` keys for a one-line message."""
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


class FoldDifferences(NamedTuple):
    """The per-pair differences as a [J, S] table: folds (rows, sorted), seeds (columns, sorted)."""

    folds: tuple[Hashable, ...]
    seeds: tuple[Hashable, ...]
    pairs: np.ndarray  # [J, S] float64: UAR_b(j, s) - UAR_a(j, s)

    @property
    def diffs(self) -> np.ndarray:
        """d [J]: each fold's difference averaged over its seeds, d_j = (1/S) sum_s pairs[j, s]."""
        return self.pairs.mean(axis=1)


def fold_differences(uar_by_key_a: Mapping[Hashable, float],
                     uar_by_key_b: Mapping[Hashable, float]) -> FoldDifferences:
    """b - a per (fold, seed) key, as a [J, S] table whose row means are the fold differences d_j.

    Keys are (fold, seed) pairs such as ``("test=01-04", 0)``. ``a`` is the baseline, so d > 0
    means ``b`` scored higher. The two key sets must be equal and non-empty, every fold must have
    the same seeds, and every value must be finite; otherwise :class:`EmodiffError`.
    """
    keys_a, keys_b = set(uar_by_key_a), set(uar_by_key_b)
    if keys_a != keys_b:
        only_a, only_b = _sorted_keys(keys_a - keys_b), _sorted_keys(keys_b - keys_a)
        raise EmodiffError(
            f"paired: the two experiments were scored on different (fold, seed) pairs; "
            f"only in the baseline: [{_brief(only_a)}]; only in the experiment: [{_brief(only_b)}]"
        )
    if not keys_a:
        raise EmodiffError("paired: expected at least one (fold, seed) pair, got none")
    odd = [k for k in keys_a if not (isinstance(k, tuple) and len(k) == 2)]
    if odd:
        raise EmodiffError(f"paired: expected (fold, seed) pairs as keys, got [{_brief(_sorted_keys(set(odd)))}]")
    folds = _sorted_keys({k[0] for k in keys_a})
    seeds = _sorted_keys({k[1] for k in keys_a})
    if len(folds) * len(seeds) != len(keys_a):
        missing = [(f, s) for f in folds for s in seeds if (f, s) not in keys_a]
        raise EmodiffError(f"paired: expected every fold to have the same seeds {seeds}; "
                           f"missing: [{_brief(missing)}]")
    a = np.array([[uar_by_key_a[(f, s)] for s in seeds] for f in folds], dtype=np.float64)
    b = np.array([[uar_by_key_b[(f, s)] for s in seeds] for f in folds], dtype=np.float64)
    bad = [(f, s) for i, f in enumerate(folds) for j, s in enumerate(seeds)
           if not (np.isfinite(a[i, j]) and np.isfinite(b[i, j]))]
    if bad:
        raise EmodiffError(f"paired: expected finite UARs, got a non-finite value at [{_brief(bad)}]")
    return FoldDifferences(tuple(folds), tuple(seeds), b - a)


def size_ratio(sizes: Mapping[Hashable, tuple[int, int]]) -> float:
    """rho = (1/J) sum_j n_test_j / n_train_j over the folds j -> (n_test_j, n_train_j), in utterances.

    The corrected t-test's variance factor (1/J + rho); both experiments of a comparison share
    the folds, so their sizes are those of either. EmodiffError unless every fold trains on at
    least one utterance and tests on one or more.
    """
    if not sizes:
        raise EmodiffError("paired: expected the test and training sizes of at least one fold, got none")
    bad = [f for f, (n_test, n_train) in sizes.items() if not (n_test >= 1 and n_train >= 1)]
    if bad:
        raise EmodiffError(f"paired: expected at least one test and one training utterance per fold; "
                           f"folds [{_brief(_sorted_keys(set(bad)))}] have none")
    return float(np.mean([n_test / n_train for n_test, n_train in sizes.values()]))


def _signed(x: float, digits: int) -> str:
    """x with an explicit sign and a typographic minus: +2.3, −0.4."""
    return f"{x:+.{digits}f}".replace("-", "\u2212")


def format_p(p: float) -> str:
    """p to two decimals, three below 0.01, "< 0.001" below that, and "—" for NaN (no test)."""
    if math.isnan(p):
        return "\u2014"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _p_is(p: float) -> str:
    """The p as a phrase: "p = 0.34" or "p < 0.001"."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


@dataclass(frozen=True)
class PairedComparison:
    """An experiment against its baseline, the fold as the unit; d_j = experiment - baseline in fold j.

    UARs are fractions. ``corrected`` is the corrected resampled t-test of d [J] with its
    interval at ``level``, ``test_train_ratio`` the n_test/n_train it was corrected with;
    ``permutation`` the sign-flip p; ``bootstrap`` the percentile interval at ``level`` of folds
    resampled whole; ``wins`` / ``losses`` / ``ties`` count folds with d_j > 0 / < 0 / = 0
    (within 1e-12). ``fold_diffs`` holds (fold, d_j) when the comparison was computed from the
    folds, and is empty when it was read from attrs.
    """

    experiment: str
    baseline: str
    n_folds: int
    n_seeds: int
    test_train_ratio: float
    corrected: CorrectedT
    permutation: SignFlip
    bootstrap: tuple[float, float]
    wins: int
    losses: int
    ties: int
    level: float = 0.95
    fold_diffs: tuple[tuple[str, float], ...] = ()

    @property
    def mean_diff(self) -> float:
        """dbar, the mean over folds of the seed-averaged differences (a fraction)."""
        return self.corrected.mean

    def as_attrs(self, prefix: str = "paired") -> dict[str, float | int | str]:
        """Flat HDF5 attrs ``<prefix>_<name>`` (UARs as fractions; docs/store.md lists each):
        ``baseline``, ``unit``, ``n_folds``, ``n_seeds``, ``test_train_ratio``, ``mean_diff``, ``t``,
        ``df``, ``p_t``, ``ci_low``, ``ci_high``, ``level``, ``p_perm``, ``perm_method``,
        ``perm_patterns``, ``boot_low``, ``boot_high``, ``wins``, ``losses``, ``ties``."""
        c, perm = self.corrected, self.permutation
        values: dict[str, float | int | str] = {
            "baseline": str(self.baseline), "unit": UNIT, "n_folds": int(self.n_folds),
            "n_seeds": int(self.n_seeds), "test_train_ratio": float(self.test_train_ratio),
            "mean_diff": float(c.mean), "t": float(c.t), "df": int(c.df), "p_t": float(c.p),
            "ci_low": float(c.low), "ci_high": float(c.high), "level": float(self.level),
            "p_perm": float(perm.p), "perm_method": str(perm.method), "perm_patterns": int(perm.patterns),
            "boot_low": float(self.bootstrap[0]), "boot_high": float(self.bootstrap[1]),
            "wins": int(self.wins), "losses": int(self.losses), "ties": int(self.ties),
        }
        return {f"{prefix}_{name}": value for name, value in values.items()}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object], experiment: str,
                   prefix: str = "paired") -> PairedComparison | None:
        """The comparison :meth:`as_attrs` stored in ``attrs``; None when they hold none.

        Also None for the pair-level comparison stores held before the fold became the unit
        (``<prefix>_mean_diff`` without ``<prefix>_unit``): a p over (fold, seed) pairs is not
        evidence, so it is not read back; the report recomputes it from the folds instead.
        Raises KeyError for a missing attr and ValueError for a unit or permutation method it
        does not know (a malformed group, as the records raise for one).
        """
        if f"{prefix}_unit" not in attrs:
            return None
        a = {k.removeprefix(f"{prefix}_"): v for k, v in attrs.items() if k.startswith(f"{prefix}_")}
        if _text(a["unit"]) != UNIT:
            raise ValueError(f"{prefix}_unit is {_text(a['unit'])!r}, expected {UNIT!r}")
        method = _text(a["perm_method"])
        if method not in ("exact", "monte carlo"):
            raise ValueError(f"{prefix}_perm_method is {method!r}, expected 'exact' or 'monte carlo'")
        num = {k: float(v) for k, v in a.items() if isinstance(v, (int, float, np.number))}  # type: ignore[arg-type]
        return cls(
            experiment=experiment, baseline=_text(a["baseline"]), n_folds=int(num["n_folds"]),
            n_seeds=int(num["n_seeds"]), test_train_ratio=num["test_train_ratio"],
            corrected=CorrectedT(num["mean_diff"], num["t"], int(num["df"]), num["p_t"], num["ci_low"],
                                 num["ci_high"]),
            permutation=SignFlip(num["p_perm"], method, int(num["perm_patterns"])),  # type: ignore[arg-type]
            bootstrap=(num["boot_low"], num["boot_high"]), wins=int(num["wins"]), losses=int(num["losses"]),
            ties=int(num["ties"]), level=num["level"])

    def interval_text(self) -> str:
        """The mean difference and its corrected-t interval in percentage points: "+2.5 pp [−3.4, +8.5]",
        the level named when it is not 95 %; "+2.2 pp (one fold: no interval)" for one fold."""
        mean = f"{_signed(100 * self.mean_diff, 1)} pp"
        if self.n_folds < 2:
            return f"{mean} (one fold: no interval)"
        level = "" if abs(self.level - 0.95) < 1e-12 else f"{100 * self.level:g} % "
        c = self.corrected
        return f"{mean} [{level}{_signed(100 * c.low, 1)}, {_signed(100 * c.high, 1)}]"

    def text(self) -> str:
        """One line, percentage points: "+2.5 pp [−3.4, +8.5] corrected t, p = 0.32, permutation
        p = 0.22 (6 folds × 2 seeds)". The interval is always there (:meth:`interval_text`); a Monte
        Carlo permutation p reads "p ≈"; one fold gets no interval or test."""
        units = (f"({self.n_folds} fold{'s' if self.n_folds != 1 else ''} × {self.n_seeds} "
                 f"seed{'s' if self.n_seeds != 1 else ''})")
        if self.n_folds < 2:
            return f"{_signed(100 * self.mean_diff, 1)} pp, one fold: no interval or test {units}"
        perm = _p_is(self.permutation.p)
        if self.permutation.method == "monte carlo":
            perm = perm.replace("p =", "p \u2248")
        return f"{self.interval_text()} corrected t, {_p_is(self.corrected.p)}, permutation {perm} {units}"


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def compare(a_by_key: Mapping[Hashable, float], b_by_key: Mapping[Hashable, float],
            sizes: Mapping[Hashable, tuple[int, int]], *, experiment: str, baseline: str = "real",
            level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> PairedComparison:
    """PairedComparison of experiment ``b`` against baseline ``a``, the fold as the unit.

    d [J] = :func:`fold_differences` (a, b).diffs, the seeds averaged within each fold;
    ``sizes`` maps each fold to (n_test, n_train) utterances and must name exactly its folds.
    corrected = :func:`~emodiff.ser.inference.corrected_t` (d, :func:`size_ratio` (sizes), level);
    permutation = :func:`~emodiff.ser.inference.sign_flip_p` (d, seed=seed); bootstrap =
    :func:`~emodiff.ser.inference.bootstrap_ci` (d, level, n_boot, seed)[1:], NaN for one fold
    (a resample of one fold is that fold: no interval).
    """
    table = fold_differences(a_by_key, b_by_key)
    if set(sizes) != set(table.folds):
        raise EmodiffError(f"paired: expected the sizes of folds [{_brief(list(table.folds))}], "
                           f"got [{_brief(_sorted_keys(set(sizes)))}]")
    d = table.diffs
    ratio = size_ratio(sizes)
    test = corrected_t(d, ratio, level=level)
    boot = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)[1:] if d.size > 1 else (math.nan, math.nan)
    return PairedComparison(
        experiment=experiment, baseline=baseline, n_folds=int(d.size), n_seeds=len(table.seeds),
        test_train_ratio=ratio, corrected=test, permutation=sign_flip_p(d, seed=seed),
        bootstrap=boot, wins=int(np.sum(d > TOL)), losses=int(np.sum(d < -TOL)),
        ties=int(np.sum(np.abs(d) <= TOL)), level=level,
        fold_diffs=tuple((str(f), float(x)) for f, x in zip(table.folds, d, strict=True)),
    )
