"""Inference with the fold as the unit (numpy + scipy.stats): the corrected resampled t-test, the
sign-flip permutation test, the percentile bootstrap over folds and Holm's step-down adjustment.

Every test here takes d [J] float64, one difference per fold (J >= 1). The seeds of a fold share
its test speakers, its training data and its generator, so they are averaged within the fold
first (emodiff/ser/paired.py) and never counted as replicates. Folds of repeated partitions
(J = r x k) overlap in their training data, which the plain t-test ignores; the corrected
resampled t-test (Nadeau & Bengio 2003, "Inference for the generalization error"; Bouckaert &
Frank 2004, "Evaluating the replicability of significance tests for comparing learning
algorithms") widens its variance for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import scipy.stats

from emodiff.errors import EmodiffError

# UAR differences are fractions of utterance counts, computed in float: 0.5 - 0.4 and 0.4 - 0.3
# differ in the last bit. Values within 1e-12 are taken as equal (a zero difference, a zero
# spread, a tie in the permutation test), as exact arithmetic would have them; distinct UAR
# differences are far more than 1e-12 apart.
TOL = 1e-12
# 2**20 sign patterns (8 MiB of sums) are enumerated; above, a seeded Monte Carlo draws patterns.
EXACT_MAX_FOLDS = 20
MONTE_CARLO_DRAWS = 100_000
_CHUNK = 10_000  # Monte Carlo patterns drawn at once: [10000, J] signs


def fold_vector(diffs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validate and return d as a 1-D float64 array [J], J >= 1, all finite."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise EmodiffError(f"inference: expected a non-empty 1-D array of fold differences, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise EmodiffError("inference: expected finite fold differences, got NaN or inf")
    return d


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise EmodiffError(f"inference: expected a confidence level in (0, 1), got {level}")


class CorrectedT(NamedTuple):
    """The corrected resampled t-test: mean dbar, statistic t, degrees of freedom, two-sided p and
    the interval [low, high] at the level asked for (NaN where one fold allows no test)."""

    mean: float
    t: float
    df: int
    p: float
    low: float
    high: float


def corrected_t(diffs: Sequence[float] | np.ndarray, test_train_ratio: float, level: float = 0.95) -> CorrectedT:
    """The corrected resampled t-test of H0: E[d] = 0 over J folds, d [J].

    dbar = (1/J) sum_j d_j; s^2 = (1/(J-1)) sum_j (d_j - dbar)^2;
    var = (1/J + n_test/n_train) s^2, where n_test/n_train (``test_train_ratio``, >= 0) is the
    ratio of test to training utterances; t = dbar / sqrt(var), df = J - 1,
    p = 2 P(T_df >= |t|) (Student's t); interval dbar -/+ t_{1-alpha/2, df} sqrt(var),
    alpha = 1 - level. With ratio 0 this is the one-sample t-test of d.

    - J = 1: no spread to test against: t, p, low and high are NaN, df = 0.
    - s^2 = 0 (every d_j within 1e-12 of dbar, so every fold moved by the same amount): the
      limit of the test, t = +/-inf and p = 0 when |dbar| > 1e-12, t = 0 and p = 1 otherwise;
      the interval is the point dbar.
    """
    d = fold_vector(diffs)
    _check_level(level)
    if not (math.isfinite(test_train_ratio) and test_train_ratio >= 0.0):
        raise EmodiffError(f"inference: expected a test/train ratio >= 0, got {test_train_ratio}")
    n = d.size
    mean = float(d.mean())
    if n == 1:
        return CorrectedT(mean, math.nan, 0, math.nan, math.nan, math.nan)
    df = n - 1
    if np.all(np.abs(d - mean) <= TOL):
        if abs(mean) <= TOL:
            return CorrectedT(mean, 0.0, df, 1.0, mean, mean)
        return CorrectedT(mean, math.copysign(math.inf, mean), df, 0.0, mean, mean)
    se = math.sqrt((1.0 / n + test_train_ratio) * float(d.var(ddof=1)))
    t = mean / se
    p = float(2.0 * scipy.stats.t.sf(abs(t), df))
    q = float(scipy.stats.t.ppf(1.0 - (1.0 - level) / 2.0, df))
    return CorrectedT(mean, t, df, p, mean - q * se, mean + q * se)


class SignFlip(NamedTuple):
    """The sign-flip permutation p, how it was found ("exact" or "monte carlo") and the number of
    sign patterns it counts over (2^J, or the Monte Carlo draws)."""

    p: float
    method: Literal["exact", "monte carlo"]
    patterns: int


def sign_flip_p(diffs: Sequence[float] | np.ndarray, draws: int = MONTE_CARLO_DRAWS, seed: int = 0,
                exact_max: int = EXACT_MAX_FOLDS) -> SignFlip:
    """Two-sided sign-flip permutation test of H0: each d_j is symmetric about 0, d [J].

    Under H0 every sign pattern e in {-1, +1}^J is equally likely; the statistic is
    |sum_j e_j d_j| (|mean| times J), observed at e = (1, ..., 1).

    - J <= ``exact_max``: all 2^J patterns; p = #{e : |sum e_j d_j| >= |sum d_j| - 1e-12} / 2^J.
      The observed pattern and its mirror always count, so p >= 2 / 2^J (J = 6: 0.031).
    - Otherwise ``draws`` patterns with independent fair signs from
      ``np.random.default_rng(seed)``; p = (1 + #{drawn e counted as above}) / (1 + draws), which
      counts the observed pattern as one draw and so is never 0.
    """
    d = fold_vector(diffs)
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
        raise EmodiffError(f"inference: expected draws to be a positive integer, got {draws!r}")
    observed = abs(float(d.sum()))
    if d.size <= exact_max:
        sums = np.zeros(1)
        for x in d:  # after step j, sums holds sum_{i <= j} e_i d_i for all 2^j patterns
            sums = np.concatenate([sums + x, sums - x])
        count = int(np.sum(np.abs(sums) >= observed - TOL))
        return SignFlip(count / sums.size, "exact", int(sums.size))
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, int(draws), _CHUNK):
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(min(_CHUNK, int(draws) - start), d.size))
        count += int(np.sum(np.abs(signs @ d) >= observed - TOL))
    return SignFlip((1 + count) / (1 + int(draws)), "monte carlo", int(draws))


def bootstrap_ci(diffs: Sequence[float] | np.ndarray, level: float = 0.95, n_boot: int = 10000,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): mean(d) and the percentile-bootstrap interval of the mean at ``level``.

    Given one d_j per fold (each fold's seed-averaged difference), this resamples folds whole:
    a cluster bootstrap of the (fold, seed) pairs.
    Resampling, exactly: ``idx = np.random.default_rng(seed).integers(0, J, size=(n_boot, J))``;
    the b-th resampled mean is m_b = (1/J) sum_i d[idx[b, i]] (folds drawn with replacement).
    Quantiles, exactly: with alpha = 1 - level and m_(0) <= ... <= m_(B-1) the sorted means,
    Q(q) = m_(f) + (h - f) (m_(f+1) - m_(f)) where h = (B - 1) q and f = floor(h)
    (numpy's default "linear" method, Hyndman and Fan type 7); low = Q(alpha / 2),
    high = Q(1 - alpha / 2). The returned mean is the plain mean of d, not of the m_b.
    """
    d = fold_vector(diffs)
    _check_level(level)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise EmodiffError(f"inference: expected n_boot to be a positive integer, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(int(n_boot), d.size))
    means = d[idx].mean(axis=1)
    alpha = 1.0 - level
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], method="linear")
    return float(d.mean()), float(low), float(high)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values [m], in the order given, for a family of m tests.

    With p_(1) <= ... <= p_(m) sorted ascending, p~_(i) = min(1, max_{k <= i} (m - k + 1) p_(k));
    rejecting where p~ <= alpha keeps the family-wise error rate at alpha. NaN entries (a
    comparison with no test, e.g. one fold) stay NaN and are not counted in m. Every other value
    must lie in [0, 1].
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise EmodiffError(f"holm: expected a 1-D list of p-values, got shape {p.shape}")
    tested = ~np.isnan(p)
    q = p[tested]
    if np.any((q < 0.0) | (q > 1.0)):
        raise EmodiffError(f"holm: expected p-values in [0, 1] (or NaN for no test), got {p.tolist()}")
    order = np.argsort(q, kind="stable")
    steps = (q.size - np.arange(q.size)) * q[order]  # (m - k + 1) p_(k), k = 1..m
    adjusted = np.empty(q.size)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    out = np.full(p.shape, np.nan)
    out[tested] = adjusted
    return out
