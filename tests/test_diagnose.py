"""The Wiener filter and the generator diagnostics against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emodiff.diffusion.diagnose import condition_gap, error_per_level, mel_statistics
from emodiff.diffusion.wiener import BlockWiener, from_blocks, to_blocks


def _gaussian_data(n: int = 4000, c: int = 3, f: int = 8, block: int = 2,
                   seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """x_0 [n, c, f] whose blocks of ``block`` frames are N(mu, S) with a known S (and blocks independent)."""
    rng = np.random.default_rng(seed)
    d = c * block
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.05 * np.eye(d)
    mu = rng.normal(size=d)
    blocks = rng.multivariate_normal(mu, cov, size=n * f // block)
    return from_blocks(torch.from_numpy(blocks), n, c, f, block), cov


def test_blocks_round_trip_and_keep_frames_together() -> None:
    x = torch.arange(2 * 3 * 8, dtype=torch.float64).reshape(2, 3, 8)
    b = to_blocks(x, 4)
    assert b.shape == (4, 12)
    assert b[0].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]  # bins of frames 0-3, bin-major
    assert torch.equal(from_blocks(b, 2, 3, 8, 4), x)
    with pytest.raises(ValueError, match="multiple"):
        to_blocks(x, 3)


def test_wiener_filter_is_the_posterior_mean_and_its_error_matches() -> None:
    x0, cov = _gaussian_data()
    wiener = BlockWiener.fit(x0, block=2)
    # The fitted covariance's eigenvalues are the true ones, up to sampling error.
    assert np.allclose(np.sort(wiener.eigval.numpy()), np.sort(np.linalg.eigvalsh(cov)), rtol=0.1, atol=0.02)
    gen = torch.Generator().manual_seed(1)
    for sigma in (0.1, 0.5, 2.0):
        x = x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        d = wiener(x, torch.full((len(x),), sigma))
        # Independent: mu + S (S + sigma^2 I)^-1 (x - mu) with numpy's solve, on the same blocks.
        mu = wiener.mean.numpy()
        s = (wiener.eigvec * wiener.eigval) @ wiener.eigvec.T
        y = to_blocks(x, 2).numpy() - mu
        expected = mu + np.linalg.solve(s.numpy() + sigma**2 * np.eye(6), y.T).T @ s.numpy().T
        assert np.allclose(to_blocks(d, 2).numpy(), expected, atol=1e-9)
        measured = float(((d - x0) ** 2).mean())
        assert measured == pytest.approx(float(wiener.error(torch.tensor([sigma]))[0]), rel=0.05)
    # The limits: no noise leaves x as it is; infinite noise predicts the mean.
    assert torch.allclose(wiener(x0, torch.tensor(0.0)), x0, atol=1e-9)
    far = wiener(x0[:2], torch.tensor(1e6))
    assert torch.allclose(to_blocks(far, 2), wiener.mean.expand(8, 6), atol=1e-6)


def test_error_per_level_and_condition_gap() -> None:
    x0, _ = _gaussian_data(n=200)
    x0 = x0.float()
    wiener = BlockWiener.fit(x0, block=2)
    rows = error_per_level(lambda x, s: wiener(x, s), x0, wiener, levels=(0.1, 1.0))
    for r in rows:
        assert r.model == pytest.approx(r.gaussian, rel=1e-5)  # the same filter on the same noise
        assert r.noisy == pytest.approx(r.sigma**2, rel=0.05)

    def ignores(x, s, e):  # a denoiser blind to emotion shows no gap
        return wiener(x, s)

    true, other = condition_gap(ignores, x0, torch.zeros(len(x0), dtype=torch.long), 0.5)
    assert true == pytest.approx(other)

    def uses(x, s, e):  # one that is right only for the true emotion (0) shows one
        return wiener(x, s) + 0.3 * (e != 0).float()[:, None, None]

    true, other = condition_gap(uses, x0, torch.zeros(len(x0), dtype=torch.long), 0.5)
    assert other > true + 0.05


def test_mel_statistics_on_known_mels() -> None:
    mel = np.full((2, 80, 10), -1.0)
    mel[:, :, :5] = np.linspace(-0.5, 0.5, 80)[None, :, None]  # 5 identical loud frames, then silence
    s = mel_statistics(mel)
    assert s["silent"] == pytest.approx(0.5)
    assert s["change"] == 0.0 and s["correlation"] == pytest.approx(1.0)
    assert s["std"] == pytest.approx(np.linspace(-0.5, 0.5, 80).std())
    # Flatness of a flat spectrum is 1, of a ramp in log power far less.
    flat = np.zeros((1, 80, 4))
    assert mel_statistics(flat)["flatness"] == pytest.approx(1.0)
    assert s["flatness"] < 0.2
    # frames: what lies past them is not counted at all
    assert mel_statistics(mel, np.array([5, 5]))["silent"] == 0.0
    noise = np.random.default_rng(0).uniform(-0.9, 0.9, size=(4, 80, 50))
    assert mel_statistics(noise)["correlation"] < 0.2 and mel_statistics(noise)["change"] > 0.4
    assert math.isnan(mel_statistics(np.full((1, 80, 4), -1.0))["std"])
