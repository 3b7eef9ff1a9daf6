"""``classifier.kind: stats``: utterance statistics, standardised per speaker, into a linear model.

The classic cross-corpus SER baseline (Schuller et al., "Cross-corpus acoustic emotion recognition:
variances and strategies", IEEE Trans. Affective Computing 2010): speaker-normalised functionals and a
linear classifier. Here the functionals are each mel bin's mean and std over an utterance's valid frames
(:func:`utterance_stats`), standardised by the statistics of the speaker's own utterances
(:func:`standardise_groups`), then by the training features' (:class:`StatsClassifier`), into
multinomial logistic regression fitted to convergence with an L2 penalty (:func:`fit_linear`), one fit
per strength of ``classifier.l2``; each fold keeps the strength of its best validation UAR
(:func:`fit_stats_selecting`, :func:`fit_selecting`'s contract with the grid in place of the steps).

The speaker standardisation is transductive: a validation or test speaker is standardised by the
statistics of its own utterances, labels unused, as a training speaker is. The fit is convex and
full-batch from zeros, so no seed changes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emodiff.config import ClassifierConfig
from emodiff.ser.classifier import valid_mask

EPS = 1e-6  # a std below this (one utterance, a constant bin) divides by EPS: its standardised value is ~0


def utterance_stats(mel: torch.Tensor, frames: torch.Tensor, unit: np.ndarray, n_units: int,
                    chunk: int = 256) -> np.ndarray:
    """x_u = [m_u, s_u] [U, 2C] float64, with m_uc, s_uc the mean and std (ddof 0) of mel bin c over the valid
    frames of every segment n of unit u (``unit[n] = u``); mel [N, C, F] (float16 is fine), frames [N], unit [N]
    in 0..n_units-1. The frames of a unit's segments pool as one sequence: its std is not a mean of stds.
    """
    channels = mel.shape[1]
    total = torch.zeros(n_units, channels, dtype=torch.float64)
    square = torch.zeros_like(total)
    count = torch.zeros(n_units, dtype=torch.float64)
    unit_t = torch.from_numpy(np.asarray(unit, dtype=np.int64))
    for lo in range(0, len(mel), chunk):
        x = mel[lo:lo + chunk].double()
        keep = valid_mask(frames[lo:lo + chunk], x.shape[2])[:, None, :]
        x = x * keep
        idx = unit_t[lo:lo + chunk]
        total.index_add_(0, idx, x.sum(dim=2))
        square.index_add_(0, idx, (x * x).sum(dim=2))
        count.index_add_(0, idx, frames[lo:lo + chunk].double())
    if bool((count == 0).any()):
        raise ValueError(f"utterance_stats: {int((count == 0).sum())} of {n_units} units have no valid frames")
    mean = total / count[:, None]
    std = (square / count[:, None] - mean**2).clamp_min(0.0).sqrt()
    return torch.cat([mean, std], dim=1).numpy()


def standardise_groups(x: np.ndarray, group: np.ndarray, eps: float = EPS) -> np.ndarray:
    """z_u = (x_u - mu_g) / max(sigma_g, eps) per column, g the group of row u and mu_g, sigma_g (ddof 0) the
    mean and std of the rows of g; x [U, D], group [U] (any labels) -> [U, D] float64. Each row is standardised
    by its own group's rows only, labels unused; a group of one row comes out as zeros."""
    out = np.asarray(x, dtype=np.float64).copy()
    _, inverse = np.unique(np.asarray(group), return_inverse=True)
    for g in range(int(inverse.max()) + 1 if len(inverse) else 0):
        rows = inverse == g
        mu, sigma = out[rows].mean(axis=0), out[rows].std(axis=0)
        out[rows] = (out[rows] - mu) / np.maximum(sigma, eps)
    return out


@dataclass(frozen=True)
class Units:
    """The training units of a stats classifier: features x [N, D] (speaker-standardised), class ids [N], and
    optionally soft targets [N, K] and loss weights [N] > 0, as :class:`~emodiff.ser.training.Segments` has."""

    x: np.ndarray
    labels: np.ndarray
    soft: np.ndarray | None = None
    weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def targets(self, n_classes: int) -> np.ndarray:
        """Targets [N, K]: ``soft`` where given, else one-hot labels."""
        if self.soft is not None:
            return np.asarray(self.soft, dtype=np.float64)
        return np.eye(n_classes)[self.labels]

    @staticmethod
    def join(parts: list[Units], n_classes: int) -> Units:
        """The parts one after another; soft targets for all when any part has them (one-hot for the rest), and
        weights for all when any part has them (1 for the rest)."""
        soft = weight = None
        if any(p.soft is not None for p in parts):
            soft = np.concatenate([p.targets(n_classes) for p in parts])
        if any(p.weight is not None for p in parts):
            weight = np.concatenate([p.weight if p.weight is not None else np.ones(len(p)) for p in parts])
        return Units(np.concatenate([p.x for p in parts]), np.concatenate([p.labels for p in parts]).astype(np.int64),
                     soft, weight)


