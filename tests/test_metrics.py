"""emodiff.metrics, the issue-20 metrics: against brute-force loops and hand computations on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emodiff import metrics as m

RNG = np.random.default_rng


# ---------------------------------------------------------------------------------------------- density and coverage


def _density_coverage_hand(x: np.ndarray, y: np.ndarray, k: int, strict: bool = False) -> tuple[float, float]:
    """Naeem et al.'s definitions as double loops, with math.dist; ``strict``: open balls (for the boundary test)."""
    radius = [sorted(math.dist(x[i], x[j]) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]

    def inside(yj: np.ndarray, i: int) -> bool:
        d = math.dist(yj, x[i])
        return d < radius[i] if strict else d <= radius[i]

    density = sum(inside(yj, i) for yj in y for i in range(len(x))) / (k * len(y))
    coverage = sum(any(inside(yj, i) for yj in y) for i in range(len(x))) / len(x)
    return density, coverage


@pytest.mark.parametrize("k", [1, 3, 5])
def test_density_coverage_match_a_double_loop_with_a_fake_on_a_boundary(k: int) -> None:
    rng = RNG(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(9, 3)) * 0.8 + 0.3
    # A fake exactly on the boundary of B(X_0, r_0): X_0's k-th nearest other real itself.
    kth = np.argsort(np.linalg.norm(x - x[0], axis=1))[k]  # [0] is X_0
    y[0] = x[kth]
    expected = _density_coverage_hand(x, y, k)
    assert _density_coverage_hand(x, y, k, strict=True)[0] < expected[0]  # the boundary fake matters
    assert m.density_coverage(x, y, k) == pytest.approx(expected, rel=1e-12)


def test_density_coverage_known_cases() -> None:
    x = RNG(1).normal(size=(20, 4))
    assert m.density_coverage(x, x)[1] == 1.0  # every real lies in its own ball
    assert m.density_coverage(x, x + 1000.0) == (0.0, 0.0)
    # Copies of one real point (collapse) all land in the same few balls: each counts them M times, so
    # density = (M c N) / (k M) = c N / k for coverage c; high density, low coverage.
    density, coverage = m.density_coverage(x, np.repeat(x[:1], 20, axis=0))
    assert coverage < 0.5 and density == pytest.approx(coverage * 20 / m.NEAREST_K, rel=1e-12)


def test_density_coverage_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="N > k"):
        m.density_coverage(np.zeros((5, 2)), np.zeros((3, 2)), k=5)
    with pytest.raises(ValueError, match="k >= 1"):
        m.density_coverage(np.zeros((5, 2)), np.zeros((3, 2)), k=0)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        m.density_coverage(np.zeros((8, 2)), np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------- silence fraction


def test_silence_fraction_counts_valid_frames_by_their_mean_level() -> None:
    mel = np.full((2, 3, 4), -1.0)
    mel[0, :, 1] = 0.0  # loud
    mel[0, :, 2] = [-1.0, -1.0, -0.88]  # mean -0.96: silent by the mean, though one bin is above -0.95
    mel[0, :, 3] = [-0.95, -0.95, -0.95]  # mean exactly -0.95: not below
    mel[1, :, 0] = 0.5  # loud; frame 1 silent; frames 2-3 are padding (silent, must not count)
    frames = np.array([4, 2])
    # Silent valid frames: (0, 0), (0, 2), (1, 1) of 6 valid ones. Counting the padding would give 5 / 8.
    assert m.silence_fraction(mel, frames) == pytest.approx(3 / 6, abs=1e-15)
    assert m.silence_fraction(mel[:1], frames[:1], threshold=-0.5) == pytest.approx(3 / 4, abs=1e-15)
    assert math.isnan(m.silence_fraction(mel[:0], frames[:0]))
    with pytest.raises(ValueError, match="frames"):
        m.silence_fraction(mel, np.array([4]))


# ---------------------------------------------------------------------------------------------- frame change


def _frame_change_hand(mel: np.ndarray, frames: np.ndarray) -> list[float]:
    out = []
    for b in range(mel.shape[1]):
        steps = [abs(mel[n, b, t + 1] - mel[n, b, t]) for n in range(len(mel)) for t in range(int(frames[n]) - 1)]
        out.append(sum(steps) / len(steps))
    return out


def test_frame_change_by_hand_and_ignores_the_padding() -> None:
    mel = np.array([[[0.0, 0.5, -0.5, 9.0], [1.0, 1.0, 0.0, -9.0]],
                    [[0.2, 0.0, 9.0, -9.0], [0.0, -0.3, 9.0, 9.0]]])  # [N=2, B=2, F=4]; 9s are padding
    frames = np.array([3, 2])
    # Bin 0: |0.5 - 0| + |-0.5 - 0.5| + |0 - 0.2| over 3 pairs; bin 1: 0 + 1 + 0.3 over 3.
    assert m.frame_change(mel, frames) == pytest.approx([1.7 / 3, 1.3 / 3], rel=1e-12)
    assert m.frame_change(mel, np.array([1, 1])) == pytest.approx([math.nan] * 2, nan_ok=True)  # no pair


def test_frame_change_in_chunks_matches_a_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = RNG(2)
    mel, frames = rng.uniform(-1, 1, size=(7, 5, 9)).astype(np.float16), rng.integers(1, 10, size=7)
    monkeypatch.setattr(m, "CHUNK", 3)  # 7 segments: chunks of 3, 3 and 1
    assert m.frame_change(mel, frames) == pytest.approx(_frame_change_hand(mel.astype(np.float64), frames),
                                                        rel=1e-12)


def test_change_ratio_and_its_summary() -> None:
    assert m.change_ratio(np.array([2.0, 1.0, math.nan]), np.array([1.0, 0.0, 1.0])) == pytest.approx(
        [2.0, math.nan, math.nan], nan_ok=True)
    ratio = np.ones(80)
    ratio[3], ratio[40], ratio[70] = 1.3, 0.6, math.nan
    low, worst_bin, worst = m.ratio_summary(ratio)
    assert low == pytest.approx((14 + 1.3) / 15) and (worst_bin, worst) == (40, 0.6)
    assert m.ratio_summary(np.full(80, math.nan))[1:] == (-1, pytest.approx(math.nan, nan_ok=True))
