"""Fold-level inference (emodiff.ser.inference, emodiff.ser.paired) against hand computations, scipy and
brute-force enumeration."""

from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats

from emodiff.errors import EmodiffError
from emodiff.ser.inference import CorrectedT, SignFlip, bootstrap_ci, corrected_t, holm, sign_flip_p
from emodiff.ser.paired import PairedComparison, compare, fold_differences, size_ratio

# ---------------------------------------------------------------- the corrected resampled t-test


def test_corrected_t_by_hand() -> None:
    """d = [1, 3, 2, 6] (pp), ratio 1/4: dbar = 3, s^2 = (4 + 0 + 1 + 9) / 3 = 14/3,
    var = (1/4 + 1/4) 14/3 = 7/3, t = 3 / sqrt(7/3) = 3 sqrt(3/7), df = 3. Student's t with 3 df
    has P(|T| >= t) = 1 - (2/pi) [x / (1 + x^2) + atan x] with x = t / sqrt(3) = 3 / sqrt(7);
    t_{0.975, 3} = 3.182446305284263."""
    res = corrected_t([1.0, 3.0, 2.0, 6.0], test_train_ratio=0.25)
    x = 3 / math.sqrt(7)
    p = 1 - (2 / math.pi) * (x / (1 + x * x) + math.atan(x))
    half = 3.182446305284263 * math.sqrt(7 / 3)
    assert res.df == 3 and res.mean == 3.0
    assert res.t == pytest.approx(3 * math.sqrt(3 / 7), rel=1e-14)
    assert res.p == pytest.approx(p, rel=1e-12)
    assert (res.low, res.high) == pytest.approx((3 - half, 3 + half), rel=1e-12)
    assert round(res.p, 4) == 0.1443 and round(half, 3) == 4.861


@pytest.mark.parametrize("seed", range(20))
def test_corrected_t_is_scipys_t_test_with_the_variance_factor(seed: int) -> None:
    """scipy's paired t over the fold means, its t scaled by sqrt(1/J) / sqrt(1/J + ratio), p and the
    interval recomputed from Student's t: the correction applied independently of our code."""
    rng = np.random.default_rng(seed)
    folds = 2 + seed % 11
    ratio = [0.0, 0.2, 0.25, 1 / 3, 1.5][seed % 5]
    level = [0.95, 0.9, 0.99][seed % 3]
    base = rng.uniform(0.4, 0.6, size=folds)
    exp = base + rng.normal(0.02, 0.03, size=folds)
    res = corrected_t(exp - base, ratio, level=level)
    plain = scipy.stats.ttest_rel(exp, base)
    assert plain.statistic == pytest.approx(scipy.stats.ttest_1samp(exp - base, 0.0).statistic, rel=1e-10)
    t = plain.statistic * math.sqrt(1 / folds) / math.sqrt(1 / folds + ratio)
    se = scipy.stats.sem(exp - base) * math.sqrt(1 + folds * ratio)
    low, high = scipy.stats.t.interval(level, folds - 1, loc=np.mean(exp - base), scale=se)
    assert res.df == folds - 1
    assert res.t == pytest.approx(t, rel=1e-10)
    assert res.p == pytest.approx(2 * scipy.stats.t.sf(abs(t), folds - 1), rel=1e-9)
    assert (res.low, res.high) == pytest.approx((low, high), rel=1e-10, abs=1e-14)
    if ratio == 0.0:  # no correction: scipy's own test
        assert res.p == pytest.approx(plain.pvalue, rel=1e-9)


def test_the_correction_widens_the_interval_and_raises_p() -> None:
    d = [0.01, 0.04, 0.02, 0.05, 0.03, 0.06]
    plain, corrected = corrected_t(d, 0.0), corrected_t(d, 0.25)
    assert corrected.high - corrected.low > plain.high - plain.low and corrected.p > plain.p


def test_one_fold_allows_no_test() -> None:
    res = corrected_t([0.02], 0.25)
    assert res.mean == 0.02 and res.df == 0
    assert all(math.isnan(x) for x in (res.t, res.p, res.low, res.high))


