"""A classifier two-sample test (Lopez-Paz & Oquab 2017): can the CNN-BLSTM tell two sets of segments apart?

``quality`` uses it for real vs synthetic (docs/quality.md has its calibration on RAVDESS).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from scipy.stats import rankdata

from emodiff.ser.classifier import ClassifierConfig
from emodiff.ser.training import Segments, fit, segment_logits

TWO_SAMPLE_FOLDS = 3


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(s_pos > s_neg) + P(s_pos = s_neg) / 2 (the Mann-Whitney U statistic over
    n_pos n_neg), from average ranks; scores [N], labels [N] in {0, 1}. NaN when a class is missing."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)  # ties get their average rank
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def two_sample_auc(cfg: ClassifierConfig, real: Segments, synthetic: Segments, device: torch.device,
                   folds: int = TWO_SAMPLE_FOLDS, seed: int = 0, real_groups: np.ndarray | None = None,
                   synthetic_groups: np.ndarray | None = None) -> float:
    """A classifier two-sample test (Lopez-Paz & Oquab 2017): the CNN-BLSTM of ``cfg`` learns real (0) vs
    synthetic (1) on all but one of ``folds`` seeded folds and scores the rest; the AUC of the pooled
    out-of-fold scores logit_1 - logit_0. 0.5: indistinguishable; 1.0: told apart every time. The real side
    is subsampled to the synthetic side's size so that both classes weigh the same.

    ``real_groups`` [len(real)] (the utterance of each real segment) and ``synthetic_groups`` keep every
    group in one fold (default: each row its own group): with an utterance's segments on both sides of a
    split, the classifier can recognise the utterance rather than tell real speech from generated.
    """
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(real), size=min(len(real), len(synthetic)), replace=False))
    mel = torch.cat([real.mel[keep].to(torch.float16), synthetic.mel.to(torch.float16)])
    frames = torch.cat([real.frames[keep], synthetic.frames])
    labels = np.r_[np.zeros(len(keep), np.int64), np.ones(len(synthetic), np.int64)]
    fold = np.r_[_group_folds(real_groups, keep, folds, rng),
                 _group_folds(synthetic_groups, np.arange(len(synthetic)), folds, rng)]
    scores = np.zeros(len(labels))
    binary = dataclasses.replace(cfg, n_classes=2)
    for k in range(folds):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        model = fit(binary, Segments(mel[tr], frames[tr], torch.from_numpy(labels[tr])), device, seed=seed + k).model
        logits = segment_logits(model, mel[te], frames[te], device)
        scores[te] = logits[:, 1] - logits[:, 0]
    return roc_auc(scores, labels)


def _group_folds(groups: np.ndarray | None, rows: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold [len(rows)] of each row, whole groups at a time, groups spread over the folds at random."""
    names = np.asarray(groups)[rows] if groups is not None else np.arange(len(rows))
    _, index = np.unique(names, return_inverse=True)
    return (rng.permutation(index.max() + 1) % folds)[index] if len(rows) else np.zeros(0, np.int64)
