"""The v/EDM maths (emodiff/diffusion/preconditioned.py) against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emodiff.diffusion.preconditioned import (
    PreconditionedDiffusion,
    ancestral_step,
    dpmpp_2m_sde_step,
    dpmpp_2m_step,
)


def test_edm_scalings_match_table_1_and_give_unit_variance() -> None:
    sd = 0.37
    diff = PreconditionedDiffusion("edm", sd)
    sigma = torch.tensor([0.002, 0.1, 0.37, 2.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = diff.scalings(sigma)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(sd**2 / (s**2 + sd**2), rel=1e-12)
        assert c_out[i].item() == pytest.approx(s * sd / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(s**2 + sd**2), rel=1e-12)
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4, rel=1e-12)
    # The network's input c_in (x_0 + sigma n) and its target (x_0 - c_skip x) / c_out have unit variance
    # for data of std sd (EDM appendix B.6), checked by Monte Carlo.
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(200_000, generator=gen, dtype=torch.float64) * sd
    for i in range(len(sigma)):
        x = x0 + sigma[i] * torch.randn(200_000, generator=gen, dtype=torch.float64)
        assert (c_in[i] * x).std().item() == pytest.approx(1.0, abs=0.01)
        assert ((x0 - c_skip[i] * x) / c_out[i]).std().item() == pytest.approx(1.0, abs=0.01)


def test_v_parameterisation_is_salimans_and_ho_v_prediction() -> None:
    """With sd = 1, D = c_skip x + c_out F is alpha x_t - sigma_vp v_hat for F = -v_hat, where x_t = alpha x,
    alpha = 1 / sqrt(1 + sigma^2), sigma_vp = sigma alpha; and the loss target F_target = -v,
    v = alpha n - sigma_vp x_0."""
    diff = PreconditionedDiffusion("v", sigma_data=0.3)  # v ignores the data's sigma
    assert diff.sigma_data == 1.0
    gen = torch.Generator().manual_seed(1)
    x0, n, v_hat = (torch.randn(4, 80, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    sigma = torch.tensor([0.05, 0.5, 1.0, 7.0], dtype=torch.float64)
    alpha = 1 / (1 + sigma**2).sqrt()
    s_vp = sigma * alpha
    x = x0 + sigma.view(-1, 1, 1) * n
    x_t = alpha.view(-1, 1, 1) * x

    def model(inp: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        assert torch.allclose(inp, x_t)  # c_in x is the VP-scaled x_t
        return -v_hat

    d = diff.denoise(model, x, sigma)
    assert torch.allclose(d, alpha.view(-1, 1, 1) * x_t - s_vp.view(-1, 1, 1) * v_hat, atol=1e-12)
    v = alpha.view(-1, 1, 1) * n - s_vp.view(-1, 1, 1) * x0
    c_skip, c_out, _, _ = diff.scalings(sigma)
    target = (x0 - c_skip.view(-1, 1, 1) * x) / c_out.view(-1, 1, 1)
    assert torch.allclose(target, -v, atol=1e-12)


def test_loss_is_the_weighted_f_error_and_min_snr_clamps_it() -> None:
    gen = torch.Generator().manual_seed(2)
    x0, noise, f = (torch.randn(3, 80, 16, generator=gen) for _ in range(3))
    sigma = torch.tensor([0.01, 0.3, 4.0])
    for gamma in (0.0, 5.0):
        diff = PreconditionedDiffusion("edm", 0.4, min_snr_gamma=gamma)
        out = diff.training_losses(lambda x, c: f, x0, sigma, noise=noise)
        c_skip, c_out, c_in, _ = (c.view(-1, 1, 1) for c in diff.scalings(sigma))
        x = x0 + sigma.view(-1, 1, 1) * noise
        target = (x0 - c_skip * x) / c_out
        snr = 0.4**2 / sigma**2
        weight = torch.ones(3) if gamma == 0 else torch.minimum(snr, torch.tensor(gamma)) / (snr + 1)
        expected = weight * ((f - target) ** 2).mean(dim=(1, 2))
        assert torch.allclose(out["loss"], expected, rtol=1e-4)
        assert torch.allclose(out["mse"], ((c_skip * x + c_out * f - x0) ** 2).mean(dim=(1, 2)), rtol=1e-5)


def test_training_noise_levels_follow_their_distributions() -> None:
    gen = torch.Generator().manual_seed(3)
    log_sigma = PreconditionedDiffusion("edm", 0.4, p_mean=-1.2, p_std=1.2).sample_sigma(100_000, gen).log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.02)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.02)
    # v: sigma = tan(pi/2 (u + s)/(1 + s)), so P(sigma <= 1) = P(u <= (1 + s)/2 - s) = 0.5 - s/2.
    sigma = PreconditionedDiffusion("v", 1.0).sample_sigma(100_000, gen)
    assert (sigma <= 1).float().mean().item() == pytest.approx(0.5 - 0.008 / 2, abs=0.005)


def test_karras_sigmas() -> None:
    diff = PreconditionedDiffusion("edm", 0.5, sigma_min=0.002, sigma_max=80.0, rho=7.0)
    s = diff.sigmas(18).numpy()
    assert s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002) and s[-1] == 0
    assert np.all(np.diff(s) < 0)
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i] == pytest.approx(expected, rel=1e-12)


def _gaussian_problem(sd: float = 0.5, n: int = 4000):
    """x_0 ~ N(0, sd^2): the exact denoiser is D(x; sigma) = sd^2 / (sd^2 + sigma^2) x, and the probability-flow
    ODE maps x(sigma_max) to x(0) = x(sigma_max) sd / sqrt(sd^2 + sigma_max^2)."""
    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma.view(-1, *([1] * (x.ndim - 1))).to(x.dtype) ** 2
        return sd**2 / (sd**2 + s2) * x

    noise = torch.randn(n, 1, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return denoise, noise


@pytest.mark.parametrize("sampler,steps,tolerance", [("ddim", 200, 2e-2), ("heun", 50, 1e-2), ("dpmpp-2m", 50, 1e-2)])
def test_ode_solvers_reach_the_exact_flow_on_gaussian_data(sampler: str, steps: int, tolerance: float) -> None:
    sd, smax = 0.5, 80.0
    denoise, noise = _gaussian_problem(sd)
    diff = PreconditionedDiffusion("edm", sd, sigma_max=smax)
    out = diff.sample_loop(denoise, noise, steps, sampler=sampler).double()
    exact = noise * smax * sd / math.sqrt(sd**2 + smax**2)
    rel = ((out - exact).abs().max() / exact.abs().max()).item()
    assert rel < tolerance, rel


def test_second_order_solvers_converge_at_second_order() -> None:
    """Doubling the steps divides Euler's error by about 2 and a second-order solver's by about 4."""
    sd = 0.5
    denoise, noise = _gaussian_problem(sd, n=1)
    diff = PreconditionedDiffusion("edm", sd)
    exact = noise * 80.0 * sd / math.sqrt(sd**2 + 80.0**2)

    def err(sampler: str, steps: int) -> float:
        return (diff.sample_loop(denoise, noise, steps, sampler=sampler).double() - exact).abs().max().item()

    ratio = {s: err(s, 40) / err(s, 80) for s in ("ddim", "dpmpp-2m", "heun")}
    assert 1.6 < ratio["ddim"] < 2.5, ratio
    assert ratio["heun"] > 3.2 and ratio["dpmpp-2m"] > 3.2, ratio


def test_ancestral_sampling_draws_the_data_distribution() -> None:
    sd = 0.5
    denoise, noise = _gaussian_problem(sd, n=20_000)
    diff = PreconditionedDiffusion("edm", sd)
    out = diff.sample_loop(denoise, noise, 1000, sampler="ddpm", generator=torch.Generator().manual_seed(5))
    assert out.std().item() == pytest.approx(sd, rel=0.015)  # ancestral steps are first order: 0.455 at 60 steps
    assert abs(out.mean().item()) < 0.02


def test_the_sde_solver_without_noise_is_dpmpp_2m_and_with_noise_draws_the_data_distribution() -> None:
    """eta = 0 is DPM-Solver++(2M) to rounding; eta = 0.5 and 1 draw N(0, sd^2) as the steps grow, where the
    first-order ancestral sampler at as many steps is still far too narrow (its std 0.48 at 128 steps)."""
    sd = 0.5
    denoise, noise = _gaussian_problem(sd, n=20_000)
    diff = PreconditionedDiffusion("edm", sd)
    ode = diff.sample_loop(denoise, noise, 16, sampler="dpmpp-2m")
    torch.testing.assert_close(diff.sample_loop(denoise, noise, 16, sampler="dpmpp-2m-sde", eta=0.0), ode,
                               rtol=1e-6, atol=1e-6)
    for eta in (0.5, 1.0):
        out = diff.sample_loop(denoise, noise, 128, sampler="dpmpp-2m-sde", eta=eta,
                               generator=torch.Generator().manual_seed(5))
        assert out.std().item() == pytest.approx(sd, rel=0.015) and abs(out.mean().item()) < 0.02, eta
        assert (out - diff.sample_loop(denoise, noise, 128, sampler="dpmpp-2m")).abs().mean() > 0.05  # its own draws
    ancestral = diff.sample_loop(denoise, noise, 128, sampler="ddpm", generator=torch.Generator().manual_seed(5))
    assert ancestral.std().item() / sd == pytest.approx(0.96, abs=0.01)  # still too narrow
    # at the ravdess recipe's 16 steps (docs/generator.md quotes these): std / sd 0.71 ancestral, 1.09 the ODE,
    # 1.16 the SDE
    at_16 = {name: diff.sample_loop(denoise, noise, 16, sampler=name, eta=eta,
                                    generator=torch.Generator().manual_seed(5)).std().item() / sd
             for name, eta in (("ddpm", 1.0), ("dpmpp-2m", 0.0), ("dpmpp-2m-sde", 1.0))}
    assert at_16 == pytest.approx({"ddpm": 0.71, "dpmpp-2m": 1.09, "dpmpp-2m-sde": 1.16}, abs=0.02)


def test_step_formulas_by_hand() -> None:
    x, d, old = torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([0.4])
    s, s_next = torch.tensor(1.0), torch.tensor(0.5)
    # Euler (eta 0): x + (s_next - s)(x - D)/s
    assert ancestral_step(x, d, s, s_next, 0.0, None).item() == pytest.approx(2.0 + (0.5 - 1.0) * (2.0 - 0.5) / 1.0)
    # DPM-Solver++(2M): first step x' = (s'/s) x - (e^{-h} - 1) D, h = ln(s/s')
    h = math.log(2.0)
    assert dpmpp_2m_step(x, d, None, s, s_next, None).item() == pytest.approx(0.5 * 2.0 - (math.exp(-h) - 1) * 0.5)
    r = 0.5
    dd = (1 + 1 / (2 * r)) * 0.5 - 1 / (2 * r) * 0.4
    assert dpmpp_2m_step(x, d, old, s, s_next, torch.tensor(r * h)).item() == pytest.approx(
        0.5 * 2.0 - (math.exp(-h) - 1) * dd)
    assert dpmpp_2m_step(x, d, old, s, torch.tensor(0.0), torch.tensor(h)).item() == 0.5
    # DPM-Solver++(2M) SDE, eta 0.5: x' = (s'/s) e^{-eta h} x + (1 - e^{-(1+eta) h}) (D + (D - D_old) / (2r))
    #                                    + s' sqrt(1 - e^{-2 eta h}) z
    eta, z = 0.5, torch.randn(1, generator=torch.Generator().manual_seed(3)).item()
    by_hand = (0.5 * math.exp(-eta * h) * 2.0 + (1 - math.exp(-(1 + eta) * h)) * (0.5 + (0.5 - 0.4) / (2 * r))
               + 0.5 * math.sqrt(1 - math.exp(-2 * eta * h)) * z)
    step = dpmpp_2m_sde_step(x, d, old, s, s_next, torch.tensor(r * h), eta, torch.Generator().manual_seed(3))
    assert step.item() == pytest.approx(by_hand, rel=1e-6)
    assert dpmpp_2m_sde_step(x, d, old, s, torch.tensor(0.0), torch.tensor(h), eta, None).item() == 0.5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="parameterization"):
        PreconditionedDiffusion("eps", 0.5)
    with pytest.raises(ValueError, match="sigma_data"):
        PreconditionedDiffusion("edm", 0.0)
    with pytest.raises(ValueError, match="sampler"):
        PreconditionedDiffusion("edm", 0.5).sample_loop(lambda x, s: x, torch.zeros(1, 1, 1), 2, sampler="euler-a")
    with pytest.raises(ValueError, match="eta"):
        PreconditionedDiffusion("edm", 0.5).sample_loop(lambda x, s: x, torch.zeros(1, 1, 1), 2, sampler="ddim",
                                                        eta=-1.0)
