"""The CNN-BLSTM speech emotion classifier and its training-time augmentations (its config:
``emodiff.config.ClassifierConfig``, the recipe's classifier section).

Architecture (the paper's classifier row): three blocks Conv1d -> BatchNorm1d -> ReLU -> Dropout(0.1)
over time, a bidirectional LSTM over the valid frames, dropout 0.2, a masked mean over valid frames,
and a linear layer to the emotion classes. Inputs are store segments: mel [B, 80, F] scaled so that
-1.0 is silence (the padding value), with ``frames`` [B] the number of valid frames in each.

Options the paper does not have (off by default): ``segment_norm`` standardises each mel bin of each
segment over its own valid frames (:func:`segment_standardise`); ``normalize`` standardises each mel bin
by statistics of the training segments (buffers ``mel_mean``, ``mel_std``, set by
:meth:`CnnBlstm.set_normalization`), and ``time_pool`` = p max-pools the conv output over time by p
before the BLSTM, which then runs over ceil(frames / p) steps: the BLSTM is ~90 % of a CPU epoch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from emodiff.config import ClassifierConfig  # its recipe section, checked at load time; re-exported here

PAD_VALUE = -1.0  # silence in the store's mel scaling; padding frames and SpecAugment masks hold it


def valid_mask(frames: torch.Tensor, length: int) -> torch.Tensor:
    """Bool [B, length], True on the first ``frames[b]`` frames of row b."""
    return torch.arange(length, device=frames.device)[None, :] < frames[:, None]


def segment_standardise(mel: torch.Tensor, frames: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mel [B, C, F], frames [B] -> (mel - m) / max(s, eps) with m, s [B, C, 1] the mean and std of each bin of
    each segment over its valid frames; padding frames come out as they went in (the caller pins them)."""
    mask = valid_mask(frames, mel.shape[2])[:, None, :].to(mel.dtype)
    n = frames.to(mel.dtype)[:, None, None]
    mean = (mel * mask).sum(dim=2, keepdim=True) / n
    var = (((mel - mean) * mask) ** 2).sum(dim=2, keepdim=True) / n
    return torch.where(mask.bool(), (mel - mean) / var.sqrt().clamp_min(eps), mel)


