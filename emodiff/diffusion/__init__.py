"""Gaussian diffusion for mels: schedules and respacing, the IDDPM process, timestep samplers.

Training: ``diffusion = create_diffusion(cfg)``; ``t, w = sampler.sample(B, device)``;
``losses = diffusion.training_losses(model, x0, t, model_kwargs={...})``; ``(losses["loss"] * w).mean()``.
Sampling: ``create_diffusion(cfg, respace=S).p_sample_loop(model, (B, 80, F), model_kwargs={...})``.
The denoiser (emodiff.diffusion.denoiser) is imported from its own module.
"""

from emodiff.diffusion.gaussian import (
    GaussianDiffusion,
    SpacedDiffusion,
    create_diffusion,
    gaussian_log_likelihood,
    normal_kl,
)
from emodiff.diffusion.schedule import cosine_betas, linear_betas, respaced_betas, space_timesteps
from emodiff.diffusion.timesteps import (
    LossSecondMomentResampler,
    ScheduleSampler,
    UniformSampler,
    create_named_schedule_sampler,
)

__all__ = [
    "GaussianDiffusion",
    "LossSecondMomentResampler",
    "ScheduleSampler",
    "SpacedDiffusion",
    "UniformSampler",
    "cosine_betas",
    "create_diffusion",
    "create_named_schedule_sampler",
    "gaussian_log_likelihood",
    "linear_betas",
    "normal_kl",
    "respaced_betas",
    "space_timesteps",
]
