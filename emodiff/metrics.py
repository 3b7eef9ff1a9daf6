"""The pure metrics of ``emodiff.quality``: numpy in, a float or an array out (docs/quality.md has how to read them).

Mels are in the store's scaling: y = 2 (ln m - ln 1e-5) / (log_max - ln 1e-5) - 1 (emodiff/audio.py
``scale_log_mel``), so -1 is the log floor ln 1e-5, where silence and padding sit. Embeddings are the
yardstick classifier's pooled representation z = f.embed(x), [2H].
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from emodiff.silence import SILENCE, counted_frames

NEAREST_K = 5  # Naeem et al. 2020 use k = 5 for density and coverage
LOW_BINS = 15  # bins 0-14, the low bins whose frame-to-frame change issue 20 summarises
CHUNK = 256  # segments per step of frame_change


def nanmean(values: list[float]) -> float:
    """The mean of the values that are not NaN; NaN when none is (a metric averaged over halves or rows)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


# ---------------------------------------------------------------------------------------------- mel values


def mad(real: np.ndarray, real_frames: np.ndarray, synthetic: np.ndarray) -> float:
    """MAD = (1/B) sum_b W1(R_b, S_b), real [N, B, F], real_frames [N], synthetic [M, B, F'].

    R_b (S_b) is the multiset of values of bin b over the counted frames (:func:`counted_frames`)
    of the real (synthetic) segments, and W1(P, Q) = int |F_P(v) - F_Q(v)| dv, which for two sets
    of equal size n is (1/n) sum_i |p_(i) - q_(i)| over their sorted values. NaN if either side
    has no counted frame.
    """
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    if synthetic.ndim != 3 or real.ndim != 3 or real.shape[1] != synthetic.shape[1]:
        raise ValueError(f"mad: expected real [N, B, F] and synthetic [M, B, F'], got {real.shape}, {synthetic.shape}")
    r_mask, s_mask = counted_frames(real, real_frames), counted_frames(synthetic)
    if not r_mask.any() or not s_mask.any():
        return math.nan
    # [B, K] values per bin: moving bins first lets one boolean index pick the counted frames.
    r_vals = np.moveaxis(real, 1, 0)[:, r_mask]
    s_vals = np.moveaxis(synthetic, 1, 0)[:, s_mask]
    return float(np.mean([wasserstein_distance(r.astype(np.float64), s.astype(np.float64))
                          for r, s in zip(r_vals, s_vals, strict=True)]))


