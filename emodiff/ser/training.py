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

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emodiff.ser.classifier import (
    ClassifierConfig,
    CnnBlstm,
    SpecAugment,
    mix,
    mixup_draw,
    soft_cross_entropy,
    spec_augment,
)
from emodiff.ser.metrics import pool_segments

PRECISE_BN_SEGMENTS = 2048  # training segments that set the batch-norm statistics (bounds the cost on big corpora)


@dataclass(frozen=True)
class Segments:
    """Segments with labels: mel [N, C, F] (float16 is fine), valid frames [N], class ids [N], and optionally
    soft targets [N, K] (rows summing to 1) that train in place of the one-hot labels (the uniform-label
    control; ``labels`` still names each segment's class for counting) and loss weights [N] > 0 (``--augment
    weight:W``; None: 1 for every segment, and the loss is the plain batch mean)."""

    mel: torch.Tensor
    frames: torch.Tensor
    labels: torch.Tensor
    soft: torch.Tensor | None = None
    weight: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.mel)

    def targets(self, idx: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Training targets [B, K] float of the rows ``idx``: ``soft`` where given, else one-hot labels."""
        if self.soft is not None:
            return self.soft[idx].float()
        return torch.nn.functional.one_hot(self.labels[idx], n_classes).float()

    def weights(self, idx: torch.Tensor) -> torch.Tensor | None:
        """Loss weights [B] float of the rows ``idx``, or None when every segment weighs 1."""
        return None if self.weight is None else self.weight[idx].float()

    @staticmethod
    def join(parts: list[Segments]) -> Segments:
        """The parts one after another; soft targets for all when any part has them (one-hot for the rest), and
        weights for all when any part has them (1 for the rest)."""
        soft = weight = None
        if any(p.soft is not None for p in parts):
            k = next(p.soft for p in parts if p.soft is not None).shape[1]  # type: ignore[union-attr]
            soft = torch.cat([p.targets(torch.arange(len(p)), k) for p in parts])
        if any(p.weight is not None for p in parts):
            weight = torch.cat([p.weight.float() if p.weight is not None else torch.ones(len(p)) for p in parts])
        return Segments(torch.cat([p.mel for p in parts]), torch.cat([p.frames for p in parts]),
                        torch.cat([p.labels for p in parts]), soft, weight)


@dataclass
class Fitted:
    model: CnnBlstm
    best_epoch: int  # 1-based epoch of the kept weights (with ``cfg.steps``: the epochs begun by best_step)
    best_score: float  # ``select`` at the kept weights; NaN without one
    epochs_run: int = 0  # fewer than cfg.epochs when early stopping (cfg.patience) ended the run
    best_step: int = 0  # optimiser steps taken when the kept weights were validated
    steps_run: int = 0  # optimiser steps taken in all


def training_plan(cfg: ClassifierConfig, n_segments: int) -> tuple[int, int]:
    """(total optimiser steps T, steps between validations V) for ``n_segments`` training segments.

    With ``cfg.steps`` = S > 0: T = S whatever the data, V = ``cfg.eval_every`` (or one pass over the
    data, ceil(N / batch), when 0), so an augmentation that adds segments adds no updates. Otherwise
    T = epochs x ceil(N / batch) and V = ceil(N / batch): one validation per epoch.
    """
    per_epoch = max(1, math.ceil(n_segments / cfg.batch_size))
    if cfg.steps:
        return cfg.steps, cfg.eval_every or per_epoch
    return cfg.epochs * per_epoch, per_epoch


def fit(cfg: ClassifierConfig, data: Segments, device: torch.device, *, mixup_alpha: float | None = None,
        specaugment: SpecAugment | None = None, select: Callable[[CnnBlstm], float] | None = None,
        seed: int | None = None) -> Fitted:
    """Train a fresh CnnBlstm(cfg) on ``data``; keep the weights that maximise ``select(model)``.

    Minimises E[-sum_k y_k log softmax(f(x))_k] over shuffled batches of ``cfg.batch_size`` (y is
    one-hot, or ``data.soft`` where given; with ``data.weight`` each batch's loss is the weighted mean,
    :func:`train_step`). Training runs T optimiser steps and validates every V
    (:func:`training_plan`): a fixed T with ``cfg.steps``, else ``cfg.epochs`` passes over the data;
    batches go through the data in a fresh random order per pass, the last batch of a pass the
    remainder. The seed (default ``cfg.seed``) fixes the initial weights, batch order and
    augmentation draws. With ``cfg.normalize`` the model standardises its input by ``data``'s per-bin
    statistics; with ``cfg.schedule`` cosine the lr at step t of T is lr (1 + cos(pi t / T)) / 2.
    With ``select`` and ``cfg.patience`` = P > 0, training stops once P validations in a row have
    not beaten the best score (the schedule is not shortened: the run just ends early). Validations
    before ``cfg.select_from`` (an epoch, or with ``cfg.steps`` a step; the last validation when
    there are fewer) are neither scored nor eligible: an undertrained early point that scores well
    on a small validation set by chance is the selection's commonest failure.
    """
    return fit_selecting(cfg, data, device, None if select is None else lambda model: [select(model)],
                         mixup_alpha=mixup_alpha, specaugment=specaugment, seed=seed)[0]


def fit_selecting(cfg: ClassifierConfig, data: Segments, device: torch.device,
                  scores: Callable[[CnnBlstm], Sequence[float]] | None, *, mixup_alpha: float | None = None,
                  specaugment: SpecAugment | None = None, seed: int | None = None) -> list[Fitted]:
    """One training as :func:`fit` describes, selecting for several scores at once: ``scores(model)`` -> [S], and
    entry i of the result holds the weights that maximised score i (one entry, the last weights, without
    ``scores``).

    Scoring only reads the model, so the trajectory does not depend on the scores: the folds of a
    cross-corpus split whose target never trains share one training, and each keeps the weights of its own
    best validation (:func:`emodiff.ser.folds.run_folds`, which scores all their validation utterances in one
    pass). Early stopping follows one score, so ``cfg.patience`` needs S = 1.
    """
    seed = cfg.seed if seed is None else seed
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = CnnBlstm(cfg).to(device)
    if cfg.normalize:
        model.set_normalization(data.mel, data.frames)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total, every = training_plan(cfg, len(data))
    per_epoch = math.ceil(len(data) / cfg.batch_size)
    schedule = None
    if cfg.schedule == "cosine":
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total)))
    elif cfg.schedule != "constant":
        raise ValueError(f"classifier.schedule {cfg.schedule!r}: expected constant or cosine")
    first = cfg.select_from * (1 if cfg.steps else per_epoch)  # the first step whose validation counts
    passes = math.ceil(total / per_epoch)  # cfg.epochs without cfg.steps
    best = [Fitted(model, passes, float("nan"), passes, total, total)]
    states: list[dict[str, torch.Tensor] | None] = [None]
    validations_since_best = 0
    batches = _batches(len(data), cfg.batch_size, gen)
    model.train()
    for step in range(1, total + 1):
        train_step(model, opt, data, next(batches), device, gen, mixup_alpha, specaugment, schedule=schedule)
        if step % every and step != total:
            continue
        scored = scores is not None and (step >= first or step == total)
        if scored or step == total:
            recalibrate_batch_norm(model, data, cfg.batch_size, device, gen)
        if not scored:
            continue
        now = [float(x) for x in scores(model)]  # type: ignore[misc]
        model.train()
        if all(state is None for state in states):  # the first validation says how many selections there are
            if cfg.patience and len(now) > 1:
                raise ValueError("fit_selecting: early stopping (classifier.patience) follows one score, "
                                 f"got {len(now)}")
            best = [Fitted(model, passes, float("nan"), passes, total, total) for _ in now]
            states = [None] * len(now)
        if len(now) != len(best):
            raise ValueError(f"fit_selecting: scores gave {len(now)} values, earlier {len(best)}")
        for i, score in enumerate(now):
            if states[i] is None or score > best[i].best_score:
                best[i].best_step, best[i].best_score = step, score
                best[i].best_epoch = math.ceil(step / per_epoch)
                states[i] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                validations_since_best = 0
            else:
                validations_since_best += 1
        if cfg.patience and validations_since_best >= cfg.patience:
            best[0].steps_run, best[0].epochs_run = step, math.ceil(step / per_epoch)
            break
    for fitted, state in zip(best, states, strict=True):
        if len(best) > 1:
            fitted.model = copy.deepcopy(model)
        if state is not None:
            fitted.model.load_state_dict(state)
        fitted.model.eval()
    return best


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Row indices of batches, pass after pass over 0..n-1, each pass in a fresh random order drawn from
    ``gen`` only when its first batch is wanted (so draws between passes keep their place in the stream)."""
    while True:
        order = torch.randperm(n, generator=gen)
        for lo in range(0, n, batch_size):
            yield order[lo:lo + batch_size]


def train_epoch(model: CnnBlstm, opt: torch.optim.Optimizer, data: Segments, batch_size: int,
                device: torch.device, gen: torch.Generator, mixup_alpha: float | None = None,
                specaugment: SpecAugment | None = None, *,
                schedule: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """One pass over ``data`` in a random order, a :func:`train_step` per batch; returns the mean batch loss."""
    model.train()
    batches = _batches(len(data), batch_size, gen)
    return float(np.mean([train_step(model, opt, data, next(batches), device, gen, mixup_alpha, specaugment,
                                     schedule=schedule) for _ in range(math.ceil(len(data) / batch_size))]))


def train_step(model: CnnBlstm, opt: torch.optim.Optimizer, data: Segments, idx: torch.Tensor,
               device: torch.device, gen: torch.Generator, mixup_alpha: float | None = None,
               specaugment: SpecAugment | None = None, *,
               schedule: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
    """One optimiser step on the rows ``idx`` of ``data`` (SpecAugment, then mixup, when asked); the batch loss.

    The loss is the mean of the segments' soft cross-entropies l_i, or with ``data.weight`` w the weighted
    mean sum_i w_i l_i / sum_i w_i: a segment of weight W pulls W times as hard as one of weight 1, and the
    loss stays on the scale of one segment's for any W (so the lr means the same). Mixup mixes the weights
    as it mixes the targets: a pair (a, b) mixed by lam weighs lam w_a + (1 - lam) w_b.
    """
    xb, fb = data.mel[idx].float(), data.frames[idx]
    yb, wb = data.targets(idx, model.cfg.n_classes), data.weights(idx)
    if specaugment is not None:
        xb = spec_augment(xb, fb, *specaugment, generator=gen)
    if mixup_alpha is not None:
        lam, perm = mixup_draw(len(xb), mixup_alpha, generator=gen)
        xb, yb = mix(xb, lam, perm), mix(yb, lam, perm)
        wb = None if wb is None else mix(wb, lam, perm)
    loss = soft_cross_entropy(model(xb.to(device), fb.to(device)), yb.to(device),
                              None if wb is None else wb.to(device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if schedule is not None:
        schedule.step()
    return float(loss.detach())


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
