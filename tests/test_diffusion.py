"""Diffusion maths against independent computations: every formula is written again here, plainly, in float64
numpy (or checked by Monte-Carlo), never read back from the tables under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emodiff.config import DiffusionConfig
from emodiff.diffusion import (
    GaussianDiffusion,
    LossSecondMomentResampler,
    SpacedDiffusion,
    UniformSampler,
    cosine_betas,
    create_diffusion,
    create_named_schedule_sampler,
    linear_betas,
    normal_kl,
    respaced_betas,
    space_timesteps,
)

MEL = (2, 80, 16)  # [B, mel bands, frames]


def plain_cosine_alpha_bar(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """alpha_bar of the cosine schedule, step by step in Python floats (Nichol & Dhariwal eq. 17)."""
    f = [math.cos(((i / T) + s) / (1 + s) * math.pi / 2) ** 2 for i in range(T + 1)]
    out, running = [], 1.0
    for i in range(T):
        running *= 1.0 - min(1.0 - f[i + 1] / f[i], max_beta)
        out.append(running)
    return np.array(out)


ABAR_4000 = plain_cosine_alpha_bar(4000)


def plain_schedule(abar: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step quantities of the process whose cumulative alphas are ``abar`` (respaced or not)."""
    prev = np.append(1.0, abar[:-1])
    alpha = abar / prev
    return {"abar": abar, "prev": prev, "alpha": alpha, "beta": 1.0 - alpha}


