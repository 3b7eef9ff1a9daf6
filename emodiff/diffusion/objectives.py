"""What a diffusion training step computes, per parameterisation, behind one small interface.

``eps`` is the paper's IDDPM (discrete steps, hybrid loss, a timestep sampler with state);
``v`` and ``edm`` are the preconditioned continuous-sigma process of
emodiff/diffusion/preconditioned.py. The training loop (emodiff/train.py) calls only
``losses``, ``after_step``, ``val_loss`` and ``state_dict`` / ``load_state_dict``; the denoiser
comes from :func:`build_denoiser`; the diffusion generator family (emodiff/generators/diffusion.py) holds both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from emodiff.config import Recipe, check_diffusion_model
from emodiff.diffusion import LossSecondMomentResampler, create_diffusion, create_named_schedule_sampler
from emodiff.diffusion.denoiser import Denoiser
from emodiff.diffusion.preconditioned import PreconditionedDiffusion
from emodiff.diffusion.unet import UNet1d
from emodiff.diffusion.wiener import BlockWiener
from emodiff.errors import EmodiffError

Forward = Callable[..., Tensor]
VAL_SIGMAS = (0.01, 0.05, 0.2, 0.5, 1.0, 3.0)  # noise levels of the continuous validation loss


def build_denoiser(recipe: Recipe, n_speakers: int) -> torch.nn.Module:
    """The recipe's denoiser: the paper's flat stack (eps) or the U-Net (v, edm); other pairs are refused."""
    check_diffusion_model(recipe.diffusion, recipe.denoiser, recipe.train)
    try:
        if recipe.denoiser.kind == "flat":
            return Denoiser(recipe.denoiser, learn_sigma=recipe.diffusion.learn_sigma)
        return UNet1d(recipe.denoiser, n_speakers)
    except ValueError as err:
        raise EmodiffError(f"recipe: {err}") from None


class IddpmObjective:
    """The paper's hybrid loss at importance-sampled steps t (emodiff/diffusion/gaussian.py)."""

    def __init__(self, recipe: Recipe) -> None:
        self.diffusion = create_diffusion(recipe.diffusion)
        self.sampler = create_named_schedule_sampler(recipe.diffusion.timestep_sampler, self.diffusion)

    def losses(self, forward: Forward, x0: Tensor, kwargs: dict[str, Tensor], gen: torch.Generator,
               device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
        t, weights = self.sampler.sample(len(x0), device, generator=gen)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        out = self.diffusion.training_losses(forward, x0, t, model_kwargs=kwargs, noise=noise)
        out["t"] = t
        return (out["loss"] * weights).mean(), out

    def after_step(self, out: dict[str, Tensor], world: int) -> None:
        if not isinstance(self.sampler, LossSecondMomentResampler):
            return
        t, losses = out["t"], out["loss"].detach()
        if world > 1:  # every rank keeps the same loss history: gather all ranks' (t, loss)
            ts, ls = [torch.zeros_like(t) for _ in range(world)], [torch.zeros_like(losses) for _ in range(world)]
            dist.all_gather(ts, t)
            dist.all_gather(ls, losses)
            t, losses = torch.cat(ts), torch.cat(ls)
        self.sampler.update_with_local_losses(t, losses)

    @torch.no_grad()
    def val_loss(self, forward: Forward, batches: list[tuple[Tensor, dict[str, Tensor]]], seed: int) -> float:
        """Mean hybrid loss over the held-out batches at fixed, seeded timesteps and noise."""
        gen = torch.Generator().manual_seed(seed + 12345)
        total, count = 0.0, 0
        for x0, kwargs in batches:
            t = torch.randint(self.diffusion.num_timesteps, (len(x0),), generator=gen).to(x0.device)
            noise = torch.randn(x0.shape, generator=gen).to(x0.device)
            total += self.diffusion.training_losses(forward, x0, t, model_kwargs=kwargs,
                                                    noise=noise)["loss"].sum().item()
            count += len(x0)
        return total / max(count, 1)

    def state_dict(self) -> dict[str, Any] | None:
        return self.sampler.state_dict() if hasattr(self.sampler, "state_dict") else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state)


class PreconditionedObjective:
    """lambda(sigma) ||D(x_0 + sigma n; sigma) - x_0||^2 at sigma from the parameterisation's distribution."""

    def __init__(self, recipe: Recipe, sigma_data: float, wiener: BlockWiener | None = None) -> None:
        self.diffusion = PreconditionedDiffusion.from_config(recipe.diffusion, sigma_data, wiener)

    def losses(self, forward: Forward, x0: Tensor, kwargs: dict[str, Tensor], gen: torch.Generator,
               device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
        sigma = self.diffusion.sample_sigma(len(x0), gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        out = self.diffusion.training_losses(forward, x0, sigma, noise=noise, model_kwargs=kwargs)
        return out["loss"].mean(), out

    def after_step(self, out: dict[str, Tensor], world: int) -> None:
        """Nothing: the noise-level distribution is fixed."""

    @torch.no_grad()
    def val_loss(self, forward: Forward, batches: list[tuple[Tensor, dict[str, Tensor]]], seed: int) -> float:
        """Mean x_0 error ||D - x_0||^2 per element over the held-out batches at the fixed levels VAL_SIGMAS."""
        gen = torch.Generator().manual_seed(seed + 12345)
        total, count = 0.0, 0
        for x0, kwargs in batches:
            for s in VAL_SIGMAS:
                noise = torch.randn(x0.shape, generator=gen).to(x0.device)
                sigma = torch.full((len(x0),), s, device=x0.device)
                total += self.diffusion.training_losses(forward, x0, sigma, noise=noise,
                                                        model_kwargs=kwargs)["mse"].sum().item()
                count += len(x0)
        return total / max(count, 1)

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: Any) -> None:
        """Nothing to restore."""


def make_objective(recipe: Recipe, sigma_data: float,
                   wiener: BlockWiener | None = None) -> IddpmObjective | PreconditionedObjective:
    if recipe.diffusion.parameterization == "eps":
        return IddpmObjective(recipe)
    return PreconditionedObjective(recipe, sigma_data, wiener)


def load_wiener(state: dict[str, Any]) -> BlockWiener | None:
    """The Wiener filter a checkpoint carries, if its run fitted one."""
    return BlockWiener.from_state(state["wiener"]) if state.get("wiener") is not None else None