class CnnBlstm(nn.Module):
    """Segment classifier: mel [B, C, F] and valid frames [B] -> logits [B, n_classes]."""

    def __init__(self, cfg: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ClassifierConfig()
        blocks: list[nn.Module] = []
        width = cfg.mel_channels
        for _ in range(3):
            blocks.append(nn.Sequential(
                nn.Conv1d(width, cfg.channels, cfg.kernel_size, padding=cfg.kernel_size // 2),
                nn.BatchNorm1d(cfg.channels),
                nn.ReLU(),
                nn.Dropout(cfg.conv_dropout),
            ))
            width = cfg.channels
        self.convs = nn.ModuleList(blocks)
        if cfg.normalize:  # set by set_normalization from the training segments; identity until then
            self.register_buffer("mel_mean", torch.zeros(cfg.mel_channels))
            self.register_buffer("mel_std", torch.ones(cfg.mel_channels))
        self.lstm = nn.LSTM(cfg.channels, cfg.lstm_hidden, batch_first=True, bidirectional=True)
        self.lstm_dropout = nn.Dropout(cfg.lstm_dropout)
        self.out = nn.Linear(2 * cfg.lstm_hidden, cfg.n_classes)

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """mel [B, C, F] float, frames [B] int in [1, F] -> logits [B, n_classes] = out(embed(mel, frames))."""
        return self.out(self.embed(mel, frames))

    def embed(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """mel [B, C, F] float, frames [B] int in [1, F] -> segment representation [B, 2H].

        The representation is the mean over valid frames of the BLSTM outputs (forward and backward
        states concatenated): every valid frame counts, and padding counts nowhere. It is what the
        final linear layer reads, and the embedding space of emodiff.quality's Frechet distance.
        """
        batch, channels, length = mel.shape
        if channels != self.cfg.mel_channels:
            raise ValueError(f"mel: expected {self.cfg.mel_channels} channels, got {channels}")
        if frames.shape != (batch,) or int(frames.min()) < 1 or int(frames.max()) > length:
            raise ValueError(f"frames: expected shape ({batch},) with values in [1, {length}], got {frames.tolist()}")
        mask = valid_mask(frames, length)[:, None, :]  # [B, 1, F]
        if self.cfg.segment_norm:
            mel = segment_standardise(mel.float(), frames)
        # A "same" convolution would read padding into the last valid frames; pinning padding to a
        # fixed value before, and zero after, each block makes the logits independent of its content
        # (also in training mode, where BatchNorm's statistics see the fixed values only).
        h = mel.masked_fill(~mask, PAD_VALUE)
        if self.cfg.normalize:
            h = (h - self.mel_mean[:, None]) / self.mel_std[:, None]  # padding: standardised silence
        for block in self.convs:
            h = block(h).masked_fill(~mask, 0.0)
        if self.cfg.time_pool > 1:
            # Block outputs are >= 0 (ReLU, dropout) and padding is 0, so a window that overlaps the
            # padding takes the max of its valid frames: the result still ignores padding content.
            h = F.max_pool1d(h, self.cfg.time_pool, ceil_mode=True)
            frames = (frames + self.cfg.time_pool - 1) // self.cfg.time_pool
            length = h.shape[2]
        packed = pack_padded_sequence(h.transpose(1, 2), frames.cpu().long(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)  # [B, F, 2H], zeros on padding
        out = self.lstm_dropout(out)
        return out.sum(dim=1) / frames.to(out.dtype)[:, None]

    @torch.no_grad()
    def set_normalization(self, mel: torch.Tensor, frames: torch.Tensor, chunk: int = 512) -> None:
        """With ``cfg.normalize``: mel_mean, mel_std [C] := the mean and std of each mel bin over the valid
        frames of mel [N, C, F] (float16 is fine; summed in float64, ``chunk`` segments at a time).
        """
        if not self.cfg.normalize:
            raise ValueError("set_normalization: this classifier's config has normalize: false")
        total = torch.zeros(mel.shape[1], dtype=torch.float64)
        square = torch.zeros_like(total)
        count = 0
        for lo in range(0, len(mel), chunk):
            x = mel[lo:lo + chunk].double()
            if self.cfg.segment_norm:  # the statistics of what embed() standardises
                x = segment_standardise(x, frames[lo:lo + chunk])
            keep = valid_mask(frames[lo:lo + chunk], x.shape[2])[:, None, :]
            total += (x * keep).sum(dim=(0, 2))
            square += (x * x * keep).sum(dim=(0, 2))
            count += int(keep.sum())
        if count == 0:
            raise ValueError("set_normalization: no valid frames")
        mean = total / count
        std = (square / count - mean**2).clamp_min(0.0).sqrt().clamp_min(1e-3)  # a constant bin stays finite
        self.mel_mean.copy_(mean.to(self.mel_mean))
        self.mel_std.copy_(std.to(self.mel_std))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mixup(x: torch.Tensor, y_onehot: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup: x_mix = lam x + (1 - lam) x[perm], same for labels; lam ~ Beta(alpha, alpha), one per batch.

    x [B, ...], y_onehot [B, K] (rows summing to 1) -> x_mix [B, ...], y_mix [B, K] (rows summing to 1).
    torch's Beta takes no generator, so lam comes from a numpy Generator seeded by a draw from
    ``generator``: the same torch generator state gives the same lam and permutation.
    """
    if y_onehot.ndim != 2 or y_onehot.shape[0] != x.shape[0]:
        raise ValueError(f"mixup: y_onehot must be [B, K] with B = {x.shape[0]}, got {tuple(y_onehot.shape)}")
    lam, perm = mixup_draw(x.shape[0], alpha, generator)
    return mix(x, lam, perm), mix(y_onehot, lam, perm)


def mixup_draw(batch: int, alpha: float, generator: torch.Generator | None = None) -> tuple[float, torch.Tensor]:
    """Mixup's draw for a batch: lam ~ Beta(alpha, alpha) and a permutation [batch] of its rows (the partners).

    Split from :func:`mixup` so that more per-row tensors (the loss weights) can be mixed with the same draw.
    """
    if not alpha > 0.0:
        raise ValueError(f"mixup: alpha must be > 0, got {alpha!r}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return lam, torch.randperm(batch, generator=generator)


def mix(t: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """lam t + (1 - lam) t[perm]: each row of t [B, ...] mixed with its partner."""
    return lam * t + (1.0 - lam) * t[perm.to(t.device)]


class SpecAugment(NamedTuple):
    """SpecAugment's strength, in :func:`spec_augment`'s argument order; the defaults are ``--augment specaugment``'s
    (two masks of each kind, as Park et al. 2019's "LD" policy, with widths for 80 bins and 256 frames)."""

    n_freq_masks: int = 2
    freq_width: int = 8
    n_time_masks: int = 2
    time_width: int = 20


def spec_augment(x: torch.Tensor, frames: torch.Tensor, n_freq_masks: int = 2, freq_width: int = 8,
                 n_time_masks: int = 2, time_width: int = 20,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment masks on x [B, C, F] -> a new [B, C, F]; masked cells hold PAD_VALUE (silence).

    Per row: ``n_freq_masks`` bands of width ~ U{0..freq_width} over the channels and ``n_time_masks``
    spans of width ~ U{0..time_width} (capped at the row's frames), all within the valid frames
    ``frames`` [B], so padding is left exactly as it was.
    """
    if min(n_freq_masks, freq_width, n_time_masks, time_width) < 0:
        raise ValueError(f"spec_augment: mask counts and widths must be >= 0, got {n_freq_masks}, {freq_width}, "
                         f"{n_time_masks}, {time_width}")
    batch, channels, length = x.shape

    def draw(high: int) -> int:  # uniform on {0, ..., high}
        return int(torch.randint(0, high + 1, (1,), generator=generator))

    masked = torch.zeros(batch, channels, length, dtype=torch.bool)
    for b in range(batch):
        n = int(frames[b])
        for _ in range(n_freq_masks):
            width = draw(min(freq_width, channels))
            start = draw(channels - width)
            masked[b, start:start + width, :n] = True
        for _ in range(n_time_masks):
            width = draw(min(time_width, n))
            start = draw(n - width)
            masked[b, :, start:start + width] = True
    return x.masked_fill(masked.to(x.device), PAD_VALUE)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of l_i = -sum_k p_ik log softmax(logits_i)_k; logits, target_probs [B, K] -> scalar.

    With ``weight`` w [B] (> 0): the weighted mean sum_i w_i l_i / sum_i w_i, on the scale of one l_i for any w.
    """
    per_row = -(target_probs * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    if weight is None:
        return per_row.mean()
    return (weight * per_row).sum() / weight.sum()
