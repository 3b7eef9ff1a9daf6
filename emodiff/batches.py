"""Training examples for any generator family: normalised mels and the conditions they were said with.

A batch is (x_0 [B, C, F] normalised, conditions), where the conditions are the utterance's text
tokens [B, L, D] and their mask [B, L], its emotion [B], its speaker's index [B] (the training
speakers', in order; an unseen speaker gets the extra index S) and ``uncond`` [B], True for the
examples whose conditions are dropped (classifier-free guidance). A family uses the ones it needs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from emodiff.diffusion.normalize import MelNormalizer
from emodiff.errors import EmodiffError
from emodiff.segments import SegmentSet, UtteranceWindows

Batch = tuple[Tensor, dict[str, Tensor]]


def conditions(data: SegmentSet, utt: Tensor, speaker_index: dict[str, int], device: torch.device,
               generator: torch.Generator | None = None, dropout: float = 0.0) -> dict[str, Tensor]:
    """Conditions of utterances ``utt`` [B]; each example is dropped with probability ``dropout``,
    drawn from ``generator`` (no draw at all when ``dropout`` is 0, so the random stream is unchanged)."""
    tokens = data.tokens[utt].float()
    mask = torch.arange(tokens.shape[1])[None, :] < data.lengths[utt][:, None]
    assert data.emotion is not None
    speakers = torch.tensor([speaker_index.get(str(s), len(speaker_index)) for s in data.speaker[utt.numpy()]])
    uncond = (torch.rand(len(utt), generator=generator) < dropout) if dropout > 0 else torch.zeros(len(utt), dtype=bool)
    return {"tokens": tokens.to(device), "mask": mask.to(device), "emotion": data.emotion[utt].to(device),
            "speaker": speakers.to(device), "uncond": uncond.to(device)}


class Batches:
    """Where training examples come from: whole stored segments, or random windows of ``crop_frames`` cut
    from utterances' valid frames (0: whole segments, padding included, as the paper trains)."""

    def __init__(self, data: SegmentSet, norm: MelNormalizer, speaker_index: dict[str, int], device: torch.device,
                 crop_frames: int = 0) -> None:
        self.data, self.norm, self.speaker_index, self.device = data, norm, speaker_index, device
        self.windows = UtteranceWindows(data, crop_frames) if crop_frames else None

    def draw(self, batch: int, gen: torch.Generator, dropout: float) -> Batch:
        """``batch`` random examples, drawn from ``gen``."""
        if self.windows is not None:
            mel, utt = self.windows.draw(batch, gen)
        else:
            rows = torch.randint(len(self.data), (batch,), generator=gen)
            mel, utt = self.data.mel[rows], self.data.utt[rows]
        kwargs = conditions(self.data, utt, self.speaker_index, self.device, gen, dropout)
        return self.norm.forward(mel.to(self.device, torch.float32)), kwargs

    def fixed(self, limit: int, seed: int) -> list[Batch]:
        """Up to ``limit`` examples in batches of 64, the same on every call (seeded): the validation set."""
        gen = torch.Generator().manual_seed(seed + 54321)
        n = min(limit, len(self.data)) if self.windows is None else min(limit, 4 * len(self.windows))
        out = []
        for lo in range(0, n, 64):
            if self.windows is None:
                rows = torch.arange(lo, min(lo + 64, n))
                mel, utt = self.data.mel[rows], self.data.utt[rows]
                x0 = self.norm.forward(mel.to(self.device, torch.float32))
                out.append((x0, conditions(self.data, utt, self.speaker_index, self.device)))
            else:
                out.append(self.draw(min(64, n - lo), gen, 0.0))
        return out


def split(data: SegmentSet, fraction: float, seed: int, limit: int) -> tuple[SegmentSet, SegmentSet]:
    """Hold out a seeded ``fraction`` of original utterances (all their segments, at most ``limit`` of them
    kept) for the validation loss; (train, validation). An offline copy goes where its original goes, and
    only originals are validated on: the loss stays the one on real speech, and no copy of a held-out
    utterance is trained on."""
    originals = data.originals()
    utts = np.unique(originals)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(utts, size=max(1, round(fraction * len(utts))), replace=False).tolist())
    is_val = np.isin(originals, list(held))
    if is_val.all():
        raise EmodiffError("the validation split took every utterance; lower train.val_fraction or add data")
    val_rows = np.flatnonzero(is_val & (originals == data.utt.numpy()))[:limit]
    return data.subset(np.flatnonzero(~is_val)), data.subset(val_rows)
