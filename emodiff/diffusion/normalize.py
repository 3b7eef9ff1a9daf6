"""Centre the data the diffusion model sees on its per-mel-bin mean: y = x - mu_c.

Why: at the noisiest steps x_t carries almost nothing of x_0, and an eps-predicting model
cannot tell x_0 there: its prediction x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar), with
sqrt(abar) near 0, is noise, which sampling clips to the data range. Clipped noise averages to
the middle of that range; stored mels sit far below it (mostly the -1 of silence; the mean is
-0.83 on RAVDESS), so uncentred samples drift to a mid-grey mel with no silence in it. After
centring, the data's mean is 0, and the clip range is made symmetric about it per bin,
[-(1 + |mu_c|), 1 + |mu_c|] (which contains [-1 - mu_c, 1 - mu_c], so real data is never
clipped): clipped noise then averages to the data's mean, where a sample should start. (Image
models meet the same trouble with non-centred data; Grad-TTS starts its reverse process at a
data-dependent mean for the same reason.) The means come from the training set and travel in
the checkpoint. Only the mean moves: scaling each bin to unit variance would also magnify the
small differences between emotions, which changes what the model must learn at which noise
level (see docs/generator.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MelNormalizer:
    """mean [C] float32 per mel bin; all zeros leaves the data as it is."""

    mean: torch.Tensor

    @classmethod
    def identity(cls, channels: int) -> MelNormalizer:
        return cls(torch.zeros(channels))

    @classmethod
    def fit(cls, mel: object, max_segments: int = 4096, seed: int = 0) -> MelNormalizer:
        """The mean per bin over all frames of up to ``max_segments`` segments of ``mel`` [N, C, F]."""
        n = len(mel)  # type: ignore[arg-type]
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_segments), replace=False))
        x = mel[torch.as_tensor(rows)].double()  # type: ignore[index]
        return cls(x.mean(dim=(0, 2)).float())

    def _shaped(self, like: torch.Tensor) -> torch.Tensor:
        return self.mean.to(like.device, like.dtype)[None, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x - mu; x [B, C, F]."""
        return x - self._shaped(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """x = y + mu; y [B, C, F]."""
        return y + self._shaped(y)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Where predicted x_0 is clipped, [1, C, 1] each: symmetric about 0, containing [-1, 1] - mu."""
        half = (1.0 + self.mean.abs())[None, :, None]
        return -half, half

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> MelNormalizer:
        return cls(state["mean"].float())