def test_zero_spread_is_the_limit_of_the_test() -> None:
    """Every fold moved by the same amount: t = +/-inf, p = 0, the interval the point; no difference: p = 1.
    Roundoff (0.5 - 0.4 vs 0.4 - 0.3) is no spread."""
    up = corrected_t([0.5 - 0.4, 0.4 - 0.3, 0.7 - 0.6], 0.25)
    assert up.t == math.inf and up.p == 0.0 and up.low == up.high == up.mean
    down = corrected_t([-0.02, -0.02], 0.25)
    assert down.t == -math.inf and down.p == 0.0
    assert corrected_t([0.0, 0.0, 0.0], 0.25) == CorrectedT(0.0, 0.0, 2, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("kwargs", [{"test_train_ratio": -0.1}, {"test_train_ratio": math.nan},
                                    {"test_train_ratio": 0.2, "level": 1.0}])
def test_corrected_t_rejects_bad_options(kwargs: dict) -> None:
    with pytest.raises(EmodiffError):
        corrected_t([0.01, 0.02], **kwargs)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")]])
def test_fold_tests_reject_bad_input(bad: list) -> None:
    for test in (lambda d: corrected_t(d, 0.2), sign_flip_p, bootstrap_ci):
        with pytest.raises(EmodiffError):
            test(bad)


# ---------------------------------------------------------------- the sign-flip permutation test


def _brute_force_sign_flip(d: list[Fraction]) -> Fraction:
    """#{sign patterns with |sum| >= |observed sum|} / 2^J, listing the patterns with exact fractions."""
    observed = abs(sum(d))
    patterns = list(itertools.product([1, -1], repeat=len(d)))
    return Fraction(sum(abs(sum(e * x for e, x in zip(signs, d, strict=True))) >= observed for signs in patterns),
                    len(patterns))


@pytest.mark.parametrize("d", [["1"], ["-2"], ["1", "2"], ["3", "-1", "2"], ["1", "2", "3", "4", "5", "6"],
                               ["-7", "1", "-2", "5", "3", "-9", "4", "8", "-6", "10"],
                               ["2", "2", "-2", "2", "0", "4", "-4"],  # ties and a zero
                               ["0.022", "-0.013", "0.051", "0.004", "0.017", "-0.008"]])
def test_sign_flip_p_equals_brute_force_enumeration(d: list[str]) -> None:
    exact = [Fraction(x) for x in d]
    res = sign_flip_p([float(x) for x in exact])
    assert res.method == "exact" and res.patterns == 2 ** len(d)
    assert res.p == pytest.approx(float(_brute_force_sign_flip(exact)), rel=1e-15)


def test_sign_flip_ties_like_exact_arithmetic() -> None:
    """|0.1 + 0.2 - 0.3| is not 0 in float, nor 0.5 - 0.4 equal to 0.4 - 0.3: the tolerance makes them tie."""
    d = [0.5 - 0.4, -(0.4 - 0.3), 0.3, 0.2]
    exact = [Fraction(1, 10), Fraction(-1, 10), Fraction(3, 10), Fraction(2, 10)]
    assert sign_flip_p(d).p == pytest.approx(float(_brute_force_sign_flip(exact)), rel=1e-15)


def test_six_folds_all_better_give_the_smallest_p() -> None:
    """J = 6, every fold better: only the observed pattern and its mirror reach |sum|: p = 2/64."""
    assert sign_flip_p([0.01, 0.03, 0.02, 0.05, 0.04, 0.06]) == SignFlip(2 / 64, "exact", 64)


def test_sign_flip_monte_carlo_above_the_cap() -> None:
    """Above exact_max, seeded draws: reproducible, never 0, and near the exact p."""
    d = np.random.default_rng(4).normal(0.01, 0.02, size=10)
    exact = sign_flip_p(d).p
    mc = sign_flip_p(d, draws=40_000, seed=1, exact_max=5)
    assert mc.method == "monte carlo" and mc.patterns == 40_000
    assert mc == sign_flip_p(d, draws=40_000, seed=1, exact_max=5)
    assert abs(mc.p - exact) < 4 * math.sqrt(exact * (1 - exact) / 40_000) + 1e-4
    assert sign_flip_p(np.full(30, 0.01), draws=1000).p == pytest.approx(1 / 1001, rel=1e-12)  # 2^-30 per draw


# ---------------------------------------------------------------- Holm


def test_holm_worked_example() -> None:
    """Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.06 for the
    last; back in the order given."""
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-14)


