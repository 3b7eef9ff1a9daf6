"""Exponential moving average of a model's weights: what every generator family samples with."""

from __future__ import annotations

import copy

import torch


class EMA:
    """Exponential moving average of a model's parameters: ema = d * ema + (1 - d) * theta.

    With ``warmup`` the decay at update k (k = 0, 1, ...) is min(decay, (1 + k) / (10 + k)), so the
    average forgets the random initial weights within the first hundred steps instead of after
    1 / (1 - decay) steps: at decay 0.999 and 400 steps, a plain EMA still holds 67 % of them.
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = False):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.updates += 1
