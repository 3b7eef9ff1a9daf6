"""Diagnostics of a trained generator that look inside it rather than at its loss (benchmarks/generator.py).

1. Denoising error per noise level, E||D(x_0 + sigma n; sigma) - x_0||^2 per element, beside two
   baselines at the same sigma: the closed-form Gaussian denoiser fitted on the training mels (what
   a linear model can do: emodiff/diffusion/wiener.py) and the noisy input itself (sigma^2). A
   network worse than the Gaussian denoiser at some level has not learnt what is linear there; one
   no better than the input at low noise will draw pixel noise.
2. Condition sensitivity: the same error at a middle noise level with the true emotion and with each
   other emotion. A model that ignores emotion shows no gap.
3. Sample statistics against real: std, share of silent frames, frame-to-frame change and
   correlation, spectral flatness; noise-like samples differ from speech in every one.

Everything works in the diffusion's coordinates: mels centred per bin (MelNormalizer), x = x_0 + sigma n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from emodiff.audio import LOG_MAX, LOG_MIN
from emodiff.config import Recipe
from emodiff.diffusion import create_diffusion
from emodiff.diffusion.preconditioned import PreconditionedDiffusion
from emodiff.diffusion.wiener import BlockWiener
from emodiff.silence import counted_frames

Denoise = Callable[[Tensor, Tensor], Tensor]  # D(x [B, C, F], sigma [B]) -> x_0 estimate
LEVELS = (0.01, 0.03, 0.1, 0.2, 0.4, 0.8, 1.6, 5.0)


@dataclass(frozen=True)
class LevelError:
    sigma: float
    model: float  # E||D - x_0||^2 per element
    gaussian: float  # the Wiener filter's (the Gaussian denoiser), measured on the same noisy inputs
    noisy: float  # ||x - x_0||^2 per element (~ sigma^2)


@torch.no_grad()
def error_per_level(denoise: Denoise, x0: Tensor, gaussian: BlockWiener, levels: tuple[float, ...] = LEVELS,
                    seed: int = 0) -> list[LevelError]:
    """At each sigma, the model's, the Gaussian denoiser's and the input's error on the same noise; x0 [N, C, F]."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for sigma in levels:
        noise = torch.randn(x0.shape, generator=gen)
        x = x0 + sigma * noise
        d = denoise(x, torch.full((len(x0),), float(sigma)))
        g = gaussian(x, torch.full((len(x0),), float(sigma))).float()
        out.append(LevelError(sigma, float(((d - x0) ** 2).mean()), float(((g - x0) ** 2).mean()),
                              float(((x - x0) ** 2).mean())))
    return out


@torch.no_grad()
def condition_gap(denoise_with: Callable[[Tensor, Tensor, Tensor], Tensor], x0: Tensor, emotion: Tensor,
                  sigma: float, seed: int = 0) -> tuple[float, float]:
    """(error with the true emotion, mean error with each of the other three) at ``sigma``, the same noise for
    all; ``denoise_with(x, sigma [B], emotion [B])``."""
    gen = torch.Generator().manual_seed(seed)
    x = x0 + sigma * torch.randn(x0.shape, generator=gen)
    s = torch.full((len(x0),), float(sigma))
    true = float(((denoise_with(x, s, emotion) - x0) ** 2).mean())
    other = [float(((denoise_with(x, s, (emotion + k) % 4) - x0) ** 2).mean()) for k in (1, 2, 3)]
    return true, float(np.mean(other))


def mel_statistics(mel: np.ndarray, frames: np.ndarray | None = None) -> dict[str, float]:
    """Statistics of mels [N, C, F] in the store's [-1, 1] scale, over valid frames (all when ``frames`` is None):

    - ``std``: of all values of the non-silent frames;
    - ``silent``: share of valid frames that are silent (no bin above SILENCE);
    - ``change``: mean |m[:, t+1] - m[:, t]| between consecutive non-silent frames;
    - ``correlation``: mean Pearson correlation of consecutive non-silent frames' 80-bin vectors;
    - ``flatness``: mean over non-silent frames of the geometric over the arithmetic mean of the mel power
      exp(2 m), m the log magnitude the [-1, 1] value stands for (audio.unscale_log_mel); 1 for a flat
      spectrum, far lower for speech.
    """
    mel = np.asarray(mel, np.float64)
    n, c, f = mel.shape
    valid = np.ones((n, f), bool) if frames is None else np.arange(f)[None, :] < np.asarray(frames)[:, None]
    loud = counted_frames(mel) & valid
    silent = float(1.0 - loud.sum() / max(valid.sum(), 1))
    if not loud.any():
        return {"std": math.nan, "silent": silent, "change": math.nan, "correlation": math.nan, "flatness": math.nan}
    values = np.moveaxis(mel, 1, 2)[loud]  # [K, C]
    pair = loud[:, 1:] & loud[:, :-1]
    a, b = np.moveaxis(mel[:, :, :-1], 1, 2)[pair], np.moveaxis(mel[:, :, 1:], 1, 2)[pair]
    change = float(np.abs(b - a).mean()) if len(a) else math.nan
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    denom = np.sqrt((ac**2).sum(1) * (bc**2).sum(1))
    varied = denom > 0  # a frame with one value in every bin has no correlation
    corr = float(np.mean((ac * bc).sum(1)[varied] / denom[varied])) if varied.any() else math.nan
    # Power relative to each frame's loudest bin (flatness is scale-free, and this keeps exp() in range).
    log_power = (values - values.max(axis=1, keepdims=True)) * (LOG_MAX - LOG_MIN)
    flatness = float(np.mean(np.exp(log_power.mean(1)) / np.exp(log_power).mean(1)))
    return {"std": float(values.std()), "silent": silent, "change": change, "correlation": corr,
            "flatness": flatness}


def sigma_denoiser(recipe: Recipe, state: dict, model: torch.nn.Module) -> Callable[..., Tensor]:
    """D(x, sigma [B], **conditions) in the coordinates x = x_0 + sigma n for a trained run of either family.

    v/edm models are D already. An IDDPM (eps) model is evaluated at the step t whose
    sigma_t = sqrt((1 - abar_t) / abar_t) is nearest: x_t = sqrt(abar_t) x,
    x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t).
    """
    if recipe.diffusion.parameterization != "eps":
        wiener = BlockWiener.from_state(state["wiener"]) if state.get("wiener") is not None else None
        diffusion = PreconditionedDiffusion.from_config(recipe.diffusion, float(state.get("sigma_data") or 1.0), wiener)
        return lambda x, sigma, **kw: diffusion.denoise(model, x, sigma, **kw)
    abar = torch.from_numpy(create_diffusion(recipe.diffusion).alphas_cumprod)
    sigmas = ((1 - abar) / abar).sqrt()

    def run(x: Tensor, sigma: Tensor, **kw: Tensor) -> Tensor:
        t = (sigmas[None, :] - sigma.double()[:, None]).abs().argmin(dim=1)
        a = abar[t].float().view(-1, 1, 1)
        x_t = a.sqrt() * x
        eps = model(x_t, t, tokens=kw["tokens"], mask=kw["mask"])[:, : x.shape[1]].float()  # text alone
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    return run