def test_holm_caps_at_one_skips_nan_and_keeps_one_test() -> None:
    np.testing.assert_allclose(holm([0.5, 0.4, 0.6]), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(holm([0.02, math.nan, 0.01]), [0.02, math.nan, 0.02])  # m = 2, not 3
    assert holm([0.03]).tolist() == [0.03] and holm([]).size == 0


@pytest.mark.parametrize("bad", [[1.2], [-0.1, 0.5], [[0.1, 0.2]]])
def test_holm_rejects_what_is_not_a_p(bad: list) -> None:
    with pytest.raises(EmodiffError):
        holm(bad)


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


# ---------------------------------------------------------------- folds, seeds and the comparison

SIZES6 = {f"group={j}": (4, 16) for j in range(6)}  # 24 actors in 6 groups: test 4, train 16 (val 4)


def test_fold_differences_average_the_seeds_within_each_fold() -> None:
    a = {("test=05-08", 1): 0.5, ("test=01-04", 0): 0.4, ("test=01-04", 1): 0.6, ("test=05-08", 0): 0.3}
    b = {("test=01-04", 1): 0.55, ("test=05-08", 1): 0.45, ("test=01-04", 0): 0.5, ("test=05-08", 0): 0.4}
    table = fold_differences(a, b)
    assert table.folds == ("test=01-04", "test=05-08") and table.seeds == (0, 1)
    np.testing.assert_allclose(table.pairs, [[0.1, -0.05], [0.1, -0.05]], atol=1e-15)
    np.testing.assert_allclose(table.diffs, [0.025, 0.025], atol=1e-15)


def test_mismatched_keys_raise_one_line() -> None:
    a = {("f1", 0): 0.5, ("f2", 0): 0.6}
    b = {("f1", 0): 0.5, ("f3", 0): 0.6}
    with pytest.raises(EmodiffError) as err:
        fold_differences(a, b)
    message = str(err.value)
    assert "\n" not in message
    assert "('f2', 0)" in message and "('f3', 0)" in message


def test_bad_pairs_raise() -> None:
    with pytest.raises(EmodiffError, match="at least one"):
        fold_differences({}, {})
    with pytest.raises(EmodiffError, match="finite"):
        fold_differences({("f", 0): 0.5}, {("f", 0): float("nan")})
    with pytest.raises(EmodiffError, match=r"same seeds \[0, 1\]; missing: \[\('g', 1\)\]"):
        uneven = {("f", 0): 0.5, ("f", 1): 0.5, ("g", 0): 0.5}
        fold_differences(uneven, uneven)
    with pytest.raises(EmodiffError, match="expected \\(fold, seed\\) pairs"):
        fold_differences({"f": 0.5}, {"f": 0.5})
    with pytest.raises(EmodiffError, match="sizes of folds"):
        compare({("f", 0): 0.5, ("g", 0): 0.5}, {("f", 0): 0.6, ("g", 0): 0.5}, {"f": (4, 16)}, experiment="x")


def test_size_ratio_is_the_mean_over_folds() -> None:
    assert size_ratio({"a": (4, 16), "b": (6, 12)}) == pytest.approx((0.25 + 0.5) / 2)
    with pytest.raises(EmodiffError, match="b"):
        size_ratio({"a": (4, 16), "b": (3, 0)})


def _pairs(per_fold: dict[str, list[float]]) -> tuple[dict, dict]:
    """Baseline 0.5 everywhere; the experiment 0.5 + d per (fold, seed)."""
    a = {(f, s): 0.5 for f, d in per_fold.items() for s in range(len(d))}
    b = {(f, s): 0.5 + x for f, d in per_fold.items() for s, x in enumerate(d)}
    return a, b


def test_seeds_are_not_replicates() -> None:
    """Pair level and fold level disagree. Wins: 4 of 9 pairs are better but 2 of 3 folds. Significance:
    three folds whose ten seeds move together look decisive as 30 pairs (p < 0.001) and are not as
    3 folds."""
    a, b = _pairs({"f1": [0.03, -0.01, -0.01], "f2": [0.03, -0.01, -0.01], "f3": [-0.02, 0.005, 0.005]})
    c = compare(a, b, {f: (4, 16) for f in ("f1", "f2", "f3")}, experiment="x")
    assert (c.n_folds, c.n_seeds) == (3, 3) and (c.wins, c.losses, c.ties) == (2, 1, 0)
    assert sum(b[k] > a[k] for k in a) == 4
    np.testing.assert_allclose([d for _, d in c.fold_diffs], [0.01 / 3, 0.01 / 3, -0.01 / 3], atol=1e-15)

    a, b = _pairs({"f1": [0.02] * 10, "f2": [0.05] * 10, "f3": [-0.01] * 10})
    c = compare(a, b, {f: (4, 16) for f in ("f1", "f2", "f3")}, experiment="x")
    pairs = np.array([b[k] - a[k] for k in sorted(a)])
    assert scipy.stats.ttest_1samp(pairs, 0.0).pvalue < 0.001
    assert c.n_folds == 3 and c.corrected == pytest.approx(corrected_t([0.02, 0.05, -0.01], 0.25), rel=1e-12)
    assert c.corrected.p > 0.3 and c.permutation == SignFlip(0.5, "exact", 8)


def test_cluster_bootstrap_resamples_folds_whole() -> None:
    """Each fold's seeds move together: the interval is the documented recipe over the 6 fold means
    (idx over folds), wider than a bootstrap that resamples the 18 pairs as if independent."""
    shifts = [0.04, -0.02, 0.03, 0.0, 0.05, -0.01]
    a, b = _pairs({f"group={j}": [x + 0.001 * s for s in range(3)] for j, x in enumerate(shifts)})
    c = compare(a, b, SIZES6, experiment="x", n_boot=5000, seed=2)
    d = np.array(shifts) + 0.001
    idx = np.random.default_rng(2).integers(0, 6, size=(5000, 6))
    means = d[idx].mean(axis=1)
    assert c.bootstrap == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=1e-12)
    _, low, high = bootstrap_ci(np.array([b[k] - a[k] for k in sorted(a)]), n_boot=5000, seed=2)
    assert c.bootstrap[1] - c.bootstrap[0] > high - low


