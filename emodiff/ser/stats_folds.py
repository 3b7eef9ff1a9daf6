"""``classifier.kind: stats`` in a fold: what a run trains on, a unit (one row of speaker-standardised utterance
statistics, emodiff/ser/stats.py) for a segment, and the fits that stand in for the training steps
(docs/classify.md, "A classifier that transfers"). emodiff/ser/folds.py calls it for every run of that kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emodiff.ser.classifier import ClassifierConfig
from emodiff.ser.fold_data import Candidate, CorpusData, FoldResult, FoldSpec, Offline, Predictions
from emodiff.ser.metrics import macro_f1, uar, weighted_accuracy
from emodiff.ser.protocols import Fold
from emodiff.ser.stats import Units, fit_stats_selecting, standardise_groups, utterance_stats


@dataclass(frozen=True)
class StatsFeatures:
    """kind stats: the utterance statistics [U, 2C] of every corpus utterance (row as in ``CorpusData``), each
    standardised within its speaker (corpus:speaker), and per offline kind those of each copy (an utterance's
    segments of one speed factor or SNR) [M, 2C], standardised within (speaker, kind), with its utterance row [M]."""

    real: np.ndarray
    offline: dict[str, tuple[np.ndarray, np.ndarray]]


def stats_features(data: CorpusData, offline: dict[str, Offline]) -> StatsFeatures:
    """Every unit's speaker-standardised statistics (:func:`emodiff.ser.stats.utterance_stats`,
    :func:`~emodiff.ser.stats.standardise_groups`): each speaker, trained on, validated or tested, by its own
    utterances (labels unused: the transductive speaker normalisation of docs/classify.md)."""
    speaker = data.qualified
    real = standardise_groups(utterance_stats(data.mel, data.frames, data.utt, len(data.ids)), speaker)
    copies = {}
    for kind, extra in offline.items():
        param = extra.param if extra.param is not None else np.zeros(len(extra.utt))
        keys, unit = np.unique(np.column_stack([extra.utt.astype(np.float64), param]), axis=0, return_inverse=True)
        utt = keys[:, 0].astype(np.int64)
        x = utterance_stats(extra.segments.mel, extra.segments.frames, unit.reshape(-1), len(keys))
        copies[kind] = (standardise_groups(x, speaker[utt]), utt)
    return StatsFeatures(real, copies)


def training_units(fold: Fold, data: CorpusData, synth: Candidate | None, features: StatsFeatures, spec: FoldSpec,
                   seed: int = 0) -> Units:
    """What one run of ``fold`` trains on with kind stats, as :func:`training_segments` for the CNN-BLSTM, with a
    unit for a segment: with ``spec.real`` the fold's training utterances, ``augment.extra_real`` more drawn
    from them with replacement, and their offline copies; then ``synth``'s segments (``shuffle``, ``uniform``
    and ``weight`` as there)."""
    augment, k = spec.augment, spec.classifier.n_classes
    parts = []
    if spec.real:
        utts = np.asarray(fold.train, dtype=np.int64)
        if augment.extra_real is not None:
            utts = np.concatenate([utts, np.random.default_rng(seed).choice(utts, augment.extra_real)])
        parts.append(Units(features.real[utts], data.emotion[utts]))
        for x, utt in features.offline.values():  # only the copies of this fold's training utterances
            keep = np.isin(utt, np.asarray(fold.train))
            parts.append(Units(x[keep], data.emotion[utt[keep]]))
    if synth is not None:
        units = synth.units(spec.store)
        labels = units.labels
        if augment.shuffle:
            labels = labels[np.random.default_rng(seed).permutation(len(labels))]
        soft = np.full((len(labels), k), 1.0 / k) if augment.uniform else None
        weight = None if augment.weight is None else np.full(len(labels), augment.weight)
        parts.append(Units(units.x, labels, soft, weight))
    return Units.join(parts, k)


def run_folds_stats(folds: list[Fold], data: CorpusData, train: Units, features: StatsFeatures, seed: int,
                    cfg: ClassifierConfig) -> list[tuple[FoldResult, Predictions]]:
    """kind stats: :func:`run_folds` with one fit per L2 strength of ``cfg.l2`` in place of the training steps: each
    fold keeps the strength of its own best validation UAR and scores its own test utterances."""

    def val_uars(model) -> list[float]:
        return [uar(data.emotion[rows], model.log_probs(features.real[rows]).argmax(axis=1))
                for rows in (np.asarray(fold.val, dtype=np.int64) for fold in folds)]

    out = []
    for fold, kept in zip(folds, fit_stats_selecting(cfg, train, val_uars), strict=True):
        test = np.asarray(fold.test, dtype=np.int64)
        probs = kept.model.log_probs(features.real[test]).astype(np.float32)
        truth, pred = data.emotion[test], probs.argmax(axis=1)
        res = FoldResult(fold.name, uar(truth, pred), weighted_accuracy(truth, pred), macro_f1(truth, pred),
                         kept.index + 1, kept.best_score, seed, epochs_run=kept.fits, best_step=kept.index + 1,
                         steps_run=kept.fits, l2=kept.l2)
        out.append((res, (test, pred, probs)))
    return out
