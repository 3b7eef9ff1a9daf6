"""The text-conditioned 1-D convolutional denoiser of Malik et al. (Interspeech 2023).

    tokens [B, L, D] -> Linear + SiLU -> self-attention (key padding mask) -> masked mean
        -> Linear -> cond [B, cond_channels], repeated over the F frames
    cat(x_t [B, 80, F], cond) -> Conv1d -> blocks_before ResBlocks -> self-attention over frames
        -> blocks_after ResBlocks -> GroupNorm + SiLU -> zero-initialised Conv1d
        -> eps [B, 80, F], or cat(eps, v) [B, 160, F] with learned variance (IDDPM's learned range)

Every ResBlock receives the timestep embedding: a sinusoid of t (improved-diffusion's formula)
through a Linear-SiLU-Linear MLP, projected per block and ADDED after the block's GroupNorm.
Additive injection rather than FiLM keeps the paper size at about 98 M parameters (FiLM's
doubled projection would add 8.7 M), and one conv per block matches the paper's "8 res-blocks
of Conv1d 1536 filters"; two convs per block would give about 176 M.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emodiff.config import DenoiserConfig, check_flat_denoiser


def count_parameters(module: nn.Module) -> int:
    """Number of scalars in ``module``'s parameters (works on the 'meta' device)."""
    return sum(p.numel() for p in module.parameters())


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps, improved-diffusion's ``timestep_embedding`` formula.

    t [B] (long or float, may be fractional) -> [B, dim] float32: cos(t w_i) then sin(t w_i),
    w_i = max_period^(-i / half) for i < half = dim // 2, and a zero column when dim is odd.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


class SelfAttention(nn.Module):
    """Multi-head self-attention over a sequence, [B, N, C] -> [B, N, C] (no residual, no norm).

    ``key_mask`` [B, N] bool marks the keys that take part (True = real). The caller must leave
    at least one True per row: softmax over an all-masked row is NaN.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        # [B, N, 3C] -> three [B, heads, N, C / heads]
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TokenEncoder(nn.Module):
    """The paper's text path: tokens [B, L, D], mask [B, L] -> condition [B, cond_channels].

    It reads the token vectors that :class:`emodiff.text.TextEncoder` stored; it sees no text.

    Linear + SiLU to ``text_hidden``, self-attention over the tokens (residual + LayerNorm),
    mean over the real tokens, Linear to ``cond_channels``. A row without real tokens pools to
    zeros, so its condition is the output Linear's bias: the unconditional condition.
    """

    def __init__(self, text_dim: int, hidden: int, heads: int, cond_channels: int) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(text_dim, hidden), nn.SiLU())
        self.attn = SelfAttention(hidden, heads)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, cond_channels)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        # An all-padding row may attend to every (finite) key instead of none: no NaN from the
        # softmax, no data-dependent branch for torch.compile; pooling below still zeroes it.
        key_mask = mask | ~mask.any(dim=1, keepdim=True)
        # The store keeps tokens in float16; follow the weights (autocast then picks its own dtype).
        h = self.inp(tokens.to(self.out.weight.dtype))
        h = self.norm(h + self.attn(h, key_mask))
        # masked_fill, not a product with the mask, so that anything stored past `lengths`
        # (even inf) cannot leak into the sum.
        h = h.masked_fill(~mask[..., None], 0.0)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)
        return self.out(h.sum(dim=1) / count)


class ResBlock(nn.Module):
    """x + Conv1d(Dropout(SiLU(GroupNorm(x) + Linear(SiLU(temb))))), [B, C, F] -> [B, C, F]."""

    def __init__(self, channels: int, kernel_size: int, time_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, channels))
        self.drop = nn.Dropout(dropout)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) + self.time(temb)[:, :, None]
        return x + self.conv(self.drop(F.silu(h)))


class FrameAttention(nn.Module):
    """Residual self-attention over the F time frames, [B, C, F] -> [B, C, F]."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = SelfAttention(channels, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x).transpose(1, 2)).transpose(1, 2)


def validate(cfg: DenoiserConfig) -> None:
    """Raise ValueError naming the first setting of ``cfg`` that cannot build a Denoiser.

    The checks live with the recipe (:func:`emodiff.config.check_flat_denoiser`), which runs them when a
    flat ``DenoiserConfig`` is made; a U-Net config handed to the flat Denoiser is checked here again.
    """
    check_flat_denoiser(cfg)


class Denoiser(nn.Module):
    """eps_theta(x_t, t, text) and, with ``learn_sigma``, the variance interpolation v.

    The untrained model predicts exactly zero (the output conv starts at zero), so training
    starts from "no noise predicted" rather than from random outputs.
    """

    def __init__(self, cfg: DenoiserConfig, learn_sigma: bool) -> None:
        super().__init__()
        validate(cfg)
        self.cfg = cfg
        self.learn_sigma = learn_sigma
        self.out_channels = cfg.mel_channels * (2 if learn_sigma else 1)
        c, k, groups = cfg.channels, cfg.kernel_size, cfg.norm_groups
        self.text = TokenEncoder(cfg.text_dim, cfg.text_hidden, cfg.heads, cfg.cond_channels)
        d = cfg.time_dim
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.inp = nn.Conv1d(cfg.mel_channels + cfg.cond_channels, c, k, padding=k // 2)
        self.before = nn.ModuleList(
            ResBlock(c, k, cfg.time_dim, groups, cfg.dropout) for _ in range(cfg.blocks_before))
        self.attn = FrameAttention(c, cfg.heads, groups)
        self.after = nn.ModuleList(
            ResBlock(c, k, cfg.time_dim, groups, cfg.dropout) for _ in range(cfg.blocks_after))
        # The paper's "final Conv1d back to mel channels", straight from the residual stream: no
        # norm + SiLU head (improved-diffusion has one), so x_t has a linear path to eps. Most of
        # eps at high noise is x_t itself; a nonlinear head must learn that identity, which on a
        # toy task took several times as many steps (tests/test_conditioning.py).
        self.out = nn.Conv1d(c, self.out_channels, k, padding=k // 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @classmethod
    def from_config(cls, cfg: DenoiserConfig, learn_sigma: bool) -> Denoiser:
        """The same as ``Denoiser(cfg, learn_sigma)``; reads well next to ``DiffusionConfig``."""
        return cls(cfg, learn_sigma)

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x_t [B, 80, F], t [B] (indices of the original T-step process), tokens [B, L, D],
        mask [B, L] bool (True = real token) -> [B, 160, F] = cat(eps, v) with learn_sigma,
        else eps [B, 80, F]. Any F works; the text condition is recomputed on every call.
        """
        if x.dim() != 3 or x.shape[1] != self.cfg.mel_channels:
            raise ValueError(f"x must be [B, {self.cfg.mel_channels}, F], got {list(x.shape)}")
        if tokens.dim() != 3 or tokens.shape[-1] != self.cfg.text_dim:
            raise ValueError(f"tokens must be [B, L, {self.cfg.text_dim}], got {list(tokens.shape)}")
        temb = self.time(timestep_embedding(t, self.cfg.time_dim).to(self.inp.weight.dtype))
        cond = self.text(tokens, mask)
        h = torch.cat([x, cond[:, :, None].to(x.dtype).expand(-1, -1, x.shape[-1])], dim=1)
        h = self.inp(h)
        for block in self.before:
            h = block(h, temb)
        h = self.attn(h)
        for block in self.after:
            h = block(h, temb)
        return self.out(h)