def _valid(mel: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Bool [N, F]: t < frames[n], for mel [N, B, F] and frames [N] (checked)."""
    frames = np.asarray(frames)
    if np.ndim(mel) != 3 or frames.shape != (len(mel),):
        raise ValueError(f"expected mel [N, B, F] and frames [N], got shapes {np.shape(mel)} and {frames.shape}")
    return np.arange(np.shape(mel)[2])[None, :] < frames[:, None]


def silence_fraction(mel: np.ndarray, frames: np.ndarray, threshold: float = SILENCE) -> float:
    """#{(n, t) : t < frames[n], (1/B) sum_b x[n, b, t] < threshold} / #{(n, t) : t < frames[n]}; mel [N, B, F].

    The share of valid frames whose mean level over the B bins is below ``threshold`` (strictly),
    in the store's [-1, 1] scaling: -0.95 is 0.37 nats above the log floor on average over the
    bins. Frames at or after ``frames[n]`` (padding) do not count. NaN without a valid frame.
    """
    valid = _valid(mel, frames)
    if not valid.any():
        return math.nan
    level = np.mean(mel, axis=1, dtype=np.float64)  # [N, F]; float64 without a float64 copy of mel
    return float((level < threshold)[valid].mean())


def frame_change(mel: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """c [B]: c_b = mean over (n, t) with t + 1 < frames[n] of |x[n, b, t + 1] - x[n, b, t]|; mel [N, B, F].

    The mean absolute frame-to-frame change of each bin, pooled over every valid consecutive pair
    of frames of every segment (a pair that reaches into the padding does not count). NaN [B]
    without such a pair.
    """
    pairs = _valid(mel, frames)[:, 1:]  # (t, t + 1) is valid iff t + 1 is
    total = np.zeros(np.shape(mel)[1])
    # In chunks: a whole corpus in float64 with its differences would take gigabytes.
    for lo in range(0, len(mel), CHUNK):
        step = np.abs(np.diff(np.asarray(mel[lo:lo + CHUNK], np.float64), axis=2))  # [n, B, F - 1]
        total += np.einsum("nbt,nt->b", step, pairs[lo:lo + CHUNK].astype(np.float64))
    count = int(pairs.sum())
    return total / count if count else np.full(len(total), math.nan)


def change_ratio(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """rho [B] = c_synthetic / c_real per bin (:func:`frame_change`); NaN where c_real is 0 or either is NaN."""
    synthetic, real = np.asarray(synthetic, np.float64), np.asarray(real, np.float64)
    out = np.full(real.shape, math.nan)
    np.divide(synthetic, real, out=out, where=real > 0)  # NaN > 0 is False: NaN stays
    return out


def ratio_summary(ratio: np.ndarray, low_bins: int = LOW_BINS) -> tuple[float, int, float]:
    """(mean of rho over bins 0..low_bins-1, b* = argmax_b |rho_b - 1|, rho_b*) of a per-bin ratio rho [B].

    NaN bins are left out of both; with none left the result is (NaN, -1, NaN).
    """
    ratio = np.asarray(ratio, np.float64)
    if np.isnan(ratio).all():
        return math.nan, -1, math.nan
    low = ratio[:low_bins][~np.isnan(ratio[:low_bins])]
    worst = int(np.nanargmax(np.abs(ratio - 1.0)))
    return (float(low.mean()) if len(low) else math.nan), worst, float(ratio[worst])


# ---------------------------------------------------------------------------------------------- embeddings


def frechet_from_moments(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}); mu [D], S [D, D] symmetric PSD.

    Tr((S_a S_b)^{1/2}) = sum_i sqrt(lambda_i), lambda = eig(A S_b A), A = S_a^{1/2}: S_a S_b = A (A S_b)
    has the eigenvalues of (A S_b) A, a symmetric PSD matrix, so they are real and >= 0 even when
    the covariances are singular (fewer samples than dimensions). ``eigh`` then needs no ridge and
    leaves no imaginary part; eigenvalues below 0 are round-off and are clipped, as is FD below 0.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root_a @ cov_b @ root_a
    lam = np.linalg.eigvalsh((m + m.T) / 2.0)  # symmetrised: round-off makes m slightly asymmetric
    trace_root = float(np.sqrt(np.clip(lam, 0.0, None)).sum())
    diff = mu_a - mu_b
    return max(float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root), 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussians fitted to a [N, D] and b [M, D] (rows = samples; mean and covariance with ddof 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: expected [N, D] and [M, D], got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: a covariance needs >= 2 samples, got {len(a)} and {len(b)}")
    return frechet_from_moments(a.mean(0), np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], -1),
                                b.mean(0), np.cov(b, rowvar=False, ddof=1).reshape(b.shape[1], -1))


def mean_pairwise_distance(x: np.ndarray) -> float:
    """(2 / (N (N - 1))) sum_{i < j} ||x_i - x_j||_2 over the rows of x [N, D]; N >= 2."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"mean_pairwise_distance: expected [N, D] with N >= 2, got shape {x.shape}")
    # Row by row rather than through the Gram matrix: exact zeros for identical rows, O(N D) memory.
    total = sum(float(np.linalg.norm(x[i + 1:] - x[i], axis=1).sum()) for i in range(len(x) - 1))
    return total / (len(x) * (len(x) - 1) / 2)


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = NEAREST_K) -> tuple[float, float]:
    """(density, coverage) of fake Y [M, D] against real X [N, D] (Naeem et al., ICML 2020); N > k, M >= 1.

    r_i = ||X_i - NN_k(X_i)||_2, the Euclidean distance from X_i to its k-th nearest neighbour among
    the other reals, and B(X_i, r_i) = {y : ||y - X_i||_2 <= r_i} (closed: a fake on the boundary is in).

        density  = (1 / (k M)) sum_j sum_i 1[Y_j in B(X_i, r_i)]
        coverage = (1 / N) sum_i 1[exists j : Y_j in B(X_i, r_i)]

    Density is about 1 when the fakes fall where reals are dense (fidelity) and grows past 1 when
    they crowd there; coverage is the share of real neighbourhoods that some fake reaches (diversity).
    """
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"density_coverage: expected real [N, D] and fake [M, D], got {x.shape} and {y.shape}")
    if k < 1 or len(x) <= k or len(y) < 1:
        raise ValueError(f"density_coverage: needs k >= 1, N > k reals and M >= 1 fakes; got k={k}, "
                         f"N={len(x)}, M={len(y)}")
    among_real = cdist(x, x)
    np.fill_diagonal(among_real, np.inf)  # "the other reals": X_i is not its own neighbour
    radius = np.partition(among_real, k - 1, axis=1)[:, k - 1]  # [N]
    inside = cdist(y, x) <= radius[None, :]  # [M, N]: Y_j in B(X_i, r_i)
    return float(inside.sum() / (k * len(y))), float(inside.any(axis=0).mean())