def test_compare_bundles_the_fold_level_statistics() -> None:
    rng = np.random.default_rng(7)
    keys = [(f"group={j}", s) for j in range(6) for s in range(3)]
    a = {k: float(rng.uniform(0.4, 0.6)) for k in keys}
    b = {k: a[k] + float(rng.normal(0.02, 0.03)) for k in keys}
    c = compare(a, b, SIZES6, experiment="real+synthetic", n_boot=2000, seed=3)
    d = fold_differences(a, b).diffs
    assert (c.n_folds, c.n_seeds, c.test_train_ratio) == (6, 3, 0.25)
    assert c.mean_diff == pytest.approx(np.mean([b[k] - a[k] for k in keys]), rel=1e-12)  # balanced: same mean
    assert c.corrected == corrected_t(d, 0.25)
    assert c.permutation == sign_flip_p(d) and c.permutation.method == "exact"
    assert c.bootstrap == bootstrap_ci(d, n_boot=2000, seed=3)[1:]
    assert (c.wins, c.losses, c.ties) == (int((d > 0).sum()), int((d < 0).sum()), 0)
    assert c.corrected.low <= c.mean_diff <= c.corrected.high
    assert c.baseline == "real" and c.experiment == "real+synthetic"


def test_compare_one_fold_and_all_ties() -> None:
    a = {("cross", s): 0.5 for s in range(3)}
    one = compare(a, {k: 0.52 for k in a}, {"cross": (100, 400)}, experiment="x")
    assert one.n_folds == 1 and math.isnan(one.corrected.p) and all(map(math.isnan, one.bootstrap))
    assert one.text() == "+2.0 pp, one fold: no interval or test (1 fold × 3 seeds)"
    same = compare(_pairs({"f": [0.0], "g": [0.0]})[0], _pairs({"f": [0.0], "g": [0.0]})[0],
                   {"f": (1, 4), "g": (1, 4)}, experiment="same")
    assert (same.mean_diff, same.corrected.p, same.permutation.p, same.ties) == (0.0, 1.0, 1.0, 2)


