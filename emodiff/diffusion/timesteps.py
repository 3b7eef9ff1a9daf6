"""Timestep samplers for training: importance sampling of t with weights that keep the loss unbiased.

Draw t ~ p(t) and weight each example's loss by w(t) = 1 / (T p(t)); then E_p[w(t) L(t)] = (1/T) sum_t L(t), the
uniform average, whatever p is. IDDPM (section 3.3) picks p(t) proportional to sqrt(E[L_t^2]) to reduce the variance
of L_vlb. The samplers are plain objects: under DDP, gather (t, loss) from all ranks and call
``update_with_local_losses`` with the gathered tensors on every rank, so all ranks hold the same weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from emodiff.config import TimestepSampler
from emodiff.diffusion.gaussian import GaussianDiffusion


class ScheduleSampler:
    """A distribution over the T steps of ``diffusion``; subclasses give ``weights`` (positive, unnormalised)."""

    def __init__(self, diffusion: GaussianDiffusion) -> None:
        self.num_timesteps = diffusion.num_timesteps

    def weights(self) -> np.ndarray:
        """Unnormalised p(t), float64 [T]."""
        return np.ones(self.num_timesteps, dtype=np.float64)

    def sample(
        self, batch_size: int, device: torch.device | str, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """t ~ p(t) [B] long and importance weights 1 / (T p(t)) [B] float32, both on ``device``.

        The draw runs on the generator's device (CPU without one), so a CPU generator reproduces across devices.
        """
        w = self.weights()
        draw_on = generator.device if generator is not None else torch.device("cpu")
        p = torch.from_numpy(w / w.sum()).to(draw_on)
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        w = 1.0 / (self.num_timesteps * p[t])
        return t.to(device), w.to(device=device, dtype=torch.float32)

    def update_with_local_losses(self, t: Tensor, losses: Tensor) -> None:
        """Record per-example losses [B] at steps t [B]; the uniform sampler ignores them."""


class UniformSampler(ScheduleSampler):
    """p(t) = 1/T; every weight is 1."""


class LossSecondMomentResampler(ScheduleSampler):
    """p(t) proportional to sqrt(E[L_t^2]) over the last ``history_per_term`` losses at each t, mixed with
    ``uniform_prob`` of the uniform distribution so that no step starves; uniform until every t has a full history.
    """

    def __init__(self, diffusion: GaussianDiffusion, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        super().__init__(diffusion)
        if history_per_term < 1:
            raise ValueError(f"history_per_term must be >= 1, got {history_per_term!r}")
        if not 0.0 < uniform_prob <= 1.0:
            raise ValueError(f"uniform_prob must be in (0, 1], got {uniform_prob!r}")
        self.history_per_term, self.uniform_prob = history_per_term, uniform_prob
        self._loss_history = np.zeros((self.num_timesteps, history_per_term), dtype=np.float64)
        self._loss_counts = np.zeros(self.num_timesteps, dtype=np.int64)

    def weights(self) -> np.ndarray:
        if not self.warmed_up():
            return np.ones(self.num_timesteps, dtype=np.float64)
        w = np.sqrt(np.mean(self._loss_history**2, axis=-1))
        w = w / w.sum() if w.sum() > 0 else np.full(self.num_timesteps, 1.0 / self.num_timesteps)
        return w * (1.0 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def warmed_up(self) -> bool:
        """True once every step has ``history_per_term`` recorded losses."""
        return bool(np.all(self._loss_counts == self.history_per_term))

    def update_with_local_losses(self, t: Tensor, losses: Tensor) -> None:
        """Append each loss to its step's history, dropping the oldest once full; t [B] long, losses [B]."""
        steps = t.detach().cpu().long().tolist()
        values = losses.detach().cpu().double().tolist()
        if len(steps) != len(values):
            raise ValueError(f"got {len(steps)} timesteps but {len(values)} losses")
        for step, loss in zip(steps, values, strict=True):
            n = self._loss_counts[step]
            if n == self.history_per_term:
                self._loss_history[step, :-1] = self._loss_history[step, 1:]
                self._loss_history[step, -1] = loss
            else:
                self._loss_history[step, n] = loss
                self._loss_counts[step] = n + 1

    def state_dict(self) -> dict[str, Any]:
        """The loss history, for checkpoints (resuming keeps the learned p(t))."""
        return {"loss_history": self._loss_history.copy(), "loss_counts": self._loss_counts.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        history, counts = np.asarray(state["loss_history"]), np.asarray(state["loss_counts"])
        if history.shape != self._loss_history.shape or counts.shape != self._loss_counts.shape:
            raise ValueError(f"loss history of shape {history.shape} does not fit {self._loss_history.shape}")
        self._loss_history, self._loss_counts = history.astype(np.float64), counts.astype(np.int64)


def create_named_schedule_sampler(name: TimestepSampler, diffusion: GaussianDiffusion) -> ScheduleSampler:
    """The sampler ``DiffusionConfig.timestep_sampler`` names: "uniform" or "loss-second-moment"."""
    if name == "uniform":
        return UniformSampler(diffusion)
    if name == "loss-second-moment":
        return LossSecondMomentResampler(diffusion)
    raise ValueError(f"unknown timestep sampler {name!r}; expected one of: uniform, loss-second-moment")
