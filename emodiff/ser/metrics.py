"""SER scores over integer class ids 0..K-1 (pure numpy).

Conventions: ``y_true`` and ``y_pred`` are 1-D integer arrays of equal length N > 0 with values in
``0..n_classes-1``; bad input raises :class:`EmodiffError`. Utterances, not segments, are scored:
pool segment logits with :func:`pool_segments` first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError

N_CLASSES = len(EMOTIONS)


def _labels(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
            n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (y_true, y_pred) as int64 arrays [N]."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise EmodiffError(f"metrics: expected 1-D label arrays of equal length, got shapes {t.shape} and {p.shape}")
    if t.size == 0:
        raise EmodiffError("metrics: expected at least one label, got none")
    for name, a in (("y_true", t), ("y_pred", p)):
        if not np.issubdtype(a.dtype, np.integer):
            raise EmodiffError(f"metrics: expected integer {name}, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= n_classes:
            raise EmodiffError(f"metrics: {name} has labels outside 0..{n_classes - 1}")
    return t.astype(np.int64), p.astype(np.int64)


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
              n_classes: int = N_CLASSES) -> np.ndarray:
    """Confusion matrix C [K, K] int64: C[i, j] = #{n : y_true[n] = i and y_pred[n] = j} (rows = true)."""
    t, p = _labels(y_true, y_pred, n_classes)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def uar(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
        n_classes: int = N_CLASSES) -> float:
    """Unweighted average recall: UAR = (1/|P|) sum_{k in P} C[k, k] / sum_j C[k, j].

    P = classes present in y_true. A class absent from y_true has no defined recall and is left
    out of the mean, as scikit-learn's ``balanced_accuracy_score`` does (it is not counted as 0).
    """
    c = confusion(y_true, y_pred, n_classes)
    support = c.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(c)[present] / support[present]))


def weighted_accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                      n_classes: int = N_CLASSES) -> float:
    """Weighted accuracy ("WA" in SER papers) = plain accuracy = (1/N) sum_n [y_true[n] = y_pred[n]]."""
    t, p = _labels(y_true, y_pred, n_classes)
    return float(np.mean(t == p))


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
             n_classes: int = N_CLASSES) -> float:
    """Macro F1 = (1/|Q|) sum_{k in Q} F1_k, F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k).

    Q = classes present in y_true or y_pred (others have TP = FP = FN = 0 and are left out).
    F1_k = 0 where precision and recall are both 0 (TP_k = 0), which the formula gives directly.
    """
    c = confusion(y_true, y_pred, n_classes)
    tp = np.diag(c).astype(np.float64)
    fp = c.sum(axis=0) - tp
    fn = c.sum(axis=1) - tp
    used = (c.sum(axis=0) + c.sum(axis=1)) > 0
    return float(np.mean(2 * tp[used] / (2 * tp[used] + fp[used] + fn[used])))


def summarize(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(mean, std) over folds: mean = (1/n) sum v_i, std = sqrt(sum (v_i - mean)^2 / (n - 1)).

    The std is the sample std (ddof = 1) when n > 1 and 0.0 for a single value; no values raises.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise EmodiffError(f"summarize: expected a non-empty 1-D list of values, got shape {v.shape}")
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return float(np.mean(v)), std


def pool_segments(logits: np.ndarray, utt: Sequence[int] | np.ndarray, n_utts: int) -> np.ndarray:
    """Utterance scores [U, K] from segment logits [N, K]: s_u = mean_{n : utt[n] = u} log_softmax(logits[n]).

    ``utt`` [N] gives each segment's utterance index in 0..U-1; every utterance needs at least one
    segment. ``argmax`` of a row is the utterance's predicted class.
    """
    x = np.asarray(logits, dtype=np.float64)
    u = np.asarray(utt)
    if x.ndim != 2 or u.ndim != 1 or u.shape[0] != x.shape[0]:
        raise EmodiffError(f"pool_segments: expected logits [N, K] and utt [N], got {x.shape} and {u.shape}")
    if u.size and (not np.issubdtype(u.dtype, np.integer) or u.min() < 0 or u.max() >= n_utts):
        raise EmodiffError(f"pool_segments: utt must hold integer utterance ids in 0..{n_utts - 1}")
    counts = np.bincount(u.astype(np.int64), minlength=n_utts)
    if np.any(counts == 0):
        missing = int(np.flatnonzero(counts == 0)[0])
        raise EmodiffError(f"pool_segments: utterance {missing} has no segments")
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    sums = np.zeros((n_utts, x.shape[1]))
    np.add.at(sums, u, logp)
    return sums / counts[:, None]