class StatsClassifier(nn.Module):
    """Utterance features x [U, D] -> logits [U, K] = W (x - mu) / sigma + b, with mu, sigma [D] the training
    features' mean and std (buffers) and l2 the strength it was fitted with."""

    def __init__(self, n_features: int, n_classes: int, l2: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n_features, dtype=torch.float64))
        self.out = nn.Linear(n_features, n_classes, dtype=torch.float64)
        self.l2 = l2

    def standardise(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(x - mu) / sigma [U, D] float64."""
        return (torch.as_tensor(x, dtype=torch.float64) - self.mean) / self.std

    def forward(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.out(self.standardise(x))

    @torch.no_grad()
    def log_probs(self, x: np.ndarray) -> np.ndarray:
        """log softmax of the logits [U, K]: the utterance scores, as the CNN's pooled log-probabilities."""
        return F.log_softmax(self(x), dim=1).numpy()


def penalised_loss(model: StatsClassifier, z: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None,
                   l2: float) -> torch.Tensor:
    """J(W, b) = sum_i w_i l_i / sum_i w_i + (l2 / 2) ||W||_F^2 (b unpenalised), l_i = -sum_k p_ik log
    softmax(W z_i + b)_k; z [N, D] standardised features, targets p [N, K], weight w [N] (None: all 1)."""
    per_row = -(targets * F.log_softmax(model.out(z), dim=1)).sum(dim=1)
    data = per_row.mean() if weight is None else (weight * per_row).sum() / weight.sum()
    return data + 0.5 * l2 * (model.out.weight**2).sum()


def fit_linear(train: Units, l2: float, n_classes: int, max_iter: int = 2000,
               tolerance: float = 1e-9) -> StatsClassifier:
    """Minimise :func:`penalised_loss` over W [K, D], b [K] from zeros, by L-BFGS (strong Wolfe line search) in
    float64, full batch, to ||grad||_inf <= ``tolerance`` (or ``max_iter`` iterations); mu, sigma are ``train``'s
    feature mean and std. Strictly convex in W for l2 > 0, so the result is the one minimum, whatever the seed.
    With N units this is sklearn's LogisticRegression(C = 1 / (l2 N)) when every w_i = 1.
    """
    x = torch.as_tensor(train.x, dtype=torch.float64)
    model = StatsClassifier(x.shape[1], n_classes, l2)
    model.mean.copy_(x.mean(dim=0))
    model.std.copy_(x.std(dim=0, unbiased=False).clamp_min(EPS))
    nn.init.zeros_(model.out.weight)
    nn.init.zeros_(model.out.bias)
    z = model.standardise(x)
    targets = torch.as_tensor(train.targets(n_classes), dtype=torch.float64)
    weight = None if train.weight is None else torch.as_tensor(train.weight, dtype=torch.float64)
    opt = torch.optim.LBFGS(model.out.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=tolerance,
                            tolerance_change=1e-15, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = penalised_loss(model, z, targets, weight, l2)
        loss.backward()
        return loss

    opt.step(closure)
    model.eval()
    return model


@dataclass
class FittedStats:
    """The fit a selection kept: its model, its place in the grid and its score."""

    model: StatsClassifier
    index: int  # 0-based position in the grid of the kept l2
    best_score: float  # the selecting score of the kept fit; NaN without one
    fits: int  # strengths fitted (the grid's size)

    @property
    def l2(self) -> float:
        return self.model.l2


def fit_stats_selecting(cfg: ClassifierConfig, train: Units,
                        scores: Callable[[StatsClassifier], Sequence[float]] | None) -> list[FittedStats]:
    """One :func:`fit_linear` per strength of ``cfg.l2``, in order; ``scores(model)`` -> [S], and entry i of the
    result holds the fit that maximised score i (the first of equal scores: the grid's earlier strength; one
    entry, the last fit, without ``scores``). As :func:`emodiff.ser.training.fit_selecting` with the grid in place
    of the steps: the folds that share the training data share the fits, and each keeps its own."""
    best: list[FittedStats] = []
    for i, l2 in enumerate(cfg.l2):
        model = fit_linear(train, float(l2), cfg.n_classes)
        if scores is None:
            best = [FittedStats(model, i, float("nan"), len(cfg.l2))]
            continue
        now = [float(s) for s in scores(model)]
        if best and len(now) != len(best):
            raise ValueError(f"fit_stats_selecting: scores gave {len(now)} values, earlier {len(best)}")
        if not best:
            best = [FittedStats(model, i, score, len(cfg.l2)) for score in now]
        for j, score in enumerate(now):
            if score > best[j].best_score:
                best[j] = FittedStats(model, i, score, len(cfg.l2))
    return best
