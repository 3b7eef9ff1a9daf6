"""Paired statistics (emodiff.ser.paired) against scipy, brute force and a hand-computed bootstrap."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats

from emodiff.errors import EmodiffError
from emodiff.ser.paired import (
    PairedComparison,
    bootstrap_ci,
    compare,
    paired_differences,
    wilcoxon_signed_rank,
)

# ---------------------------------------------------------------- Wilcoxon against scipy


def _scipy(d: np.ndarray, method: str) -> tuple[float, float]:
    res = scipy.stats.wilcoxon(d, zero_method="wilcox", correction=method == "asymptotic",
                               alternative="two-sided", method=method)
    return float(res.statistic), float(res.pvalue)


@pytest.mark.parametrize("seed", range(60))
def test_exact_matches_scipy_without_ties(seed: int) -> None:
    """Distinct nonzero differences, n = 1..25: the exact null distribution, as scipy's method="exact"."""
    rng = np.random.default_rng(seed)
    n = 1 + seed % 25
    d = rng.normal(0.3 * rng.standard_normal(), 1.0, size=n)
    stat, p = wilcoxon_signed_rank(d)
    ref_stat, ref_p = _scipy(d, "exact")
    assert stat == ref_stat
    assert p == pytest.approx(ref_p, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("seed", range(30))
def test_zeros_are_dropped_before_the_exact_test(seed: int) -> None:
    """Zeros but no ties: n counts the nonzero differences; scipy's exact test does the same."""
    rng = np.random.default_rng(1000 + seed)
    n = 2 + seed % 20
    d = rng.normal(0.5, 1.0, size=n)
    d[rng.choice(n, size=1 + seed % 4 if n > 4 else 1, replace=False)] = 0.0
    stat, p = wilcoxon_signed_rank(d)
    nonzero = d[d != 0]
    assert wilcoxon_signed_rank(nonzero) == (stat, p)
    if nonzero.size:
        ref_stat, ref_p = _scipy(d, "exact")
        assert stat == ref_stat
        assert p == pytest.approx(ref_p, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("seed", range(60))
def test_normal_approximation_matches_scipy_with_ties_and_zeros(seed: int) -> None:
    """Ties (and zeros): the tie- and continuity-corrected normal approximation, as scipy's
    method="asymptotic", correction=True."""
    rng = np.random.default_rng(2000 + seed)
    n = 4 + seed % 40
    d = rng.integers(-4, 6, size=n).astype(np.float64)  # few values: ties and zeros
    d[0] = d[1] = 3.0  # at least one tie
    stat, p = wilcoxon_signed_rank(d)
    ref_stat, ref_p = _scipy(d, "asymptotic")
    assert stat == ref_stat
    assert p == pytest.approx(ref_p, rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("n", [26, 30, 50, 120])
def test_normal_approximation_matches_scipy_above_25(n: int) -> None:
    """n > 25 with distinct values: the normal approximation (no tie term)."""
    d = np.random.default_rng(n).normal(0.2, 1.0, size=n)
    stat, p = wilcoxon_signed_rank(d)
    ref_stat, ref_p = _scipy(d, "asymptotic")
    assert stat == ref_stat
    assert p == pytest.approx(ref_p, rel=1e-10)


def _brute_force_p(d: list[int]) -> Fraction:
    """Exact two-sided p by listing all 2^n sign patterns of the ranks of distinct nonzero |d|."""
    ranks = {v: r for r, v in enumerate(sorted(abs(x) for x in d), start=1)}
    observed = sum(ranks[abs(x)] for x in d if x > 0)
    sums = [sum(r for r, s in zip(ranks.values(), signs, strict=True) if s)
            for signs in itertools.product([0, 1], repeat=len(d))]
    lower = Fraction(sum(w <= observed for w in sums), len(sums))
    upper = Fraction(sum(w >= observed for w in sums), len(sums))
    return min(Fraction(1), 2 * min(lower, upper))


@pytest.mark.parametrize("d", [[1], [-1], [1, 2], [-1, 2], [3, -1, 2], [1, 2, 3, 4, 5, 6],
                               [-7, 1, -2, 5, 3, -9, 4, 8, -6, 10], [5, -3, 9, 1, -8, 2, 7, -4, 6, 11, -12]])
def test_exact_p_equals_brute_force_enumeration(d: list[int]) -> None:
    """The dynamic programme over rank sums against listing every sign pattern (independent of scipy)."""
    assert wilcoxon_signed_rank(d).p_value == pytest.approx(float(_brute_force_p(d)), rel=1e-14)


def test_hand_computed_small_case() -> None:
    """d = [1, -2, 3]: ranks 1, 2, 3; W+ = 4, W- = 2; W+ <= 2 for sets {}, {1}, {2}: p = 2 * 3/8."""
    assert wilcoxon_signed_rank([1.0, -2.0, 3.0]) == (2.0, 0.75)


def test_float_roundoff_ties_like_exact_arithmetic() -> None:
    """0.5 - 0.4 and 0.4 - 0.3 differ in the last bit but are the same UAR difference: they tie."""
    d = np.array([0.5 - 0.4, 0.4 - 0.3, 0.7 - 0.4, -0.2 + 0.0, 0.9 - 0.5])
    assert len(set(np.abs(d).tolist())) == 5  # distinct as floats
    stat, p = wilcoxon_signed_rank(d)
    ref_stat, ref_p = _scipy(np.round(d, 12), "asymptotic")  # tied once rounded
    assert (stat, p) == pytest.approx((ref_stat, ref_p), rel=1e-12)


def test_all_zero_differences_give_p_one() -> None:
    assert wilcoxon_signed_rank([0.0, 0.0, 0.0]) == (0.0, 1.0)
    assert wilcoxon_signed_rank([1e-15, -1e-14]) == (0.0, 1.0)  # zero after rounding


def test_single_pair() -> None:
    """n = 1: W+ is 0 or 1 with probability 1/2 each, so p = 1."""
    assert wilcoxon_signed_rank([0.02]) == (0.0, 1.0)
    assert wilcoxon_signed_rank([-0.02]) == (0.0, 1.0)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")]])
def test_wilcoxon_rejects_bad_input(bad: list) -> None:
    with pytest.raises(EmodiffError):
        wilcoxon_signed_rank(bad)


# ---------------------------------------------------------------- the bootstrap by hand


def _type7(sorted_values: list[Fraction], q: float) -> float:
    """Hyndman-Fan type 7 quantile written out: h = (B - 1) q, f = floor(h), linear between neighbours."""
    h = (len(sorted_values) - 1) * q
    f = math.floor(h)
    if f + 1 >= len(sorted_values):
        return float(sorted_values[-1])
    return float(sorted_values[f]) + (h - f) * float(sorted_values[f + 1] - sorted_values[f])


@pytest.mark.parametrize(("n_boot", "seed", "level"), [(7, 3, 0.95), (5, 0, 0.5), (40, 11, 0.8), (1, 2, 0.95)])
def test_bootstrap_reproduces_the_documented_recipe(n_boot: int, seed: int, level: float) -> None:
    """diffs [1, 2, 4]: the documented draws, means as exact fractions, quantiles by the formula."""
    d = [1, 2, 4]
    idx = np.random.default_rng(seed).integers(0, 3, size=(n_boot, 3))
    means = sorted(Fraction(sum(d[j] for j in row), 3) for row in idx.tolist())
    alpha = 1 - level
    mean, low, high = bootstrap_ci(np.array(d, dtype=float), level=level, n_boot=n_boot, seed=seed)
    assert mean == pytest.approx(7 / 3, abs=1e-15)
    assert low == pytest.approx(_type7(means, alpha / 2), abs=1e-12)
    assert high == pytest.approx(_type7(means, 1 - alpha / 2), abs=1e-12)


def test_bootstrap_golden_by_hand() -> None:
    """diffs [1, 2, 4], seed 3, 7 draws. default_rng(3).integers(0, 3, (7, 3)) gives the rows
    [2,0,0] [0,0,2] [2,1,0] [0,0,1] [1,1,0] [0,2,2] [0,0,1], i.e. sums 6 6 7 4 5 9 4, sorted
    4 4 5 6 6 7 9 -> means 4/3 4/3 5/3 2 2 7/3 3. low: h = 6 * 0.025 = 0.15 -> 4/3 + 0.15 * 0 = 4/3;
    high: h = 6 * 0.975 = 5.85 -> 7/3 + 0.85 * (3 - 7/3) = 2.9."""
    rows = np.random.default_rng(3).integers(0, 3, size=(7, 3)).tolist()
    assert rows == [[2, 0, 0], [0, 0, 2], [2, 1, 0], [0, 0, 1], [1, 1, 0], [0, 2, 2], [0, 0, 1]]
    mean, low, high = bootstrap_ci([1.0, 2.0, 4.0], n_boot=7, seed=3)
    assert (mean, low, high) == pytest.approx((7 / 3, 4 / 3, 2.9), abs=1e-12)


def _exact_resample_quantile(d: list[int], q: float) -> Fraction:
    """The q-quantile (inverse CDF) of the resampled mean, from all N^N equally likely resamples."""
    n = len(d)
    means = sorted(Fraction(sum(row), n) for row in itertools.product(d, repeat=n))
    values = sorted(set(means))
    cdf = {v: Fraction(sum(m <= v for m in means), len(means)) for v in values}
    # The test relies on q lying well inside a step of the CDF, so large B hits that value exactly.
    assert all(abs(float(c) - q) > 0.005 for c in cdf.values())
    return next(v for v in values if cdf[v] >= q)


@pytest.mark.parametrize("level", [0.95, 0.8, 0.5])
def test_bootstrap_converges_to_the_exhaustive_distribution(level: float) -> None:
    """diffs [1, 2, 4] has 27 equally likely resamples (sums 3..12); with 200000 draws the
    percentile interval is the exact distribution's quantiles: 95 % -> [1, 4], 80 % -> [4/3, 10/3],
    50 % -> [5/3, 3]."""
    d = [1, 2, 4]
    alpha = 1 - level
    _, low, high = bootstrap_ci(np.array(d, dtype=float), level=level, n_boot=200_000, seed=5)
    assert low == pytest.approx(float(_exact_resample_quantile(d, alpha / 2)), abs=1e-12)
    assert high == pytest.approx(float(_exact_resample_quantile(d, 1 - alpha / 2)), abs=1e-12)


def test_bootstrap_is_seeded() -> None:
    d = np.random.default_rng(0).normal(size=18)
    assert bootstrap_ci(d, seed=1) == bootstrap_ci(d, seed=1)
    assert bootstrap_ci(d, n_boot=50, seed=1) != bootstrap_ci(d, n_boot=50, seed=2)


def test_bootstrap_edge_cases() -> None:
    assert bootstrap_ci([0.03]) == (0.03, 0.03, 0.03)  # n = 1: every resample is the pair itself
    assert bootstrap_ci([0.0, 0.0, 0.0]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("kwargs", [{"level": 0.0}, {"level": 1.0}, {"level": 95}, {"n_boot": 0},
                                    {"n_boot": 2.5}, {"n_boot": True}])
def test_bootstrap_rejects_bad_options(kwargs: dict) -> None:
    with pytest.raises(EmodiffError):
        bootstrap_ci([1.0, 2.0], **kwargs)


# ---------------------------------------------------------------- pairing and the comparison


def test_paired_differences_are_b_minus_a_in_sorted_key_order() -> None:
    a = {("test=05-08", 1): 0.5, ("test=01-04", 0): 0.4, ("test=01-04", 1): 0.6}
    b = {("test=01-04", 1): 0.55, ("test=05-08", 1): 0.45, ("test=01-04", 0): 0.5}
    np.testing.assert_allclose(paired_differences(a, b), [0.1, -0.05, -0.05], atol=1e-15)


def test_mismatched_keys_raise_one_line() -> None:
    a = {("f1", 0): 0.5, ("f2", 0): 0.6}
    b = {("f1", 0): 0.5, ("f3", 0): 0.6}
    with pytest.raises(EmodiffError) as err:
        paired_differences(a, b)
    message = str(err.value)
    assert "\n" not in message
    assert "('f2', 0)" in message and "('f3', 0)" in message


def test_empty_or_non_finite_pairs_raise() -> None:
    with pytest.raises(EmodiffError, match="at least one"):
        paired_differences({}, {})
    with pytest.raises(EmodiffError, match="finite"):
        paired_differences({"k": 0.5}, {"k": float("nan")})


def test_compare_bundles_the_statistics() -> None:
    rng = np.random.default_rng(7)
    keys = [(f"test={f}", s) for f in ("01-04", "05-08", "09-12", "13-16", "17-20", "21-24") for s in range(3)]
    a = {k: float(rng.uniform(0.4, 0.6)) for k in keys}
    b = {k: a[k] + float(rng.normal(0.02, 0.03)) for k in keys}
    b[keys[0]] = a[keys[0]]  # one tie
    c = compare(a, b, experiment="real+synthetic", n_boot=2000, seed=3)
    d = paired_differences(a, b)
    assert c.n_pairs == 18 and (c.wins, c.losses, c.ties) == (int((d > 0).sum()), int((d < 0).sum()), 1)
    assert (c.mean_diff, c.ci_low, c.ci_high) == bootstrap_ci(d, n_boot=2000, seed=3)
    assert c.p_value == wilcoxon_signed_rank(d).p_value
    assert c.ci_low <= c.mean_diff <= c.ci_high
    assert c.baseline == "real" and c.experiment == "real+synthetic"


def test_compare_all_ties() -> None:
    a = {("f", s): 0.5 for s in range(3)}
    c = compare(a, dict(a), experiment="same")
    assert (c.mean_diff, c.ci_low, c.ci_high, c.p_value, c.ties) == (0.0, 0.0, 0.0, 1.0, 3)
    assert c.text() == "+0.0 pp [+0.0, +0.0], p = 1.00 (n = 3)"


def _example(**kw) -> PairedComparison:
    values = dict(experiment="real+synthetic", baseline="real", n_pairs=18, mean_diff=0.023, ci_low=-0.004,
                  ci_high=0.051, p_value=0.12, wins=11, losses=6, ties=1)
    values.update(kw)
    return PairedComparison(**values)


def test_text_always_shows_the_interval() -> None:
    assert _example().text() == "+2.3 pp [\u22120.4, +5.1], p = 0.12 (n = 18)"
    assert _example(p_value=0.0042).text().endswith("p = 0.004 (n = 18)")
    assert _example(p_value=0.0001).text().endswith("p < 0.001 (n = 18)")
    assert _example(level=0.9).text().startswith("+2.3 pp [90 % \u22120.4, +5.1]")
    assert _example(mean_diff=-0.011, ci_low=-0.03, ci_high=0.008).text().startswith("\u22121.1 pp [\u22123.0, +0.8]")


def test_as_attrs_names_and_types() -> None:
    attrs = _example().as_attrs("paired")
    assert attrs == {
        "paired_mean_diff": 0.023, "paired_ci_low": -0.004, "paired_ci_high": 0.051, "paired_level": 0.95,
        "paired_p_wilcoxon": 0.12, "paired_n": 18, "paired_wins": 11, "paired_losses": 6, "paired_ties": 1,
        "paired_baseline": "real",
    }
    assert all(type(v) in (float, int, str) for v in attrs.values())
    assert set(_example().as_attrs("vs_real")) == {k.replace("paired_", "vs_real_") for k in attrs}


def test_as_attrs_round_trip_through_hdf5(tmp_path) -> None:
    h5py = pytest.importorskip("h5py")
    attrs = _example().as_attrs()
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_group("results/x").attrs.update(attrs)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        back = dict(f["results/x"].attrs)
    assert back == attrs
