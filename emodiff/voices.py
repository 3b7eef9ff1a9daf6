"""Synthetic voices that are none of the training actors (``emodiff sample --voices``, docs/generator.md).

A voice is a row of coefficients c [S] over the run's S training speakers: the network's speaker
embedding becomes c @ E[:S] instead of the row E[a] of one speaker (E the speaker embedding table,
[S + 1, e] with the null row last; both the U-Net and the GAN generator take it). The modes:

- ``training``: no coefficients; each sample speaks as the speaker a whose transcript it borrows.
- ``mix``: c = (1 - w) onehot(a) + w onehot(b), i.e. (1 - w) E[a] + w E[b], with b another training
  speaker (of a's gender when the utterance table knows both) and w ~ Uniform(0.25, 0.75).
- ``gaussian``: c = 1/S + (z - mean(z)) / sqrt(S - 1), z ~ N(0, I_S), i.e. a draw from the Gaussian
  fitted to the S rows E[:S] (see :func:`gaussian_coefficients`).

Coefficients, not embeddings, are what is planned and recorded: they need no weights to draw, they
say for each sample which training speakers its voice is made of, and they apply to any checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emodiff.config import Voices
from emodiff.errors import EmodiffError

MIX_WEIGHTS = (0.25, 0.75)  # w ~ Uniform(MIX_WEIGHTS): every mixed voice is at least a quarter of each speaker
VOICE_STREAM = 2  # the voices' seed is (seed, VOICE_STREAM): the transcripts' draws stay what they were
GENDERS = ("F", "M")  # the utterance table's known genders (docs/store.md); anything else is unknown


@dataclass(frozen=True)
class VoicePlan:
    """Each sample's voice: None everywhere for ``training``; the partner and weight for ``mix`` only."""

    mode: Voices
    coefficients: np.ndarray | None = None  # [N, S] float32 over the training speakers; speaker embedding c @ E[:S]
    partner: np.ndarray | None = None  # [N] int, mix's speaker b (index into the training speakers)
    weight: np.ndarray | None = None  # [N] float32, mix's w: (1 - w) E[a] + w E[b]


def plan_voices(mode: Voices, speaker: np.ndarray, genders: Sequence[str | None], seed: int) -> VoicePlan:
    """The voices of N samples whose transcripts borrow training speakers ``speaker`` [N] (indices into
    the S training speakers, whose genders are ``genders`` [S], None where unknown), drawn from ``seed``
    alone so that a rerun draws the same voices."""
    n_speakers = len(genders)
    if mode == "training":
        return VoicePlan(mode)
    if n_speakers < 2:
        raise EmodiffError(f"--voices {mode}: the run has one training speaker; a voice that is none of them "
                           "needs at least two")
    rng = np.random.default_rng((seed, VOICE_STREAM))
    if mode == "mix":
        partner = mix_partners(speaker, genders, rng)
        weight = rng.uniform(*MIX_WEIGHTS, size=len(speaker)).astype(np.float32)
        return VoicePlan(mode, mix_coefficients(speaker, partner, weight, n_speakers), partner, weight)
    if mode == "gaussian":
        return VoicePlan(mode, gaussian_coefficients(len(speaker), n_speakers, rng))
    raise ValueError(f"voices {mode!r}: expected one of training, mix, gaussian")


def mix_partners(speaker: np.ndarray, genders: Sequence[str | None], rng: np.random.Generator) -> np.ndarray:
    """Per sample, a training speaker b != a drawn uniformly: among a's gender when a's and some other
    speaker's genders are known, else among all the others (a speaker alone in its gender mixes across)."""
    out = np.empty(len(speaker), dtype=np.int64)
    everyone = np.arange(len(genders))
    for i, a in enumerate(speaker):
        others = everyone[everyone != a]
        same = [b for b in others if genders[a] is not None and genders[b] == genders[a]]
        out[i] = rng.choice(same if same else others)
    return out


def mix_coefficients(a: np.ndarray, b: np.ndarray, w: np.ndarray, n_speakers: int) -> np.ndarray:
    """[N, S] float32 coefficients of (1 - w) E[a] + w E[b]; a, b [N] speaker indices, w [N] weights."""
    rows = np.arange(len(a))
    out = np.zeros((len(a), n_speakers), dtype=np.float64)
    out[rows, a] = 1.0 - np.asarray(w, dtype=np.float64)
    out[rows, b] += w  # += so that a == b gives onehot(a), the training speaker itself
    return out.astype(np.float32)


def gaussian_coefficients(n: int, n_speakers: int, rng: np.random.Generator) -> np.ndarray:
    """[n, S] float32 coefficients c of n draws from N(mu, Sigma) fitted to the S rows r_i of E[:S]:
    mu = mean_i r_i, Sigma = sum_i (r_i - mu)(r_i - mu)^T / (S - 1).

    With S <= e (embedding width) Sigma has rank at most S - 1 and no Cholesky factor, but
    x = mu + (R - mu)^T z / sqrt(S - 1), z ~ N(0, I_S), samples N(mu, Sigma) exactly: x is Gaussian with
    mean mu and covariance (R - mu)^T (R - mu) / (S - 1) = Sigma. Written over the rows,
    x = sum_i r_i (1/S + (z_i - mean(z)) / sqrt(S - 1)), since (R - mu)^T 1 = 0; those are the coefficients.
    """
    z = rng.standard_normal((n, n_speakers))
    return (1.0 / n_speakers + (z - z.mean(1, keepdims=True)) / np.sqrt(n_speakers - 1)).astype(np.float32)


def speaker_genders(gender: np.ndarray, speaker: np.ndarray, trained: Sequence[str]) -> list[str | None]:
    """Per training speaker, its gender from the utterance table (columns ``gender`` and ``speaker`` [U]);
    None when its utterances give none of F or M, or disagree."""
    out: list[str | None] = []
    for s in trained:
        found = set(np.asarray(gender)[np.asarray(speaker) == s].astype(str).tolist())
        out.append(found.pop() if len(found) == 1 and found <= set(GENDERS) else None)
    return out


def voice_embedding(voice: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """c @ E: coefficients [B, S] over the rows of ``table`` [S, e] -> speaker embeddings [B, e], in float32.

    Outside autocast: under bf16 the product would round the embedding to 8 bits of mantissa, and a mix with
    w = 0 would no longer equal the training speaker's own row (an nn.Embedding lookup is never autocast).
    """
    if voice.dim() != 2 or voice.shape[1] != table.shape[0]:
        raise ValueError(f"voice must be [B, {table.shape[0]}] (one coefficient per training speaker), "
                         f"got {list(voice.shape)}")
    with torch.autocast(device_type=voice.device.type, enabled=False):
        return voice.float() @ table.float()
