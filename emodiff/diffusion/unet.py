"""A 1-D U-Net over mel frames, conditioned in every block on emotion, speaker, text and noise level.

    x [B, 80, F] -> Conv1d -> levels 0..L-1: ``blocks_per_level`` ResBlocks (+ attention where asked),
                   then a stride-2 Conv1d (frames F -> F/2 -> F/4 ...)
                -> middle: ResBlock, attention, ResBlock at F / 2^(L-1) frames
                -> levels L-1..0: ResBlocks on [h, skip] concatenated, nearest x2 up-sampling
                -> GroupNorm + SiLU + zero-initialised Conv1d (in float32) -> [B, 80, F]

Why this shape: emotion lives in 1-3 s of prosody (energy and pitch contours, rate), which a flat
stack of kernel-3 convolutions does not see (about 9 frames and one attention layer in the demo).
Two halvings take 256 frames to 64 at a quarter of the cost per layer, and attention there spans the
whole 3 s segment. Conditioning cannot be ignored: the embedding

    e = MLP(sinusoid(c_noise)) + E_emotion[k] + E_speaker[s] + Linear(masked mean of the text tokens)

scales and shifts the normalised activations of every ResBlock (FiLM, improved-diffusion's
``use_scale_shift_norm``), and the attention layers attend over the frames and the text tokens
together (keys and values = frames ++ projected tokens). ``uncond`` [B] swaps emotion and speaker
for learned null embeddings and masks every text token: the unconditional model that classifier-free
guidance needs, trained by condition dropout. ``voice`` [B, S] (sampling only) replaces E_speaker[s]
by a voice that is none of the training speakers, c @ E_speaker[:S] (emodiff/voices.py); an
unconditional row keeps the null embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emodiff.config import DenoiserConfig, check_unet_denoiser
from emodiff.diffusion.denoiser import timestep_embedding
from emodiff.voices import voice_embedding

N_EMOTIONS = 4
NOISE_SCALE = 250.0  # c_noise = ln(sigma)/4 lies in about [-1.6, 1.1]; spread it over the sinusoid's periods


def validate_unet(cfg: DenoiserConfig) -> None:
    """Raise ValueError naming the first U-Net setting of ``cfg`` that cannot build a UNet1d.

    The checks live with the recipe (:func:`emodiff.config.check_unet_denoiser`), which runs them when a
    U-Net ``DenoiserConfig`` is made; a flat config handed to UNet1d is checked here again.
    """
    check_unet_denoiser(cfg)


def frames_multiple(cfg: DenoiserConfig) -> int:
    """Frame counts the U-Net takes must be multiples of this (one halving between levels)."""
    return 2 ** (len(cfg.channel_mult) - 1)


class FiLMBlock(nn.Module):
    """x W_skip + Conv(Drop(SiLU(GN(Conv(SiLU(GN(x)))) (1 + scale) + shift))), (scale, shift) = Linear(SiLU(e))."""

    def __init__(self, cin: int, cout: int, emb_dim: int, k: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv1d(cin, cout, k, padding=k // 2)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2, self.drop = nn.GroupNorm(groups, cout), nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(cout, cout, k, padding=k // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv1d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class FrameTextAttention(nn.Module):
    """Residual attention: queries from the frames, keys and values from the frames and the text tokens.

    x [B, C, F], text [B, L, C] (already projected), text_mask [B, L] bool -> [B, C, F]. Frames are
    always valid keys, so a row with no text token still attends somewhere.
    """

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.q, self.kv = nn.Linear(channels, channels), nn.Linear(channels, 2 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        b, c, f = x.shape
        h = self.norm(x).transpose(1, 2)  # [B, F, C]
        ctx = torch.cat([h, text.to(h.dtype)], dim=1)  # [B, F + L, C]
        q = self.q(h).view(b, f, self.heads, c // self.heads).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        keys = torch.cat([torch.ones(b, f, dtype=torch.bool, device=x.device), text_mask], dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :])
        return x + self.proj(out.transpose(1, 2).reshape(b, f, c)).transpose(1, 2)


class UNet1d(nn.Module):
    """F_theta(x [B, 80, F], c_noise [B], tokens [B, L, D], mask [B, L], emotion [B], speaker [B], uncond [B],
    voice [B, S]) -> [B, 80, F]. ``n_speakers`` rows of speaker embedding (the run's training speakers) plus a
    null row."""

    def __init__(self, cfg: DenoiserConfig, n_speakers: int) -> None:
        super().__init__()
        validate_unet(cfg)
        if n_speakers < 1:
            raise ValueError(f"a U-Net denoiser needs at least one training speaker, got {n_speakers}")
        self.cfg, self.n_speakers = cfg, n_speakers
        e, k, g = cfg.emb_dim, cfg.kernel_size, cfg.norm_groups
        self.noise = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.emotion = nn.Embedding(N_EMOTIONS + 1, e)  # last row: null (unconditional)
        self.speaker = nn.Embedding(n_speakers + 1, e)
        self.text_in = nn.Linear(cfg.text_dim, e)
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.text_proj = nn.ModuleDict({str(i): nn.Linear(e, widths[i]) for i in cfg.attention_levels})
        mid_level = len(widths) - 1
        self.text_proj["mid"] = nn.Linear(e, widths[-1])

        self.inp = nn.Conv1d(cfg.mel_channels, widths[0], k, padding=k // 2)
        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleDict(), nn.ModuleList()
        skips, c = [widths[0]], widths[0]
        for i, w in enumerate(widths):
            blocks = nn.ModuleList()
            for j in range(cfg.blocks_per_level):
                blocks.append(FiLMBlock(c, w, e, k, g, cfg.dropout))
                c = w
                if i in cfg.attention_levels:
                    self.down_attn[f"{i}_{j}"] = FrameTextAttention(c, cfg.heads, g)
                skips.append(c)
            self.down.append(blocks)
            if i < mid_level:
                self.downsample.append(nn.Conv1d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = FiLMBlock(c, c, e, k, g, cfg.dropout)
        self.mid_attn = FrameTextAttention(c, cfg.heads, g)
        self.mid2 = FiLMBlock(c, c, e, k, g, cfg.dropout)
        self.up, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleDict(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for j in range(cfg.blocks_per_level + 1):
                blocks.append(FiLMBlock(c + skips.pop(), w, e, k, g, cfg.dropout))
                c = w
                if i in cfg.attention_levels:
                    self.up_attn[f"{i}_{j}"] = FrameTextAttention(c, cfg.heads, g)
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Conv1d(c, c, k, padding=k // 2))
        self.out_norm = nn.GroupNorm(g, c)
        self.out = nn.Conv1d(c, cfg.mel_channels, k, padding=k // 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                emotion: torch.Tensor, speaker: torch.Tensor, uncond: torch.Tensor | None = None,
                voice: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if x.dim() != 3 or x.shape[1] != cfg.mel_channels or x.shape[2] % frames_multiple(cfg):
            raise ValueError(f"x must be [B, {cfg.mel_channels}, F] with F a multiple of {frames_multiple(cfg)}, "
                             f"got {list(x.shape)}")
        mask = mask.bool()
        emotion, speaker = emotion.long(), speaker.long()
        if uncond is not None:
            uncond = uncond.bool()
            emotion = torch.where(uncond, torch.full_like(emotion, N_EMOTIONS), emotion)
            speaker = torch.where(uncond, torch.full_like(speaker, self.n_speakers), speaker)
            mask = mask & ~uncond[:, None]
        text = self.text_in(tokens.to(self.text_in.weight.dtype))  # [B, L, E]
        text = text.masked_fill(~mask[..., None], 0.0)
        pooled = text.sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(text.dtype)
        emb = (self.noise(timestep_embedding(c_noise * NOISE_SCALE, cfg.emb_dim).to(text.dtype))
               + self.emotion(emotion) + self._speaker(speaker, voice, uncond) + pooled)
        ctx = {key: proj(text) for key, proj in self.text_proj.items()}

        h = self.inp(x)
        skips = [h]
        for i, blocks in enumerate(self.down):
            for j, block in enumerate(blocks):
                h = block(h, emb)
                if f"{i}_{j}" in self.down_attn:
                    h = self.down_attn[f"{i}_{j}"](h, ctx[str(i)], mask)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), ctx["mid"], mask), emb)
        for n, blocks in enumerate(self.up):
            i = len(self.up) - 1 - n
            for j, block in enumerate(blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
                if f"{i}_{j}" in self.up_attn:
                    h = self.up_attn[f"{i}_{j}"](h, ctx[str(i)], mask)
            if i > 0:
                h = self.upsample[n](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        # The output layer in float32 even under bf16 autocast: its output is scaled by c_out and added
        # to c_skip x, and bf16's 8 bits of mantissa would show as pixel noise at low noise levels.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.out(F.silu(self.out_norm(h.float())))

    def _speaker(self, speaker: torch.Tensor, voice: torch.Tensor | None, uncond: torch.Tensor | None
                 ) -> torch.Tensor:
        """E_speaker[speaker] [B, e] (``speaker`` already the null row where unconditional), or the voices'
        c @ E_speaker[:S] where ``voice`` [B, S] is given, with the null row kept for unconditional rows:
        guidance's D_u must be the model trained by condition dropout, whatever voice D_c speaks in."""
        if voice is None:
            return self.speaker(speaker)
        voiced = voice_embedding(voice, self.speaker.weight[: self.n_speakers])
        if uncond is None:
            return voiced
        return torch.where(uncond[:, None], self.speaker.weight[self.n_speakers].float(), voiced)
