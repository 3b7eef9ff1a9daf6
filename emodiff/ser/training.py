"""Fit the CNN-BLSTM on segments and score utterances: the loop every SER experiment shares.

``fit`` trains for ``cfg.epochs`` epochs with AdamW on soft cross-entropy (so mixup's soft labels
train as they are), applies SpecAugment and mixup on each batch when asked, and keeps the weights
of the epoch whose ``select`` score (validation UAR) is highest. Before a model is scored its
batch-norm statistics are recomputed under its current weights ("precise BN", Wu & Johnson 2021):
the running averages lag the weights over the few hundred updates a small corpus gives, and on
the bundled RAVDESS sample that lag cost the demo classifier 0.35 -> 0.48 UAR on its own training
set (tests/test_ser_training.py checks the recomputed statistics). ``utterance_scores`` pools
segment outputs into one score row per utterance, the unit every metric is computed on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from emodiff.ser.classifier import ClassifierConfig, CnnBlstm, mixup, soft_cross_entropy, spec_augment
from emodiff.ser.metrics import pool_segments

PRECISE_BN_SEGMENTS = 2048  # training segments that set the batch-norm statistics (bounds the cost on big corpora)


@dataclass(frozen=True)
class Segments:
    """Segments with labels: mel [N, C, F] (float16 is fine), valid frames [N], class ids [N]."""

    mel: torch.Tensor
    frames: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.mel)

    @staticmethod
    def join(parts: list[Segments]) -> Segments:
        return Segments(torch.cat([p.mel for p in parts]), torch.cat([p.frames for p in parts]),
                        torch.cat([p.labels for p in parts]))


@dataclass
class Fitted:
    model: CnnBlstm
    best_epoch: int  # 1-based; the last epoch when there is no ``select``
    best_score: float  # ``select`` at best_epoch; NaN without one
    epochs_run: int = 0  # fewer than cfg.epochs when early stopping (cfg.patience) ended the run


def fit(cfg: ClassifierConfig, data: Segments, device: torch.device, *, mixup_alpha: float | None = None,
        specaugment: bool = False, select: Callable[[CnnBlstm], float] | None = None,
        seed: int | None = None) -> Fitted:
    """Train a fresh CnnBlstm(cfg) on ``data``; keep the epoch that maximises ``select(model)``.

    Minimises E[-sum_k y_k log softmax(f(x))_k] over shuffled batches of ``cfg.batch_size``. The
    seed (default ``cfg.seed``) fixes the initial weights, batch order and augmentation draws.
    With ``cfg.normalize`` the model standardises its input by ``data``'s per-bin statistics; with
    ``cfg.schedule`` cosine the lr at step t of T = epochs x batches is lr (1 + cos(pi t / T)) / 2.
    With ``select`` and ``cfg.patience`` = P > 0, training stops once P epochs in a row have not
    beaten the best score (the schedule is not shortened: the run just ends early). Epochs before
    ``cfg.select_from`` (or the last epoch, when there are fewer) are neither scored nor eligible:
    an undertrained early epoch that scores well on a small validation set by chance is the
    selection's commonest failure.
    """
    seed = cfg.seed if seed is None else seed
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = CnnBlstm(cfg).to(device)
    if cfg.normalize:
        model.set_normalization(data.mel, data.frames)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = None
    if cfg.schedule == "cosine":
        total = cfg.epochs * math.ceil(len(data) / cfg.batch_size)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total)))
    elif cfg.schedule != "constant":
        raise ValueError(f"classifier.schedule {cfg.schedule!r}: expected constant or cosine")
    best = Fitted(model, cfg.epochs, float("nan"), cfg.epochs)
    best_state = None
    for epoch in range(1, cfg.epochs + 1):
        train_epoch(model, opt, data, cfg.batch_size, device, gen, mixup_alpha, specaugment, schedule=schedule)
        scored = select is not None and epoch >= min(cfg.select_from, cfg.epochs)  # --epochs below it: the last
        if scored or epoch == cfg.epochs:
            recalibrate_batch_norm(model, data, cfg.batch_size, device, gen)
        if scored:
            score = select(model)
            if best_state is None or score > best.best_score:
                best.best_epoch, best.best_score = epoch, score
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif cfg.patience and epoch - best.best_epoch >= cfg.patience:
                best.epochs_run = epoch
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return best


def train_epoch(model: CnnBlstm, opt: torch.optim.Optimizer, data: Segments, batch_size: int,
                device: torch.device, gen: torch.Generator, mixup_alpha: float | None = None,
                specaugment: bool = False, *, schedule: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """One pass over ``data`` in a random order (``schedule`` steps after every batch); returns the mean batch loss."""
    model.train()
    order = torch.randperm(len(data), generator=gen)
    losses = []
    for lo in range(0, len(data), batch_size):
        idx = order[lo:lo + batch_size]
        xb, fb = data.mel[idx].float(), data.frames[idx]
        yb = torch.nn.functional.one_hot(data.labels[idx], model.cfg.n_classes).float()
        if specaugment:
            xb = spec_augment(xb, fb, generator=gen)
        if mixup_alpha is not None:
            xb, yb = mixup(xb, yb, mixup_alpha, generator=gen)
        loss = soft_cross_entropy(model(xb.to(device), fb.to(device)), yb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if schedule is not None:
            schedule.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


@torch.no_grad()
def recalibrate_batch_norm(model: torch.nn.Module, data: Segments, batch_size: int, device: torch.device,
                           gen: torch.Generator, limit: int = PRECISE_BN_SEGMENTS) -> None:
    """Set every BatchNorm's running mean and variance to the average of its batch statistics over
    up to ``limit`` random training segments, under the current weights: E_b[mean_b], E_b[var_b].

    Only the BatchNorm layers run in training mode (dropout stays off); the weights do not change.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    was_training = model.training
    model.eval()
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # None: a cumulative average over the batches below
        bn.train()
    rows = torch.randperm(len(data), generator=gen)[:limit]
    for lo in range(0, len(rows), batch_size):
        idx = rows[lo:lo + batch_size]
        model(data.mel[idx].float().to(device), data.frames[idx].to(device))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)


@torch.no_grad()
def segment_logits(model: CnnBlstm, mel: torch.Tensor, frames: torch.Tensor, device: torch.device,
                   batch_size: int = 256) -> np.ndarray:
    """Logits [N, K] of segments mel [N, C, F] with valid frames [N], in eval mode."""
    model.eval()
    out = [model(mel[lo:lo + batch_size].float().to(device), frames[lo:lo + batch_size].to(device)).float().cpu()
           for lo in range(0, len(mel), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.cfg.n_classes), dtype=np.float32)


def utterance_scores(model: CnnBlstm, mel: torch.Tensor, frames: torch.Tensor, utt: np.ndarray, n_utts: int,
                     device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Per-utterance log-probabilities [U, K]: the mean of log_softmax over each utterance's segments.

    ``utt`` [N] maps each segment to its utterance in 0..n_utts-1 (see ``metrics.pool_segments``).
    """
    return pool_segments(segment_logits(model, mel, frames, device, batch_size), utt, n_utts)
