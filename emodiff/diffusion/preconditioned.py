"""Diffusion over a continuous noise level sigma with a preconditioned denoiser: v-prediction and EDM.

Notation (Karras et al. 2022, "EDM"): data x_0 (mels centred per bin), noisy x = x_0 + sigma n,
n ~ N(0, I), shapes x [B, C, F] and sigma [B]. The network F_theta is wrapped as the denoiser

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F_theta(c_in(sigma) x, c_noise(sigma))     (EDM eq. 7)
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4                               (EDM table 1)

so the network's input and its training target have unit variance at every noise level, and at low
noise D is mostly the input itself (c_skip -> 1): the budget goes to what is left to learn, not to
copying x. sd is the data's standard deviation.

- ``edm``: sd measured on the training mels; ln(sigma) ~ N(p_mean, p_std^2) in training, which puts
  most of the steps at low and middle noise, where mels get their detail.
- ``v``: v-prediction (Salimans & Ho 2022) is the same wrapper with sd = 1: with alpha = 1 / sqrt(1 +
  sigma^2), x_t = alpha x, the v-model's x_0 = alpha x_t - sigma alpha v gives c_skip = 1 / (1 + sigma^2),
  c_out = -sigma / sqrt(1 + sigma^2) (the sign is absorbed by F = -v). Noise levels follow IDDPM's
  cosine schedule: u ~ U(0, 1), sigma = tan(pi/2 (u + s) / (1 + s)).

Loss (EDM eq. 8 with lambda = 1 / c_out^2): lambda(sigma) ||D(x; sigma) - x_0||^2 = ||F - F_target||^2,
F_target = (x_0 - c_skip x) / c_out: the v-loss for ``v``. Min-SNR-gamma (Hang et al. 2023), with
SNR = sd^2 / sigma^2, multiplies it by min(SNR, gamma) / (SNR + 1), i.e. weights the x_0 error by
min(SNR, gamma) / sd^2.

With a Wiener skip (``diffusion.skip: wiener``, emodiff/diffusion/wiener.py) the wrapper becomes
D = W_sigma(x) + c_out F with c_out = sqrt(e(sigma)), W_sigma the data's best linear denoiser and e(sigma)
its expected error: EDM's c_skip x and c_out are this for white data of variance sd^2.

Sampling integrates the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma over the noise
levels sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min, sigma_N = 0 of EDM eq. 5 (rho = 7):
Euler (``ddim``: deterministic DDIM is exactly this Euler step), ``ddpm`` (ancestral steps, DDIM
with eta = 1), ``heun`` (EDM algorithm 1) and ``dpmpp-2m`` (DPM-Solver++(2M), Lu et al. 2022); and
``dpmpp-2m-sde``, its stochastic form (the SDE solver of DPM-Solver++ with the same second-order
correction), whose ``eta`` in [0, 1] scales the noise it injects: 0 is ``dpmpp-2m`` exactly, 1 the
reverse SDE. With it, the sampler's stochasticity can be changed without a first-order solver's error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, get_args

import torch
from torch import Tensor

from emodiff.config import DiffusionConfig, Sampler
from emodiff.diffusion.wiener import BlockWiener

Denoise = Callable[[Tensor, Tensor], Tensor]  # D(x [B, C, F], sigma [B]) -> x_0 estimate [B, C, F]
COSINE_S = 0.008  # IDDPM's cosine offset
SAMPLERS = get_args(Sampler)


class PreconditionedDiffusion:
    """The process, loss and samplers above for one parameterisation ("v" or "edm") and data sigma."""

    def __init__(self, parameterization: str, sigma_data: float, p_mean: float = -1.2, p_std: float = 1.2,
                 min_snr_gamma: float = 0.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 rho: float = 7.0, wiener: BlockWiener | None = None) -> None:
        if parameterization not in ("v", "edm"):
            raise ValueError(f"parameterization must be v or edm, got {parameterization!r}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data!r}")
        self.parameterization = parameterization
        self.sigma_data = 1.0 if parameterization == "v" else float(sigma_data)
        self.p_mean, self.p_std, self.min_snr_gamma = p_mean, p_std, min_snr_gamma
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho
        self.wiener = wiener

    @classmethod
    def from_config(cls, cfg: DiffusionConfig, sigma_data: float,
                    wiener: BlockWiener | None = None) -> PreconditionedDiffusion:
        if cfg.skip == "wiener" and wiener is None:
            raise ValueError("diffusion.skip wiener needs the Wiener filter fitted on the training mels")
        return cls(cfg.parameterization, sigma_data, cfg.p_mean, cfg.p_std, cfg.min_snr_gamma, cfg.sigma_min,
                   cfg.sigma_max, cfg.rho, wiener if cfg.skip == "wiener" else None)

    # -- the wrapper ------------------------------------------------------------------------------------------
    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) of EDM table 1 for sigma [B], each [B] in sigma's dtype. With a Wiener
        skip, c_out = sqrt(e(sigma)) and c_skip is unused (the skip path is the filter)."""
        sd2 = self.sigma_data**2
        s2 = sigma**2
        c_skip = sd2 / (s2 + sd2)
        c_out = sigma * self.sigma_data / (s2 + sd2).sqrt() if self.wiener is None else self.wiener.error(sigma).sqrt()
        c_in = 1.0 / (s2 + sd2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4.0

    def skip(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The skip path: c_skip x, or W_sigma(x) with a Wiener skip; x [B, C, F], sigma [B]."""
        if self.wiener is not None:
            return self.wiener(x, sigma)
        return _b(self.scalings(sigma.to(x.dtype))[0], x) * x

    def denoise(self, model: Callable[..., Tensor], x: Tensor, sigma: Tensor, **model_kwargs: Any) -> Tensor:
        """D(x; sigma) = skip(x) + c_out F(c_in x, c_noise, **model_kwargs); x [B, C, F], sigma [B]."""
        _, c_out, c_in, c_noise = self.scalings(sigma.to(x.dtype))
        out = model(_b(c_in, x) * x, c_noise.reshape(-1), **model_kwargs).to(x.dtype)
        if out.shape != x.shape:
            raise ValueError(f"the model returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
        return self.skip(x, sigma) + _b(c_out, x) * out

    # -- training ---------------------------------------------------------------------------------------------
    def sample_sigma(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Training noise levels [n] float32 on the CPU: log-normal (edm) or the cosine schedule's (v)."""
        if self.parameterization == "edm":
            return (torch.randn(n, generator=generator) * self.p_std + self.p_mean).exp()
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        sigma = torch.tan(math.pi / 2 * (u + COSINE_S) / (1 + COSINE_S))
        return sigma.clamp(self.sigma_min, self.sigma_max).float()

    def snr(self, sigma: Tensor) -> Tensor:
        """SNR = sd^2 / sigma^2 [B] (the signal's variance over the noise's)."""
        return self.sigma_data**2 / sigma**2

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """Weight [B] of ||F - F_target||^2: 1, or min(SNR, gamma) / (SNR + 1) with min-SNR-gamma."""
        if self.min_snr_gamma <= 0:
            return torch.ones_like(sigma)
        snr = self.snr(sigma)
        return snr.clamp(max=self.min_snr_gamma) / (snr + 1.0)

    def training_losses(self, model: Callable[..., Tensor], x_start: Tensor, sigma: Tensor,
                        noise: Tensor | None = None, model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:
        """"loss" = w(sigma) ||F - F_target||^2 / dims and "mse" = ||D - x_0||^2 / dims, each [B].

        ||F - F_target||^2 = ||D - x_0||^2 / c_out^2 (F_target = (x_0 - skip(x)) / c_out), computed that way so
        that both come from one D.
        """
        work = torch.promote_types(x_start.dtype, torch.float32)
        x_start = x_start.to(work)
        sigma = sigma.to(device=x_start.device, dtype=work)
        noise = torch.randn_like(x_start) if noise is None else noise.to(x_start.device, work)
        x = x_start + _b(sigma, x_start) * noise
        d = self.denoise(model, x, sigma, **(model_kwargs or {}))
        mse = _mean_flat((d - x_start) ** 2)
        _, c_out, _, _ = self.scalings(sigma)
        return {"loss": self.loss_weight(sigma) * mse / c_out**2, "mse": mse}

    # -- sampling ---------------------------------------------------------------------------------------------
    def sigmas(self, steps: int) -> Tensor:
        """EDM eq. 5: sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < N; then 0. [N+1]."""
        if steps < 1:
            raise ValueError(f"sampling steps must be >= 1, got {steps!r}")
        i = torch.arange(steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        ramp = i / max(steps - 1, 1)
        return torch.cat([(hi + ramp * (lo - hi)) ** self.rho, torch.zeros(1, dtype=torch.float64)])

    def sample_loop(self, denoise: Denoise, noise: Tensor, steps: int, sampler: str = "dpmpp-2m", eta: float = 0.0,
                    generator: torch.Generator | None = None, progress: Callable[[], Any] | None = None) -> Tensor:
        """x_0 [B, C, F] from noise n [B, C, F] ~ N(0, I): x = sigma_max n, then ``steps`` solver steps.

        ``eta`` is DDIM's (0 deterministic, 1 ancestral) for ``ddim``, ``ddpm`` is eta = 1, and for
        ``dpmpp-2m-sde`` the share of the SDE's noise (0: ``dpmpp-2m``). Fresh noise for the stochastic steps
        comes from ``generator``.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of: {', '.join(SAMPLERS)}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta!r}")
        sigmas = self.sigmas(steps).to(noise.device)
        x = noise.double() * sigmas[0]
        old_d = None
        with torch.no_grad():
            for i in range(steps):
                s, s_next = sigmas[i], sigmas[i + 1]
                d = denoise(x.float(), s.float().expand(len(x))).double()
                if sampler == "heun" and s_next > 0:
                    x = self.heun_step(denoise, x, d, s, s_next)
                elif sampler in ("dpmpp-2m", "dpmpp-2m-sde"):
                    h_prev = None if old_d is None else (-sigmas[i].log()) - (-sigmas[i - 1].log())
                    x = (dpmpp_2m_step(x, d, old_d, s, s_next, h_prev) if sampler == "dpmpp-2m" else
                         dpmpp_2m_sde_step(x, d, old_d, s, s_next, h_prev, eta, generator))
                    old_d = d
                else:
                    x = ancestral_step(x, d, s, s_next, 1.0 if sampler == "ddpm" else eta, generator)
                if progress is not None:
                    progress()
        return x.float()

    @staticmethod
    def heun_step(denoise: Denoise, x: Tensor, d: Tensor, s: Tensor, s_next: Tensor) -> Tensor:
        """EDM algorithm 1 (no churn): Euler to s_next, then the trapezoid of the two slopes (x - D) / sigma."""
        slope = (x - d) / s
        x_euler = x + (s_next - s) * slope
        d_next = denoise(x_euler.float(), s_next.float().expand(len(x))).double()
        return x + (s_next - s) * 0.5 * (slope + (x_euler - d_next) / s_next)


def ancestral_step(x: Tensor, d: Tensor, s: Tensor, s_next: Tensor, eta: float,
                   generator: torch.Generator | None) -> Tensor:
    """DDIM in sigma form (Song et al. 2021 eq. 12 with x = x_t / sqrt(abar)):

    sigma_up = eta sqrt(s_next^2 (s^2 - s_next^2) / s^2), sigma_down = sqrt(s_next^2 - sigma_up^2),
    x' = D + sigma_down (x - D) / s + sigma_up z. eta = 0 is the Euler step of the ODE; eta = 1 draws
    from the DDPM posterior q(x_next | x, x_0 = D).
    """
    up = eta * (s_next**2 * (s**2 - s_next**2) / s**2).clamp(min=0).sqrt()
    down = (s_next**2 - up**2).clamp(min=0).sqrt()
    out = d + down * (x - d) / s
    if eta > 0 and s_next > 0:
        out = out + up * _fresh_noise(x, generator)
    return out


def dpmpp_2m_step(x: Tensor, d: Tensor, old_d: Tensor | None, s: Tensor, s_next: Tensor,
                  h_prev: Tensor | None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2) in lambda = -ln(sigma), h = lambda_next - lambda:

    x' = (s_next / s) x - (e^{-h} - 1) D', with D' = D on the first step and at s_next = 0 (where x' = D),
    else D' = (1 + 1/(2r)) D - 1/(2r) D_old, r = h_prev / h.
    """
    if s_next == 0:
        return d
    h = (-s_next.log()) - (-s.log())
    if old_d is None or h_prev is None:
        dd = d
    else:
        r = h_prev / h
        dd = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old_d
    return (s_next / s) * x - torch.expm1(-h) * dd


def dpmpp_2m_sde_step(x: Tensor, d: Tensor, old_d: Tensor | None, s: Tensor, s_next: Tensor,
                      h_prev: Tensor | None, eta: float, generator: torch.Generator | None) -> Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022, the SDE solver of DPM-Solver++, section 4) with its noise scaled by
    eta, in lambda = -ln(sigma), h = lambda_next - lambda:

        x' = (s_next / s) e^{-eta h} x + (1 - e^{-(1+eta) h}) (D + (D - D_old) / (2r)) + s_next sqrt(1 - e^{-2 eta h}) z

    r = h_prev / h, without the D_old term on the first step; x' = D at s_next = 0. Given x = x_0 + s n, the first
    two terms keep x_0 and the noise's variance is s_next^2 for every eta; eta = 0 is :func:`dpmpp_2m_step`.
    """
    if s_next == 0:
        return d
    h = (-s_next.log()) - (-s.log())
    dd = d if old_d is None or h_prev is None else d + (d - old_d) * h / (2 * h_prev)
    out = (s_next / s) * torch.exp(-eta * h) * x - torch.expm1(-(1 + eta) * h) * dd
    if eta > 0:
        out = out + s_next * (-torch.expm1(-2 * eta * h)).sqrt() * _fresh_noise(x, generator)
    return out


def _fresh_noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """z ~ N(0, I) shaped as x, drawn in float32 on the generator's device (so a CPU generator gives the same draws
    whatever device samples), then moved to x's device and dtype."""
    where = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=where, dtype=torch.float32).to(x.device, x.dtype)


def _b(values: Tensor, like: Tensor) -> Tensor:
    """[B] -> [B, 1, ..., 1] in like's dtype and device."""
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


def _mean_flat(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))
