"""The best linear denoiser of the data: a Wiener filter over blocks of frames, fitted once on training mels.

For x_0 ~ N(mu, S) over blocks of ``block`` consecutive frames (d = C x block values, non-overlapping) and
x = x_0 + sigma n, the posterior mean is

    W_sigma(x) = mu + S (S + sigma^2 I)^{-1} (x - mu) = mu + V diag(l / (l + sigma^2)) V^T (x - mu),  S = V diag(l) V^T,

and its expected squared error per element is e(sigma) = (1/d) sum_i l_i sigma^2 / (l_i + sigma^2).

Two uses. ``benchmarks/generator.py`` sets a trained network's error beside e(sigma): a network worse than
it has not learnt what is linear. And ``diffusion.skip: wiener`` builds it into the denoiser (see
preconditioned.py): EDM's c_skip x is exactly this filter for white data of variance sd^2, with
c_out^2 = sd^2 sigma^2 / (sd^2 + sigma^2) its error; with the data's own covariance, the skip path
already denoises as well as any linear model from the first step, and the network learns only what
remains, scaled to unit variance by c_out = sqrt(e(sigma)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BlockWiener:
    """mean [d], eigval [d] (>= 0), eigvec [d, d] of the block covariance, float64; d = channels x block."""

    mean: Tensor
    eigval: Tensor
    eigvec: Tensor
    block: int

    @classmethod
    def fit(cls, x0: Tensor, block: int = 4) -> BlockWiener:
        """Moments of the non-overlapping ``block``-frame blocks of x0 [N, C, F] (F a multiple of ``block``)."""
        blocks = to_blocks(x0.double(), block)
        mean = blocks.mean(dim=0)
        centred = blocks - mean
        cov = centred.T @ centred / max(len(blocks) - 1, 1)
        val, vec = torch.linalg.eigh((cov + cov.T) / 2)
        return cls(mean, val.clamp(min=0.0), vec, block)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """W_sigma(x) for x [B, C, F] and sigma [B] (or a scalar); the same shape and dtype back."""
        b, c, f = x.shape
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)
        sigma = sigma.expand(b) if sigma.numel() == 1 else sigma
        per_block = sigma.repeat_interleave(f // self.block)[:, None]  # [B * F / block, 1]
        val, vec, mean = (t.to(x.device) for t in (self.eigval, self.eigvec, self.mean))
        shrink = val[None, :] / (val[None, :] + per_block**2)
        y = to_blocks(x.double(), self.block) - mean
        out = mean + ((y @ vec) * shrink) @ vec.T
        return from_blocks(out, b, c, f, self.block).to(x.dtype)

    def error(self, sigma: Tensor) -> Tensor:
        """e(sigma) [B] = (1/d) sum_i l_i sigma^2 / (l_i + sigma^2), in sigma's dtype."""
        s2 = sigma.double().reshape(-1, 1) ** 2
        val = self.eigval.to(sigma.device)[None, :]
        return (val * s2 / (val + s2)).mean(dim=1).to(sigma.dtype)

    def state_dict(self) -> dict[str, Tensor | int]:
        return {"mean": self.mean, "eigval": self.eigval, "eigvec": self.eigvec, "block": self.block}

    @classmethod
    def from_state(cls, state: dict) -> BlockWiener:
        return cls(state["mean"].double(), state["eigval"].double(), state["eigvec"].double(), int(state["block"]))


def to_blocks(x: Tensor, block: int) -> Tensor:
    """[N, C, F] -> [N * F / block, C * block] (frames of one block side by side, bin-major)."""
    n, c, f = x.shape
    if f % block:
        raise ValueError(f"frames {f} are not a multiple of the Wiener block of {block}")
    return x.reshape(n, c, f // block, block).permute(0, 2, 1, 3).reshape(n * (f // block), c * block)


def from_blocks(y: Tensor, n: int, c: int, f: int, block: int) -> Tensor:
    """The inverse of :func:`to_blocks`."""
    return y.reshape(n, f // block, c, block).permute(0, 2, 1, 3).reshape(n, c, f)