def _example(**kw) -> PairedComparison:
    values = dict(experiment="real+synthetic", baseline="real", n_folds=6, n_seeds=3, test_train_ratio=0.25,
                  corrected=CorrectedT(0.022, 1.1, 5, 0.34, -0.019, 0.063), permutation=SignFlip(0.375, "exact", 64),
                  bootstrap=(-0.004, 0.051), wins=4, losses=2, ties=0)
    values.update(kw)
    return PairedComparison(**values)


def test_text_names_the_unit_the_interval_and_both_ps() -> None:
    assert _example().text() == ("+2.2 pp [\u22121.9, +6.3] corrected t, p = 0.34, permutation p = 0.38 "
                                 "(6 folds × 3 seeds)")
    assert _example(corrected=CorrectedT(0.022, 4.0, 5, 0.0042, 0.01, 0.03)).text().startswith(
        "+2.2 pp [+1.0, +3.0] corrected t, p = 0.004,")
    assert "permutation p \u2248 0.38 (24 folds" in _example(
        n_folds=24, permutation=SignFlip(0.375, "monte carlo", 100_000)).text()
    assert _example(permutation=SignFlip(0.0001, "monte carlo", 100_000)).text().endswith(
        "permutation p < 0.001 (6 folds × 3 seeds)")
    assert _example(level=0.9).interval_text() == "+2.2 pp [90 % \u22121.9, +6.3]"


ATTRS = {
    "paired_baseline": "real", "paired_unit": "fold", "paired_n_folds": 6, "paired_n_seeds": 3,
    "paired_test_train_ratio": 0.25, "paired_mean_diff": 0.022, "paired_t": 1.1, "paired_df": 5, "paired_p_t": 0.34,
    "paired_ci_low": -0.019, "paired_ci_high": 0.063, "paired_level": 0.95, "paired_p_perm": 0.375,
    "paired_perm_method": "exact", "paired_perm_patterns": 64, "paired_boot_low": -0.004, "paired_boot_high": 0.051,
    "paired_wins": 4, "paired_losses": 2, "paired_ties": 0,
}


def test_as_attrs_names_and_types() -> None:
    attrs = _example().as_attrs("paired")
    assert attrs == ATTRS
    assert all(type(v) in (float, int, str) for v in attrs.values())
    assert set(_example().as_attrs("vs_real")) == {k.replace("paired_", "vs_real_") for k in attrs}


def test_attrs_round_trip_through_hdf5(tmp_path) -> None:
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    a = {(f"group={j}", s): float(rng.uniform(0.4, 0.6)) for j in range(6) for s in range(3)}
    b = {k: v + float(rng.normal(0.01, 0.03)) for k, v in a.items()}
    one = {("cross", s): 0.5 for s in range(2)}
    written = [compare(a, b, SIZES6, experiment="x"),
               compare(one, {k: 0.6 for k in one}, {"cross": (1, 3)}, experiment="x")]  # NaN t, p, intervals
    with h5py.File(tmp_path / "t.h5", "w") as f:
        for i, c in enumerate(written):
            f.create_group(f"results/{i}").attrs.update(c.as_attrs())
    with h5py.File(tmp_path / "t.h5", "r") as f:
        back = [PairedComparison.from_attrs(dict(f[f"results/{i}"].attrs), "x") for i in range(2)]
    assert back[0] == dataclasses.replace(written[0], fold_diffs=())
    assert back[1] is not None and back[1].n_folds == 1 and math.isnan(back[1].corrected.p)
    assert back[1].as_attrs().keys() == written[1].as_attrs().keys()


def test_old_pair_level_attrs_are_not_read_as_evidence() -> None:
    """A store written before the fold was the unit: Wilcoxon over pairs, no `paired_unit`. Read: None."""
    old = {"paired_mean_diff": 0.023, "paired_ci_low": -0.004, "paired_ci_high": 0.051, "paired_level": 0.95,
           "paired_p_wilcoxon": 0.12, "paired_n": 18, "paired_wins": 11, "paired_losses": 6, "paired_ties": 1,
           "paired_baseline": "real"}
    assert PairedComparison.from_attrs(old, "x") is None
    assert PairedComparison.from_attrs({}, "x") is None
    with pytest.raises(ValueError, match="paired_unit is 'pair'"):
        PairedComparison.from_attrs({**ATTRS, "paired_unit": "pair"}, "x")
