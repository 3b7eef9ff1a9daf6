"""Paired statistics of two experiments scored on the same (fold, seed) pairs (numpy + scipy.special).

An experiment is compared with a baseline (``real``) through the per-pair differences
d_i = UAR_b(k_i) - UAR_a(k_i) over the keys k_i both were scored on: the mean of d with a
percentile-bootstrap interval (:func:`bootstrap_ci`) and a Wilcoxon signed-rank p-value
(:func:`wilcoxon_signed_rank`). :func:`compare` bundles both into a :class:`PairedComparison`,
which writes the ``paired_*`` attrs of a ``/results`` group (docs/store.md) and the one-line
form used in reports. UARs are fractions in [0, 1]; only :meth:`PairedComparison.text` shows
percentage points.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr

from emodiff.errors import EmodiffError

# UAR differences are fractions of utterance counts, computed in float: 0.5 - 0.4 and 0.4 - 0.3
# differ in the last bit. Rounding |d| to 12 decimals before testing for zeros and ties makes
# such pairs tie, as exact arithmetic would; distinct UAR differences are far more than 1e-12 apart.
_DECIMALS = 12
# 2**25 sign patterns: the exact null distribution is cheap up to here (scipy goes to 50).
_EXACT_MAX_N = 25


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


def paired_differences(uar_by_key_a: Mapping[Hashable, float], uar_by_key_b: Mapping[Hashable, float]) -> np.ndarray:
    """d [N] float64, d_i = b[k_i] - a[k_i] over the shared keys k_1 < ... < k_N (sorted).

    Keys are (fold, seed) pairs such as ``("test=01-04", 0)``. ``a`` is the baseline, so d > 0
    means ``b`` scored higher. The two key sets must be equal and non-empty, and every value
    finite; otherwise :class:`EmodiffError`.
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
    keys = _sorted_keys(keys_a)
    a = np.array([uar_by_key_a[k] for k in keys], dtype=np.float64)
    b = np.array([uar_by_key_b[k] for k in keys], dtype=np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        bad = [k for k, x, y in zip(keys, a, b, strict=True) if not (np.isfinite(x) and np.isfinite(y))]
        raise EmodiffError(f"paired: expected finite UARs, got a non-finite value at [{_brief(bad)}]")
    return b - a


def _diffs(diffs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validate and return d as a 1-D float64 array [N], N >= 1, all finite."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise EmodiffError(f"paired: expected a non-empty 1-D array of differences, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise EmodiffError("paired: expected finite differences, got NaN or inf")
    return d


def bootstrap_ci(diffs: Sequence[float] | np.ndarray, level: float = 0.95, n_boot: int = 10000,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): mean(d) and the percentile-bootstrap interval of the mean at ``level``.

    Resampling, exactly: ``idx = np.random.default_rng(seed).integers(0, N, size=(n_boot, N))``;
    the b-th resampled mean is m_b = (1/N) sum_j d[idx[b, j]] (pairs drawn with replacement).
    Quantiles, exactly: with alpha = 1 - level and m_(0) <= ... <= m_(B-1) the sorted means,
    Q(q) = m_(f) + (h - f) (m_(f+1) - m_(f)) where h = (B - 1) q and f = floor(h)
    (numpy's default "linear" method, Hyndman and Fan type 7); low = Q(alpha / 2),
    high = Q(1 - alpha / 2). The returned mean is the plain mean of d, not of the m_b.
    """
    d = _diffs(diffs)
    if not 0.0 < level < 1.0:
        raise EmodiffError(f"paired: expected a confidence level in (0, 1), got {level}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise EmodiffError(f"paired: expected n_boot to be a positive integer, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(int(n_boot), d.size))
    means = d[idx].mean(axis=1)
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], method="linear")
    return float(d.mean()), float(low), float(high)


class WilcoxonResult(NamedTuple):
    """The two-sided Wilcoxon signed-rank test: statistic = min(W+, W-) and its p-value."""

    statistic: float
    p_value: float


def _average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks [N], tie sizes [G]): rank_i = 1 + #{j : x_j < x_i} + (#{j : x_j = x_i} - 1) / 2."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    sizes = np.diff(np.r_[starts, xs.size])
    # A run of t equal values at sorted positions s..s+t-1 gets the mean rank s + (t + 1) / 2.
    run_rank = starts + (sizes + 1) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, sizes)
    return ranks, sizes


def _signed_rank_counts(n: int) -> np.ndarray:
    """c [n(n+1)/2 + 1] int64: c[w] = #{S subset of {1..n} : sum(S) = w}, the null counts of W+ (of 2^n)."""
    c = np.zeros(n * (n + 1) // 2 + 1, dtype=np.int64)
    c[0] = 1
    for r in range(1, n + 1):
        # Rank r is either in S (shifts every sum by r) or not; r..n(n+1)/2 only.
        c[r:] = c[r:] + c[:-r]  # the sum is a new array, so no aliasing
    return c


def wilcoxon_signed_rank(diffs: Sequence[float] | np.ndarray) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of H0: d is symmetric about 0.

    Zero differences are dropped (Wilcoxon's "wilcox" method; |d| is rounded to 12 decimals first,
    so float roundoff neither makes nor breaks zeros and ties); n = #nonzero. The |d_i| get average
    ranks R_i; W+ = sum_{d_i > 0} R_i, W- = sum_{d_i < 0} R_i, statistic = min(W+, W-).

    - All differences zero (n = 0): statistic 0 and p = 1.0 (no evidence either way).
    - n <= 25 and no ties: the exact null distribution, P(W+ = w) = c[w] / 2^n with c counted by
      dynamic programming over rank sums; p = min(1, 2 min(P(W+ <= W+obs), P(W+ >= W+obs))).
    - Otherwise the normal approximation with tie and continuity corrections:
      mu = n(n+1)/4, sigma^2 = [n(n+1)(2n+1) - sum_g (t_g^3 - t_g) / 2] / 24 over tie groups of
      size t_g, z = (W+ - mu - 0.5 sign(W+ - mu)) / sigma, p = min(1, 2 Phi(-|z|)). As in R's
      ``wilcox.test`` and ``scipy.stats.wilcoxon(correction=True, method="asymptotic")``, the 0.5
      is subtracted even when |W+ - mu| < 0.5.

    Agrees with ``scipy.stats.wilcoxon(d, zero_method="wilcox")`` with ``method="exact"`` on the
    first branch and ``method="asymptotic", correction=True`` on the second.
    """
    d = _diffs(diffs)
    d = np.round(d, _DECIMALS)
    d = d[d != 0.0]
    n = d.size
    if n == 0:
        return WilcoxonResult(0.0, 1.0)
    ranks, ties = _average_ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    w_minus = float(ranks[d < 0].sum())
    statistic = min(w_plus, w_minus)
    if n <= _EXACT_MAX_N and np.all(ties == 1):
        counts = _signed_rank_counts(n)
        w = int(round(w_plus))  # integral: distinct ranks 1..n
        lower = counts[: w + 1].sum()  # #{W+ <= w}
        upper = counts[w:].sum()  # #{W+ >= w}
        p = min(1.0, 2.0 * min(lower, upper) / 2.0**n)
        return WilcoxonResult(statistic, float(p))
    mu = n * (n + 1) / 4.0
    sigma = np.sqrt((n * (n + 1) * (2 * n + 1) - np.sum(ties.astype(np.float64) ** 3 - ties) / 2.0) / 24.0)
    z = (w_plus - mu - 0.5 * np.sign(w_plus - mu)) / sigma
    p = min(1.0, 2.0 * float(ndtr(-abs(z))))
    return WilcoxonResult(statistic, p)


def _signed(x: float, digits: int) -> str:
    """x with an explicit sign and a typographic minus: +2.3, −0.4."""
    return f"{x:+.{digits}f}".replace("-", "\u2212")


def _p_text(p: float) -> str:
    """p to two decimals, three below 0.01, and "< 0.001" below that."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


@dataclass(frozen=True)
class PairedComparison:
    """An experiment against its baseline on the same (fold, seed) pairs; d = experiment - baseline.

    ``mean_diff``, ``ci_low``, ``ci_high`` are UAR fractions (mean(d) and its bootstrap interval
    at ``level``); ``p_value`` is the two-sided Wilcoxon signed-rank p; ``wins`` / ``losses`` /
    ``ties`` count d > 0 / d < 0 / d = 0 (zero as the Wilcoxon test rounds it).
    """

    experiment: str
    baseline: str
    n_pairs: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    wins: int
    losses: int
    ties: int
    level: float = 0.95

    def as_attrs(self, prefix: str = "paired") -> dict[str, float | int | str]:
        """Flat HDF5 attrs ``<prefix>_mean_diff``, ``_ci_low``, ``_ci_high``, ``_level``, ``_p_wilcoxon``,
        ``_n``, ``_wins``, ``_losses``, ``_ties``, ``_baseline`` (UARs as fractions)."""
        values: dict[str, float | int | str] = {
            "mean_diff": float(self.mean_diff),
            "ci_low": float(self.ci_low),
            "ci_high": float(self.ci_high),
            "level": float(self.level),
            "p_wilcoxon": float(self.p_value),
            "n": int(self.n_pairs),
            "wins": int(self.wins),
            "losses": int(self.losses),
            "ties": int(self.ties),
            "baseline": str(self.baseline),
        }
        return {f"{prefix}_{name}": value for name, value in values.items()}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, object], experiment: str,
                   prefix: str = "paired") -> PairedComparison | None:
        """The comparison :meth:`as_attrs` stored in ``attrs``; None when they hold none."""
        if f"{prefix}_mean_diff" not in attrs:
            return None
        a = {k.removeprefix(f"{prefix}_"): v for k, v in attrs.items() if k.startswith(f"{prefix}_")}
        return cls(experiment=experiment, baseline=str(a["baseline"]), n_pairs=int(a["n"]),  # type: ignore[call-overload]
                   mean_diff=float(a["mean_diff"]), ci_low=float(a["ci_low"]),  # type: ignore[arg-type]
                   ci_high=float(a["ci_high"]), p_value=float(a["p_wilcoxon"]),  # type: ignore[arg-type]
                   wins=int(a["wins"]), losses=int(a["losses"]), ties=int(a["ties"]),  # type: ignore[call-overload]
                   level=float(a["level"]))  # type: ignore[arg-type]

    def text(self) -> str:
        """One line, percentage points: "+2.3 pp [−0.4, +5.1], p = 0.12 (n = 18)"; the interval is
        always there, and the level is named when it is not 95 %."""
        level = "" if abs(self.level - 0.95) < 1e-12 else f"{100 * self.level:g} % "
        return (f"{_signed(100 * self.mean_diff, 1)} pp [{level}{_signed(100 * self.ci_low, 1)}, "
                f"{_signed(100 * self.ci_high, 1)}], {_p_text(self.p_value)} (n = {self.n_pairs})")


def compare(a_by_key: Mapping[Hashable, float], b_by_key: Mapping[Hashable, float], *, experiment: str,
            baseline: str = "real", level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> PairedComparison:
    """PairedComparison of experiment ``b`` against baseline ``a``: d = b - a over the shared keys.

    mean_diff, ci_low, ci_high = :func:`bootstrap_ci` (d, level, n_boot, seed); p_value =
    :func:`wilcoxon_signed_rank` (d).p_value. Key sets must match (:func:`paired_differences`).
    """
    d = paired_differences(a_by_key, b_by_key)
    mean, low, high = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
    p = wilcoxon_signed_rank(d).p_value
    rounded = np.round(d, _DECIMALS)
    return PairedComparison(
        experiment=experiment, baseline=baseline, n_pairs=int(d.size), mean_diff=mean, ci_low=low,
        ci_high=high, p_value=p, wins=int(np.sum(rounded > 0)), losses=int(np.sum(rounded < 0)),
        ties=int(np.sum(rounded == 0)), level=level,
    )