# -- schedules ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [50, 1000, 4000])
def test_cosine_betas_match_closed_form_and_increase(T):
    betas = cosine_betas(T)
    f = [math.cos(((i / T) + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(T + 1)]
    expected = [min(1 - f[i + 1] / f[i], 0.999) for i in range(T)]
    assert betas.dtype == np.float64 and betas.shape == (T,)
    np.testing.assert_allclose(betas, expected, rtol=1e-12)
    assert np.all(np.diff(betas) >= 0) and betas[0] > 0
    assert betas[-1] == 0.999  # the clip: f(T) = 0 would make the last beta exactly 1


def test_linear_betas_scale_with_T():
    np.testing.assert_allclose(linear_betas(1000)[[0, -1]], [1e-4, 0.02])
    np.testing.assert_allclose(linear_betas(4000)[[0, -1]], [2.5e-5, 0.005])


def test_golden_numbers():
    golden = [4.128422482196914e-05, 0.003155691441585007, 0.999]
    np.testing.assert_allclose(cosine_betas(1000)[[0, 500, 999]], golden, rtol=1e-12)
    kept = space_timesteps(4000, 10)
    assert kept == [0, 444, 889, 1333, 1777, 2222, 2666, 3110, 3555, 3999]
    golden_respaced = [9.865818813681315e-06, 0.03397774861716596, 0.09259019670408875, 0.15276931014255923,
                       0.21901988518289284, 0.29743040117578323, 0.3954795644053969, 0.5321497814719656,
                       0.742924150518797, 0.9999999948764644]
    np.testing.assert_allclose(respaced_betas(cosine_betas(4000), kept), golden_respaced, rtol=1e-10)
    # ...and the literals agree with the plain formula, so they were not just copied from the code.
    np.testing.assert_allclose(plain_schedule(ABAR_4000[kept])["beta"], golden_respaced, rtol=1e-9)


def test_space_timesteps():
    kept = space_timesteps(4000, 100)
    assert len(set(kept)) == 100 and kept == sorted(kept) and kept[0] == 0 and kept[-1] == 3999
    assert set(np.diff(kept)) <= {40, 41}  # evenly strided: 3999 / 99 = 40.39...
    assert space_timesteps(10, 10) == list(range(10))
    assert space_timesteps(4000, 2) == [0, 3999]
    assert space_timesteps(4000, 1) == [3999]  # one step must start from noise


@pytest.mark.parametrize("bad", [0, -3, 4001])
def test_space_timesteps_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match=rf"1\.\.4000.*got {bad}"):
        space_timesteps(4000, bad)
    with pytest.raises(ValueError, match="integer"):
        space_timesteps(4000, 2.5)  # type: ignore[arg-type]


def test_respaced_alpha_bar_equals_base_at_kept_steps():
    kept = space_timesteps(4000, 37)
    new = respaced_betas(cosine_betas(4000), kept)
    np.testing.assert_allclose(np.cumprod(1 - new), ABAR_4000[kept], rtol=1e-9)
    with pytest.raises(ValueError, match="increase"):
        respaced_betas(cosine_betas(10), [3, 3, 5])


# -- forward process and posterior ------------------------------------------------------------------------------

def test_q_sample_moments_by_monte_carlo():
    d = GaussianDiffusion(cosine_betas(4000))
    steps = [7, 2500]
    reps = 80  # 2 steps x 80 repeats x 80 x 16 = 204,800 samples, 102,400 per step
    x0 = torch.full((2 * reps, 80, 16), 0.5, dtype=torch.float64)
    t = torch.tensor(steps * reps)
    x_t = d.q_sample(x0, t, noise=torch.randn(x0.shape, generator=torch.Generator().manual_seed(0),
                                              dtype=torch.float64))
    for i, k in enumerate(steps):
        got = x_t[i::2]
        mean, var = math.sqrt(ABAR_4000[k]) * 0.5, 1.0 - ABAR_4000[k]
        n = got.numel()
        assert abs(got.mean().item() - mean) < 4 * math.sqrt(var / n)
        assert abs(got.var().item() / var - 1) < 4 * math.sqrt(2 / n)
    m, v, logv = d.q_mean_variance(x0[:2], torch.tensor(steps))
    np.testing.assert_allclose(v.flatten(), 1 - ABAR_4000[steps], rtol=1e-12)
    np.testing.assert_allclose(logv.flatten(), np.log(1 - ABAR_4000[steps]), rtol=1e-12)
    np.testing.assert_allclose(m[:, 0, 0], 0.5 * np.sqrt(ABAR_4000[steps]), rtol=1e-12)


@pytest.mark.parametrize("respaced", [False, True])
def test_posterior_is_bayes_of_two_gaussians(respaced):
    kept = space_timesteps(4000, 25) if respaced else list(range(4000))
    d = SpacedDiffusion(cosine_betas(4000), kept) if respaced else GaussianDiffusion(cosine_betas(4000))
    p = plain_schedule(ABAR_4000[kept])
    g = torch.Generator().manual_seed(1)
    x0, x_t = (torch.randn(MEL, generator=g, dtype=torch.float64) for _ in range(2))
    for i in [0, 1, 12, len(kept) - 1]:
        t = torch.full((MEL[0],), i)
        mean, var, logvar = d.q_posterior_mean_variance(x0, x_t, t)
        # prior x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}); likelihood x_t ~ N(sqrt(alpha_t) x_{t-1}, beta_t).
        a, b, prev = p["alpha"][i], p["beta"][i], p["prev"][i]
        if i == 0:  # prior is the point x0
            exp_var, exp_mean = 0.0, x0.numpy()
        else:
            exp_var = 1.0 / (1.0 / (1.0 - prev) + a / b)
            exp_mean = exp_var * (math.sqrt(prev) * x0.numpy() / (1 - prev) + math.sqrt(a) * x_t.numpy() / b)
        np.testing.assert_allclose(mean.numpy(), exp_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(var.flatten(), exp_var, rtol=1e-9, atol=1e-300)
        # the log-variance at t = 0 is clipped to that of t = 1
        var1 = p["beta"][1] * (1 - p["prev"][1]) / (1 - p["abar"][1])
        np.testing.assert_allclose(logvar.flatten(), math.log(exp_var if i else var1), rtol=1e-9)


def test_posterior_coefficients_at_last_respaced_step_keep_float64_precision():
    """The coefficients are gathered from float64 tables and only then cast; building the schedule in float32
    (as a float32 table would) loses ~3e-3 of coef2 = (1 - abar_prev) sqrt(alpha) / (1 - abar) at the last step,
    where alpha = abar / abar_prev ~ 4e-6 is 1 - beta with beta ~ 1."""
    kept = space_timesteps(4000, 250)
    d = SpacedDiffusion(cosine_betas(4000), kept)
    p = plain_schedule(ABAR_4000[kept])
    i = len(kept) - 1
    exact = {
        "posterior_mean_coef1": p["beta"][i] * math.sqrt(p["prev"][i]) / (1 - p["abar"][i]),
        "posterior_mean_coef2": (1 - p["prev"][i]) * math.sqrt(p["alpha"][i]) / (1 - p["abar"][i]),
        "posterior_variance": p["beta"][i] * (1 - p["prev"][i]) / (1 - p["abar"][i]),
    }
    like = torch.zeros(1, 80, 16, dtype=torch.float32)
    for name, value in exact.items():
        got = d._extract(name, torch.tensor([i]), like)
        assert got.dtype == torch.float32
        assert abs(got.item() / value - 1) < 1e-6, name
    # The reference-style float32 schedule, for contrast.
    b32 = d.betas.astype(np.float32)
    a32 = (np.float32(1) - b32).astype(np.float32)
    abar32 = np.cumprod(a32, dtype=np.float32)
    coef2_32 = (np.float32(1) - abar32[i - 1]) * np.sqrt(a32[i]) / (np.float32(1) - abar32[i])
    assert abs(coef2_32 / exact["posterior_mean_coef2"] - 1) > 1e-3


def test_normal_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(2)
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(1.7)
    x = m1 + math.exp(0.5 * lv1) * torch.randn(400_000, generator=g, dtype=torch.float64)

    def logpdf(x, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 / math.exp(lv))

    samples = logpdf(x, m1, lv1) - logpdf(x, m2, lv2)
    kl = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, lv1, m2, lv2)))
    assert abs(kl.item() - samples.mean().item()) < 4 * samples.std().item() / math.sqrt(len(samples))


