"""The conditional GAN's two networks over mel segments x [B, M, F] (M mel bins as channels, F frames).

The generator is 1-D convolutional over frames, as Sahu et al. (2018)'s and Latif et al. (2020)'s
feature GANs for emotion are fully connected or convolutional over one axis: noise z [B, Z, F / 2^L]
(one latent vector per 2^L frames, so one network draws any multiple of 2^L frames) is upsampled L
times by 2 (nearest, then convolution) in residual blocks whose group norms are modulated by the
condition (FiLM, Perez et al. 2018; the conditional batch norm of BigGAN, Brock et al. 2019, without
batch statistics, so that drawing a batch of one equals drawing it in a batch of 64).

The discriminator is the projection discriminator of Miyato & Koyama (2018):
D(x, y) = psi(h(x)) + <embed(y), h(x)>, with h a stack of strided residual convolutions summed over
frames and y the emotion, the speaker and optionally the text. Spectral normalisation (Miyato et
al. 2018) bounds every layer's Lipschitz constant.

Conditions (emodiff/batches.py): emotion [B] in 0..3, speaker [B] in 0..S (S: an unseen speaker),
tokens [B, L, D] with mask [B, L]. A mixed condition (the mixup GAN) is a convex combination of two
embeddings, which the projection term takes as it takes one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from emodiff.voices import voice_embedding

N_EMOTIONS = 4


def pooled_text(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of the valid token vectors: [B, L, D], [B, L] -> [B, D]."""
    m = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


class ConditionEmbedding(nn.Module):
    """e(y) = E_emotion[emotion] + E_speaker[speaker] (+ W pooled_text): [B] -> [B, emb_dim].

    For mixed conditions, ``emotion_weights`` [B, 4] and ``speaker_weights`` [B, S + 1] (rows summing to 1)
    replace the indices and ``pooled`` [B, D] the tokens: e = weights @ E, the same map, linear in the
    one-hot code. In sampling, ``voice`` [B, S] replaces the speaker alone by a voice that is none of the
    training speakers, c @ E_speaker[:S] (emodiff/voices.py).
    """

    def __init__(self, n_speakers: int, emb_dim: int, text_dim: int | None) -> None:
        super().__init__()
        self.emotion = nn.Embedding(N_EMOTIONS, emb_dim)
        self.speaker = nn.Embedding(n_speakers + 1, emb_dim)  # + 1: a speaker the run never saw
        self.text = nn.Linear(text_dim, emb_dim) if text_dim else None

    def forward(self, cond: dict[str, Tensor]) -> Tensor:
        if "emotion_weights" in cond:
            e = cond["emotion_weights"] @ self.emotion.weight + cond["speaker_weights"] @ self.speaker.weight
        elif "voice" in cond:
            e = self.emotion(cond["emotion"]) + voice_embedding(cond["voice"], self.speaker.weight[:-1])
        else:
            e = self.emotion(cond["emotion"]) + self.speaker(cond["speaker"])
        if self.text is not None:
            pooled = cond["pooled"] if "pooled" in cond else pooled_text(cond["tokens"], cond["mask"])
            e = e + self.text(pooled)
        return e


def _groups(channels: int) -> int:
    return next(g for g in (16, 8, 4, 2, 1) if channels % g == 0)


