"""SER metrics against hand-computed cases and independent per-class loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score

from emodiff.errors import EmodiffError
from emodiff.ser.metrics import confusion, macro_f1, pool_segments, summarize, uar, weighted_accuracy

labels = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60)


def balanced_accuracy_by_hand(y_true: list[int], y_pred: list[int], n_classes: int = 4) -> float:
    """Mean recall over classes present in y_true, with explicit loops (sklearn's balanced_accuracy)."""
    recalls = []
    for k in range(n_classes):
        total = sum(1 for t in y_true if t == k)
        if total == 0:
            continue
        hits = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == k and p == k)
        recalls.append(hits / total)
    return sum(recalls) / len(recalls)


@settings(max_examples=200, deadline=None)
@given(labels)
def test_uar_equals_independent_balanced_accuracy(pairs: list[tuple[int, int]]) -> None:
    y_true = [t for t, _ in pairs]
    y_pred = [p for _, p in pairs]
    assert uar(y_true, y_pred) == pytest.approx(balanced_accuracy_by_hand(y_true, y_pred))
    with warnings.catch_warnings():  # sklearn warns when y_pred has a class that y_true lacks
        warnings.simplefilter("ignore")
        assert uar(y_true, y_pred) == pytest.approx(balanced_accuracy_score(y_true, y_pred))


@settings(max_examples=100, deadline=None)
@given(labels)
def test_confusion_sums_and_entries(pairs: list[tuple[int, int]]) -> None:
    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    c = confusion(y_true, y_pred)
    assert c.shape == (4, 4)
    assert c.sum() == len(pairs)
    np.testing.assert_array_equal(c.sum(axis=1), np.bincount(y_true, minlength=4))
    np.testing.assert_array_equal(c.sum(axis=0), np.bincount(y_pred, minlength=4))
    for i in range(4):
        for j in range(4):
            assert c[i, j] == sum(1 for t, p in pairs if t == i and p == j)


def test_uar_hand_cases() -> None:
    # recalls: class 0: 1/2, class 1: 1/1, class 2: 0/1 -> (0.5 + 1 + 0) / 3
    assert uar([0, 0, 1, 2], [0, 1, 1, 0]) == pytest.approx(0.5)
    # class 3 absent from y_true (but predicted): left out of the mean, not counted as 0
    assert uar([0, 0, 1, 1], [0, 3, 1, 1]) == pytest.approx((0.5 + 1.0) / 2)
    assert uar([2, 2, 2], [2, 2, 2]) == 1.0
    # imbalance: always predicting the majority class gives 1/|P|, accuracy is high
    assert uar([0] * 9 + [1], [0] * 10) == pytest.approx(0.5)
    assert weighted_accuracy([0] * 9 + [1], [0] * 10) == pytest.approx(0.9)


def test_weighted_accuracy() -> None:
    assert weighted_accuracy([0, 1, 2, 3], [0, 1, 0, 0]) == pytest.approx(0.5)
    assert weighted_accuracy(np.array([3]), np.array([3])) == 1.0


def test_macro_f1_hand_cases() -> None:
    # y_true [0,0,1,2], y_pred [0,1,1,0]: class 0 TP1 FP1 FN1 -> 0.5; class 1 TP1 FP1 FN0 -> 2/3;
    # class 2 TP0 FP0 FN1 -> 0; class 3 unused -> left out
    assert macro_f1([0, 0, 1, 2], [0, 1, 1, 0]) == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    # class 3 only predicted: F1 = 0 counts (present in y_pred)
    assert macro_f1([0, 0], [0, 3]) == pytest.approx((2 / 3 + 0.0) / 2)
    assert macro_f1([1, 2, 3], [1, 2, 3]) == 1.0


def test_bad_labels_raise() -> None:
    with pytest.raises(EmodiffError, match="equal length"):
        uar([0, 1], [0])
    with pytest.raises(EmodiffError, match="outside 0..3"):
        uar([0, 4], [0, 1])
    with pytest.raises(EmodiffError, match="at least one"):
        weighted_accuracy([], [])
    with pytest.raises(EmodiffError, match="integer"):
        confusion([0.5], [0])


def test_summarize() -> None:
    mean, std = summarize([0.5, 0.7, 0.6])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(math.sqrt((0.01 + 0.01 + 0.0) / 2))  # sample std, ddof = 1
    assert summarize([0.42]) == (pytest.approx(0.42), 0.0)
    with pytest.raises(EmodiffError):
        summarize([])


def _log_softmax_loop(row: np.ndarray) -> np.ndarray:
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return np.array([v - lse for v in row])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_pool_segments_equals_per_utterance_loop(n_utts: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    utt = np.concatenate([np.arange(n_utts), rng.integers(0, n_utts, size=rng.integers(0, 12))])
    rng.shuffle(utt)
    logits = rng.normal(scale=5.0, size=(len(utt), 4))
    pooled = pool_segments(logits, utt, n_utts)
    assert pooled.shape == (n_utts, 4)
    for u in range(n_utts):
        rows = [_log_softmax_loop(logits[n]) for n in range(len(utt)) if utt[n] == u]
        np.testing.assert_allclose(pooled[u], np.mean(rows, axis=0), rtol=1e-10, atol=1e-10)


def test_pool_segments_errors() -> None:
    with pytest.raises(EmodiffError, match="utterance 1 has no segments"):
        pool_segments(np.zeros((2, 4)), np.array([0, 0]), 2)
    with pytest.raises(EmodiffError, match="expected logits"):
        pool_segments(np.zeros((2, 4)), np.array([0]), 1)
    with pytest.raises(EmodiffError, match="utterance ids"):
        pool_segments(np.zeros((1, 4)), np.array([3]), 2)