# -- the model's p(x_{t-1} | x_t) ------------------------------------------------------------------------------

class FakeModel:
    """Returns fixed outputs and records the timesteps it was called with."""

    def __init__(self, output: torch.Tensor) -> None:
        self.output, self.seen = output, []

    def __call__(self, x, t, **kwargs):
        self.seen.append((t.clone(), kwargs))
        return self.output


def test_p_mean_variance_by_hand_and_model_sees_original_steps():
    kept = space_timesteps(4000, 20)
    d = SpacedDiffusion(cosine_betas(4000), kept)
    p = plain_schedule(ABAR_4000[kept])
    g = torch.Generator().manual_seed(3)
    x_t, eps = (torch.randn(MEL, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.rand(MEL, generator=g, dtype=torch.float64) * 2 - 1
    model = FakeModel(torch.cat([eps, v], dim=1))
    i = torch.tensor([5, 19])
    out = d.p_mean_variance(model, x_t, i, model_kwargs={"tokens": "T"}, clip_denoised=False)
    assert model.seen[0][0].tolist() == [kept[5], kept[19]] and model.seen[0][1] == {"tokens": "T"}
    for row, k in enumerate(i.tolist()):
        abar, prev, beta = p["abar"][k], p["prev"][k], p["beta"][k]
        x0 = (x_t[row].numpy() - math.sqrt(1 - abar) * eps[row].numpy()) / math.sqrt(abar)
        beta_tilde = beta * (1 - prev) / (1 - abar)
        frac = (v[row].numpy() + 1) / 2
        logvar = frac * math.log(beta) + (1 - frac) * math.log(beta_tilde)
        mean = (beta * math.sqrt(prev) * x0 + (1 - prev) * math.sqrt(1 - beta) * x_t[row].numpy()) / (1 - abar)
        np.testing.assert_allclose(out["pred_xstart"][row].numpy(), x0, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(out["log_variance"][row].numpy(), logvar, rtol=1e-9)
        np.testing.assert_allclose(out["mean"][row].numpy(), mean, rtol=1e-9, atol=1e-9)
    clipped = d.p_mean_variance(model, x_t, i)["pred_xstart"]
    assert clipped.abs().max() <= 1.0 and clipped.abs().max() == 1.0


def test_fixed_variance_and_output_shape_check():
    d = GaussianDiffusion(cosine_betas(100), learn_sigma=False)
    x = torch.zeros(MEL)
    out = d.p_mean_variance(FakeModel(torch.zeros(MEL)), x, torch.tensor([0, 50]))
    p = plain_schedule(plain_cosine_alpha_bar(100))
    beta_tilde = p["beta"] * (1 - p["prev"]) / (1 - p["abar"])
    np.testing.assert_allclose(out["variance"][:, 0, 0], [beta_tilde[1], beta_tilde[50]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"returned shape \(2, 160, 16\), expected \(2, 80, 16\)"):
        d.p_mean_variance(FakeModel(torch.zeros(2, 160, 16)), x, torch.tensor([0, 50]))


# -- training losses -------------------------------------------------------------------------------------------

def test_training_losses_with_an_oracle_model():
    """eps_theta = the true noise and v = -1 (variance = beta_tilde, the true posterior's): mse = 0, vb = 0 at t > 0,
    and at t = 0 vb is the Gaussian decoder NLL of x_0 in bits per dim."""
    d = GaussianDiffusion(cosine_betas(4000), lambda_vb=0.001)
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(MEL, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(MEL, generator=g, dtype=torch.float64)
    model = FakeModel(torch.cat([noise, -torch.ones(MEL, dtype=torch.float64)], dim=1))
    for t in ([1, 3999], [10, 2000]):
        out = d.training_losses(model, x0, torch.tensor(t), noise=noise)
        assert set(out) == {"loss", "mse", "vb"} and all(v.shape == (2,) for v in out.values())
        assert torch.all(out["mse"] < 1e-20)
        assert torch.all(out["vb"].abs() < 1e-9)
    out = d.training_losses(model, x0, torch.tensor([0, 0]), noise=noise)
    p = plain_schedule(ABAR_4000)
    var = p["beta"][1] * (1 - p["prev"][1]) / (1 - p["abar"][1])  # v = -1: the clipped beta_tilde
    x_t = math.sqrt(p["abar"][0]) * x0.numpy() + math.sqrt(1 - p["abar"][0]) * noise.numpy()
    mean = x0.numpy()  # coef1 = 1, coef2 = 0 at t = 0, and the predicted x_0 is exact
    assert np.allclose(mean, (x_t - math.sqrt(1 - p["abar"][0]) * noise.numpy()) / math.sqrt(p["abar"][0]))
    nll_bits = 0.5 * (math.log(2 * math.pi) + math.log(var)) / math.log(2)
    np.testing.assert_allclose(out["vb"], [nll_bits] * 2, rtol=1e-9)
    np.testing.assert_allclose(out["loss"], out["mse"] + 0.001 * 4000 * out["vb"], rtol=1e-12)


def test_vb_trains_only_the_variance():
    d = GaussianDiffusion(cosine_betas(1000))
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(MEL, generator=g) * 2 - 1
    eps = torch.randn(MEL, generator=g).requires_grad_()
    v = (torch.rand(MEL, generator=g) * 2 - 1).requires_grad_()
    model = FakeModel(torch.cat([eps, v], dim=1))
    out = d.training_losses(model, x0, torch.tensor([0, 600]))
    eps_grad, v_grad = torch.autograd.grad(out["vb"].sum(), [eps, v], allow_unused=True, materialize_grads=True)
    assert torch.all(eps_grad == 0) and v_grad.abs().sum() > 0
    eps_grad, v_grad = torch.autograd.grad(out["mse"].sum(), [eps, v], allow_unused=True, materialize_grads=True)
    assert eps_grad.abs().sum() > 0 and torch.all(v_grad == 0)


def test_fixed_variance_loss_is_the_mse():
    d = GaussianDiffusion(cosine_betas(100), learn_sigma=False)
    out = d.training_losses(FakeModel(torch.zeros(MEL)), torch.zeros(MEL), torch.tensor([0, 99]))
    assert torch.equal(out["loss"], out["mse"]) and out["vb"].shape == (2,) and not out["vb"].requires_grad


# -- timestep samplers -----------------------------------------------------------------------------------------

def test_uniform_sampler():
    t, w = UniformSampler(GaussianDiffusion(cosine_betas(50))).sample(1000, "cpu", torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() >= 0 and t.max() < 50 and torch.all(w == 1)


def test_loss_second_moment_resampler_is_unbiased_and_warms_up():
    T = 20
    sampler = LossSecondMomentResampler(GaussianDiffusion(cosine_betas(T)), history_per_term=4, uniform_prob=0.1)
    loss_at = np.linspace(0.1, 3.0, T) ** 2  # a loss that varies over t
    g = torch.Generator().manual_seed(6)
    for _ in range(4):
        _, w = sampler.sample(64, "cpu", g)
        assert torch.all(w == 1) and not sampler.warmed_up()  # uniform until every t has its full history
        sampler.update_with_local_losses(torch.arange(T), torch.from_numpy(loss_at))
    assert sampler.warmed_up()
    p = sampler.weights() / sampler.weights().sum()
    rms = loss_at / loss_at.sum()  # constant history, so sqrt(E[L^2]) = L
    np.testing.assert_allclose(p, 0.9 * rms + 0.1 / T, rtol=1e-12)
    # E_p[w L] = sum_t p_t L_t / (T p_t) = the uniform mean, exactly and by sampling.
    assert math.isclose(float(np.sum(p * loss_at / (T * p))), loss_at.mean(), rel_tol=1e-12)
    t, w = sampler.sample(200_000, "cpu", g)
    estimate = (w.double() * torch.from_numpy(loss_at)[t]).mean().item()
    assert abs(estimate / loss_at.mean() - 1) < 0.01
    clone = LossSecondMomentResampler(GaussianDiffusion(cosine_betas(T)), history_per_term=4, uniform_prob=0.1)
    clone.load_state_dict(sampler.state_dict())
    np.testing.assert_array_equal(clone.weights(), sampler.weights())


def test_named_samplers_and_bad_names():
    d = GaussianDiffusion(cosine_betas(10))
    assert isinstance(create_named_schedule_sampler("uniform", d), UniformSampler)
    assert isinstance(create_named_schedule_sampler("loss-second-moment", d), LossSecondMomentResampler)
    with pytest.raises(ValueError, match="'lossy'.*uniform, loss-second-moment"):
        create_named_schedule_sampler("lossy", d)  # type: ignore[arg-type]


# -- sampling ---------------------------------------------------------------------------------------------------

MU, SIGMA, S = 0.2, 0.25, 50  # toy data x_0 ~ N(MU, SIGMA^2) in every mel bin


def gaussian_oracle(kept: list[int], learned_variance: bool):
    """eps_theta(x, k) = -sqrt(1 - abar_k) * score of the diffused data N(sqrt(abar_k) MU, abar_k SIGMA^2 + 1 - abar_k),
    at ORIGINAL step k; with ``learned_variance``, also the v that gives the exact reverse variance
    Var(x_{i-1} | x_i) = beta_tilde_i + coef1_i^2 Var(x_0 | x_i) of the respaced process."""
    p = plain_schedule(ABAR_4000[kept])
    index = {k: i for i, k in enumerate(kept)}

    def model(x, t):
        k = t.tolist()
        a = torch.tensor(ABAR_4000[k], dtype=x.dtype).view(-1, 1, 1)
        var = a * SIGMA**2 + 1 - a
        eps = (1 - a).sqrt() * (x - a.sqrt() * MU) / var
        if not learned_variance:
            return eps
        i = [index[j] for j in k]
        beta, prev, abar = p["beta"][i], p["prev"][i], p["abar"][i]
        beta_tilde = beta * (1 - prev) / (1 - abar)
        coef1 = beta * np.sqrt(prev) / (1 - abar)
        exact = beta_tilde + coef1**2 * SIGMA**2 * (1 - abar) / (abar * SIGMA**2 + 1 - abar)
        low = np.log(np.where(np.array(i) == 0, p["beta"][1] * (1 - p["prev"][1]) / (1 - p["abar"][1]), beta_tilde))
        frac = (np.log(exact) - low) / (np.log(beta) - low)
        v = torch.tensor(2 * frac - 1, dtype=x.dtype).view(-1, 1, 1).expand_as(x)
        return torch.cat([eps, v], dim=1)

    return model


def analytic_std(kept: list[int], sampler: str) -> float:
    """Std of the samples that the strided sampler with exact eps and variance beta_tilde (ddpm) or none (ddim, eta=0)
    produces: each step is linear in x, so Var propagates in closed form. For narrow data it is below SIGMA: big
    strides with a fixed small variance (or none) lose the Var(x_0 | x_t) term."""
    p = plain_schedule(ABAR_4000[kept])
    var = 1.0
    for i in reversed(range(len(kept))):
        a, prev, beta = p["abar"][i], p["prev"][i], p["beta"][i]
        v = a * SIGMA**2 + 1 - a
        if sampler == "ddim":
            gain = (math.sqrt(prev * a) * SIGMA**2 + math.sqrt((1 - prev) * (1 - a))) / v
            var = gain**2 * var
        else:
            coef1, coef2 = beta * math.sqrt(prev) / (1 - a), (1 - prev) * math.sqrt(1 - beta) / (1 - a)
            gain = coef1 * SIGMA**2 * math.sqrt(a) / v + coef2
            var = gain**2 * var + (beta * (1 - prev) / (1 - a) if i > 0 else 0.0)
    return math.sqrt(var)


def _draw(d: GaussianDiffusion, model, sampler: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if sampler == "ddim":
        return d.ddim_sample_loop(model, (8, 80, 16), eta=0.0, generator=g, clip_denoised=False)
    return d.p_sample_loop(model, (8, 80, 16), generator=g, clip_denoised=False)


def test_ancestral_sampling_with_learned_variance_recovers_the_data():
    kept = space_timesteps(4000, S)
    d = SpacedDiffusion(cosine_betas(4000), kept, learn_sigma=True)
    x = _draw(d, gaussian_oracle(kept, learned_variance=True), "ddpm")
    assert abs(x.mean().item() - MU) < 0.01
    assert abs(x.std().item() / SIGMA - 1) < 0.03


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_strided_samplers_match_their_analytic_moments(sampler):
    kept = space_timesteps(4000, S)
    d = SpacedDiffusion(cosine_betas(4000), kept, learn_sigma=False)
    x = _draw(d, gaussian_oracle(kept, learned_variance=False), sampler)
    expected = analytic_std(kept, sampler)
    assert abs(x.mean().item() - MU) < 0.01
    assert abs(x.std().item() / expected - 1) < 0.03
    assert 0.85 < expected / SIGMA < 0.97  # the known shrinkage of S = 50 fixed-variance / deterministic sampling


def test_samplers_are_reproducible_and_report_progress():
    kept = space_timesteps(4000, 8)
    d = SpacedDiffusion(cosine_betas(4000), kept, learn_sigma=False)
    model = gaussian_oracle(kept, learned_variance=False)
    ticks = []
    a = d.p_sample_loop(model, MEL, generator=torch.Generator().manual_seed(9), progress=lambda: ticks.append(1))
    b = d.p_sample_loop(model, MEL, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and len(ticks) == 8 and a.abs().max() < 10
    noise = torch.randn(MEL, generator=torch.Generator().manual_seed(1))
    c = d.ddim_sample_loop(model, MEL, noise=noise)
    assert torch.equal(c, d.ddim_sample_loop(model, MEL, noise=noise))  # eta = 0 is deterministic
    with pytest.raises(ValueError, match="eta must be in"):
        d.ddim_sample_loop(model, MEL, eta=1.5)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_ddim_noise_is_eta_squared_beta_tilde(eta):
    """sigma_t(eta)^2 = eta^2 (1 - abar_{t-1}) / (1 - abar_t) (1 - abar_t / abar_{t-1}) (Song et al. eq. 16)."""
    kept = space_timesteps(4000, 12)
    d = SpacedDiffusion(cosine_betas(4000), kept, learn_sigma=False)
    p = plain_schedule(ABAR_4000[kept])
    x = torch.randn(MEL, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model, t, g = FakeModel(torch.zeros(MEL, dtype=torch.float64)), torch.full((2,), 6), torch.Generator()
    draws = torch.stack([d.ddim_sample(model, x, t, eta=eta, generator=g)["sample"] for _ in range(200)])
    sigma2 = eta**2 * (1 - p["prev"][6]) / (1 - p["abar"][6]) * (1 - p["abar"][6] / p["prev"][6])
    np.testing.assert_allclose(draws.var(0).mean().item(), sigma2, rtol=0.05)


@pytest.mark.parametrize("step", ["p_sample", "ddim_sample"])
def test_the_last_step_adds_no_noise(step):
    d = SpacedDiffusion(cosine_betas(4000), space_timesteps(4000, 12), learn_sigma=False)
    x, model = torch.randn(MEL), FakeModel(torch.randn(MEL))
    kwargs = {"eta": 1.0} if step == "ddim_sample" else {}

    def run(i: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return getattr(d, step)(model, x, torch.full((2,), i), generator=g, **kwargs)["sample"]

    assert torch.equal(run(0, 1), run(0, 2)) and not torch.equal(run(3, 1), run(3, 2))
    np.testing.assert_allclose(run(0, 1), d.p_mean_variance(model, x, torch.zeros(2, dtype=torch.long))["mean"],
                               rtol=1e-6)


# -- construction ---------------------------------------------------------------------------------------------

def test_create_diffusion():
    full = create_diffusion(DiffusionConfig(steps=1000, schedule="linear", learn_sigma=False))
    assert full.num_timesteps == 1000 and not full.learn_sigma
    np.testing.assert_array_equal(full.betas, linear_betas(1000))
    spaced = create_diffusion(DiffusionConfig(steps=4000), respace=100)
    assert isinstance(spaced, SpacedDiffusion) and spaced.num_timesteps == 100
    assert spaced.timestep_map.tolist() == space_timesteps(4000, 100)
    with pytest.raises(ValueError, match="'sigmoid'; expected one of: cosine, linear"):
        create_diffusion(DiffusionConfig(schedule="sigmoid"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lambda_vb"):
        GaussianDiffusion(cosine_betas(10), lambda_vb=-1.0)


def test_centering_round_trip_and_symmetric_bounds():
    from emodiff.diffusion.normalize import MelNormalizer

    x = torch.rand(6, 80, 16) * 2 - 1
    x[:, :40] = -1.0  # mostly silent bins, as in real mels
    norm = MelNormalizer.fit(x)
    torch.testing.assert_close(norm.mean, x.double().mean(dim=(0, 2)).float())
    y = norm.forward(x)
    torch.testing.assert_close(y.mean(dim=(0, 2)), torch.zeros(80), atol=1e-6, rtol=0)
    torch.testing.assert_close(norm.inverse(y), x)
    lo, hi = norm.bounds()
    assert torch.equal(lo, -hi)  # clipped noise averages to the data's mean, not above it
    assert (y >= lo).all() and (y <= hi).all()  # real data is never clipped
    assert torch.equal(MelNormalizer.from_state(norm.state_dict()).mean, norm.mean)


def test_clip_bounds_apply_per_channel():
    from emodiff.diffusion import create_diffusion

    cfg = DiffusionConfig(steps=20)
    bounds = (torch.full((1, 2, 1), -0.5), torch.full((1, 2, 1), 0.5))
    d = create_diffusion(cfg, clip_bounds=bounds)

    def wild(x, t, **kw):  # eps that puts x_0 far outside any bound
        return torch.cat([-50 * torch.ones_like(x), torch.zeros_like(x)], 1)

    out = d.p_mean_variance(wild, torch.zeros(3, 2, 4), torch.full((3,), 10))
    assert out["pred_xstart"].max() == pytest.approx(0.5)