class FiLMBlock(nn.Module):
    """h -> h + conv(act(film(norm(conv(act(film(norm(h)))))))), upsampled x2 first when ``up``:
    film(n) = n (1 + gamma(e)) + beta(e), the condition e scaling and shifting every channel."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, kernel: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in, affine=False)
        self.film1 = nn.Linear(emb_dim, 2 * c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out, affine=False)
        self.film2 = nn.Linear(emb_dim, 2 * c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    @staticmethod
    def _film(h: Tensor, film: nn.Linear, e: Tensor) -> Tensor:
        gamma, beta = film(e).unsqueeze(-1).chunk(2, dim=1)
        return h * (1 + gamma) + beta

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        if self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        r = self.conv1(F.leaky_relu(self._film(self.norm1(h), self.film1, e), 0.2))
        r = self.conv2(F.leaky_relu(self._film(self.norm2(r), self.film2, e), 0.2))
        return self.skip(h) + r


def generator_widths(channels: int, levels: int) -> list[int]:
    """Channels before the first upsampling and after each: ``channels`` twice, then halved per level (finer
    levels have more frames to pay for), never below min(64, ``channels``)."""
    return [max(min(64, channels), channels >> max(0, i - 1)) for i in range(levels + 1)]


class Generator(nn.Module):
    """G(z, y): z [B, Z, F / 2^L] and conditions -> mels [B, M, F] (in the normaliser's units)."""

    def __init__(self, mel_channels: int, latent_dim: int, channels: int, levels: int, emb_dim: int,
                 kernel: int, n_speakers: int, text_dim: int | None) -> None:
        super().__init__()
        self.latent_dim, self.levels = latent_dim, levels
        widths = generator_widths(channels, levels)
        self.cond = ConditionEmbedding(n_speakers, emb_dim, text_dim)
        self.inp = nn.Conv1d(latent_dim + emb_dim, widths[0], kernel, padding=kernel // 2)
        self.blocks = nn.ModuleList(
            [FiLMBlock(widths[0], widths[0], emb_dim, kernel, up=False)]
            + [FiLMBlock(widths[i], widths[i + 1], emb_dim, kernel, up=True) for i in range(levels)])
        self.out_norm = nn.GroupNorm(_groups(widths[-1]), widths[-1])
        self.out = nn.Conv1d(widths[-1], mel_channels, kernel, padding=kernel // 2)

    def latent_shape(self, frames: int) -> tuple[int, int]:
        """The shape of one example's z for ``frames`` frames."""
        return self.latent_dim, frames // 2 ** self.levels

    def forward(self, z: Tensor, cond: dict[str, Tensor]) -> Tensor:
        e = self.cond(cond)
        h = self.inp(torch.cat([z, e.unsqueeze(-1).expand(-1, -1, z.shape[-1])], 1))
        for block in self.blocks:
            h = block(h, e)
        return self.out(F.leaky_relu(self.out_norm(h), 0.2))


class _DownBlock(nn.Module):
    """h -> avgpool(h + conv(act(conv(act(h))))) with a 1x1 skip: a residual discriminator block (SNGAN)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, down: bool, sn: bool) -> None:
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.conv1 = wrap(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2))
        self.conv2 = wrap(nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2))
        self.skip = wrap(nn.Conv1d(c_in, c_out, 1))
        self.down = down

    def forward(self, h: Tensor) -> Tensor:
        r = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(h, 0.2)), 0.2))
        out = self.skip(h) + r
        return F.avg_pool1d(out, 2) if self.down else out


class Discriminator(nn.Module):
    """D(x, y) = psi(h) + <e(y), h>, h = sum over frames of the features: x [B, M, F] -> [B]."""

    def __init__(self, mel_channels: int, channels: int, levels: int, emb_dim: int, kernel: int,
                 n_speakers: int, text_dim: int | None, sn: bool = True) -> None:
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        widths = [min(8 * channels, channels << i) for i in range(levels + 1)]  # doubled per level, at most 8x
        self.inp = wrap(nn.Conv1d(mel_channels, widths[0], kernel, padding=kernel // 2))
        self.blocks = nn.ModuleList([_DownBlock(widths[i], widths[i + 1], kernel, True, sn) for i in range(levels)]
                                    + [_DownBlock(widths[-1], widths[-1], kernel, False, sn)])
        self.psi = wrap(nn.Linear(widths[-1], 1))
        self.to_features = wrap(nn.Linear(emb_dim, widths[-1]))  # the projection's embedding, in h's space
        self.cond = ConditionEmbedding(n_speakers, emb_dim, text_dim)

    def forward(self, x: Tensor, cond: dict[str, Tensor]) -> Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        h = F.leaky_relu(h, 0.2).sum(-1)  # [B, C]; a sum, so every frame's evidence counts (SNGAN)
        return self.psi(h).squeeze(-1) + (self.to_features(self.cond(cond)) * h).sum(-1)
