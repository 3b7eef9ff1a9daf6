"""One classifier training per (fold, seed) of ``emodiff classify``: the segments a fold trains on (real, their
offline copies, a synthetic set), and the runs, here one after another or in spawned worker processes. What a
run reads is emodiff/ser/fold_data.py; with ``classifier.kind: stats`` a fold trains on units instead (an
utterance, an offline copy of one, a synthetic segment), each one row of speaker-standardised statistics
(emodiff/ser/stats_folds.py).

``classify`` (emodiff/classify.py) plans the folds, checks every one (leaks, empty sets, the paired
baseline) and writes the store; this module only reads the store and trains. A worker reads the
store read-only, seeds its own RNGs from the run's seed, and returns its result to the parent, which
writes them in order, so the results do not depend on how many workers ran them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from emodiff.devices import resolve_device
from emodiff.errors import EmodiffError
from emodiff.parallel import process_pool, thread_budget, use_threads
from emodiff.ser.classifier import ClassifierConfig, SpecAugment
from emodiff.ser.fold_data import (
    Candidate,
    CorpusData,
    FoldResult,
    FoldSpec,
    Offline,
    Predictions,
    read_corpora,
    read_offline,
)
from emodiff.ser.metrics import macro_f1, uar, weighted_accuracy
from emodiff.ser.protocols import Fold
from emodiff.ser.stats_folds import StatsFeatures, run_folds_stats, stats_features, training_units
from emodiff.ser.training import Segments, fit_selecting, utterance_scores

__all__ = [  # what classify and the tests take from here, wherever it is defined
    "Candidate", "CorpusData", "FoldResult", "FoldRun", "FoldSpec", "Offline", "Predictions", "StatsFeatures",
    "fold_runs", "read_corpora", "read_offline", "run_fold", "run_folds", "run_folds_stats", "shared_trainings",
    "stats_features", "training_segments", "training_units",
]


@dataclass(frozen=True)
class FoldRun:
    """One training of :func:`classify`: a fold, the synthetic set it takes (if any), a seed."""

    fold: Fold
    synth: Candidate | None
    seed: int


def fold_runs(runs: list[FoldRun], data: CorpusData, offline: dict[str, Offline], spec: FoldSpec,
              device: torch.device) -> Iterator[tuple[FoldResult, Predictions]]:
    """Each run's result, in the order of ``runs``: here, one after another, or ``spec.workers`` at a time in
    spawned processes (:func:`_in_worker`), each with this process's torch threads / workers (at least 1).

    Runs that train on the same data with the same seed (the folds of a cross-corpus split whose target only
    validates and tests) are trained once (:func:`shared_trainings`). A single training stays here, on all
    the threads. A worker's exception is raised here when its run's turn comes; the runs not started yet
    are cancelled, and those under way are waited for. Ctrl-C, SIGTERM or the generator's close kill the
    workers (:func:`emodiff.parallel.process_pool`), and so does this process's death.
    """
    groups = shared_trainings(runs, spec.classifier)
    group_of = {i: g for g in groups for i in g}
    if spec.workers == 1 or len(groups) == 1:
        # kind stats: every utterance's features once for all the groups, not once per group
        features = stats_features(data, offline) if spec.classifier.kind == "stats" else None
        done: dict[int, tuple[FoldResult, Predictions]] = {}
        for i in range(len(runs)):
            if i not in done:  # the first run of its group: train the group
                group = group_of[i]
                done.update(zip(group, _run_group([runs[j] for j in group], data, offline, features, spec, device),
                                strict=True))
            yield done.pop(i)
        return
    with process_pool(min(spec.workers, len(groups)), use_threads, (max(1, thread_budget() // spec.workers),)) as pool:
        futures = {g: pool.submit(_in_worker, [runs[j] for j in g], spec) for g in groups}
        for i in range(len(runs)):
            group = group_of[i]
            try:
                results = futures[group].result()
            except BrokenProcessPool:
                raise EmodiffError(f"classify: a worker process died (killed, or out of memory?); nothing was added "
                                   f"to {spec.store}; run again with fewer --workers") from None
            yield results[group.index(i)]


def shared_trainings(runs: list[FoldRun], cfg: ClassifierConfig) -> list[tuple[int, ...]]:
    """Indices of ``runs`` grouped by what they train on: the fold's training utterances, the synthetic set and
    the seed fix the training data (:func:`training_segments`) and its trajectory, so the runs of a group
    differ only in the utterances that select and test, and one training serves them all. The CNN-BLSTM's early
    stopping (``cfg.patience``) ends each run at its own validation, so then every run trains alone."""
    if cfg.patience and cfg.kind == "cnn-blstm":
        return [(i,) for i in range(len(runs))]
    groups: dict[tuple, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault((run.fold.train, run.synth.name if run.synth else None, run.seed), []).append(i)
    return [tuple(g) for g in groups.values()]


def _run_group(runs: list[FoldRun], data: CorpusData, offline: dict[str, Offline], features: StatsFeatures | None,
               spec: FoldSpec, device: torch.device) -> list[tuple[FoldResult, Predictions]]:
    """The runs of one :func:`shared_trainings` group, trained once (kind stats: on ``features``, computed once per
    process by the caller)."""
    first = runs[0]
    if spec.classifier.kind == "stats":
        assert features is not None
        units = training_units(first.fold, data, first.synth, features, spec, first.seed)
        return run_folds_stats([run.fold for run in runs], data, units, features, first.seed, spec.classifier)
    if spec.classifier.kind != "cnn-blstm":
        raise ValueError(f"classifier.kind {spec.classifier.kind!r}: expected cnn-blstm or stats")
    train = training_segments(first.fold, data, first.synth, offline, spec, first.seed)
    return run_folds([run.fold for run in runs], data, train, spec, device, first.seed)


def _in_worker(runs: list[FoldRun], spec: FoldSpec) -> list[tuple[FoldResult, Predictions]]:
    """In a worker process: what :func:`fold_runs` runs here for one group of ``runs``, reading the store
    read-only."""
    data, offline = _worker_inputs(spec.store, spec.corpora, spec.augment.offline)
    features = None
    if spec.classifier.kind == "stats":
        features = _worker_features(spec.store, spec.corpora, spec.augment.offline)
    return _run_group(runs, data, offline, features, spec, resolve_device(spec.device))


# Read once per worker process, not per run (a worker serves one classify() and ends with its pool);
# the store is only read while the parent writes its side file, so no lock is involved.
@functools.lru_cache(maxsize=1)
def _worker_inputs(store: Path, corpora: tuple[str, ...],
                   kinds: tuple[str, ...]) -> tuple[CorpusData, dict[str, Offline]]:
    data = read_corpora(store, list(corpora))
    return data, {kind: read_offline(store, kind, data, list(corpora)) for kind in kinds}


@functools.lru_cache(maxsize=1)
def _worker_features(store: Path, corpora: tuple[str, ...], kinds: tuple[str, ...]) -> StatsFeatures:
    return stats_features(*_worker_inputs(store, corpora, kinds))


def training_segments(fold: Fold, data: CorpusData, synth: Candidate | None, offline: dict[str, Offline],
                      spec: FoldSpec, seed: int = 0) -> Segments:
    """What one run of ``fold`` trains on, drawn from ``seed`` (the run's) where a part is random.

    With ``spec.real``: the fold's real training segments, ``augment.extra_real`` more drawn from them with
    replacement, and their offline copies. Then ``synth``'s segments: with ``augment.shuffle`` their labels
    a permutation of themselves, with ``augment.uniform`` their targets 1/K for every class, with
    ``augment.weight`` W their loss weight W (the real segments' is 1).
    """
    augment = spec.augment
    parts = []
    if spec.real:
        rows = data.rows_of(fold.train)
        if augment.extra_real is not None:
            rows = np.concatenate([rows, np.random.default_rng(seed).choice(rows, augment.extra_real)])
        parts.append(Segments(data.mel[rows], data.frames[rows], torch.from_numpy(data.emotion[data.utt[rows]])))
        for extra in offline.values():  # only the augmented copies of this fold's training utterances
            keep = torch.from_numpy(np.flatnonzero(np.isin(extra.utt, np.asarray(fold.train))))
            seg = extra.segments
            parts.append(Segments(seg.mel[keep], seg.frames[keep], seg.labels[keep]))
    if synth is not None:
        seg = synth.segments(spec.store)
        if augment.shuffle:
            order = torch.from_numpy(np.random.default_rng(seed).permutation(len(seg.labels)))
            seg = Segments(seg.mel, seg.frames, seg.labels[order])
        if augment.uniform:
            k = spec.classifier.n_classes
            seg = Segments(seg.mel, seg.frames, seg.labels, torch.full((len(seg), k), 1.0 / k))
        if augment.weight is not None:
            seg = replace(seg, weight=torch.full((len(seg),), augment.weight))
        parts.append(seg)
    return Segments.join(parts)


def run_fold(fold: Fold, data: CorpusData, train: Segments, spec: FoldSpec, device: torch.device,
             seed: int) -> tuple[FoldResult, Predictions]:
    """Train on the fold, keep the weights of the best validation UAR, score the test utterances."""
    return run_folds([fold], data, train, spec, device, seed)[0]


def run_folds(folds: list[Fold], data: CorpusData, train: Segments, spec: FoldSpec, device: torch.device,
              seed: int) -> list[tuple[FoldResult, Predictions]]:
    """Folds that train on the same ``train`` segments with the same seed, trained once: each keeps the weights
    of its own best validation UAR and scores its own test utterances, exactly as separate runs would."""
    cfg = replace(spec.classifier, seed=seed)
    val = _Scorer(tuple(sorted({u for fold in folds for u in fold.val})), data, device, cfg.batch_size)
    where = {u: i for i, u in enumerate(val.utts)}
    own = [np.array([where[u] for u in fold.val], dtype=np.int64) for fold in folds]

    def val_uars(model) -> list[float]:  # every fold's validation UAR from one pass over their utterances
        truth, pred = val.truth_pred(model)
        return [uar(truth[rows], pred[rows]) for rows in own]

    masks = SpecAugment(freq_width=spec.augment.masks[0], time_width=spec.augment.masks[1])
    fitted = fit_selecting(cfg, train, device, val_uars, mixup_alpha=spec.augment.mixup,
                           specaugment=masks if spec.augment.specaugment else None)
    out = []
    for fold, kept in zip(folds, fitted, strict=True):
        test = _Scorer(fold.test, data, device, cfg.batch_size)
        probs = test.scores(kept.model)
        truth, pred = test.truth, probs.argmax(axis=1)
        res = FoldResult(fold.name, uar(truth, pred), weighted_accuracy(truth, pred), macro_f1(truth, pred),
                         kept.best_epoch, kept.best_score, seed, epochs_run=kept.epochs_run,
                         best_step=kept.best_step, steps_run=kept.steps_run)
        out.append((res, (np.asarray(fold.test), pred, probs)))
    return out


class _Scorer:
    """Per-utterance scores of a fixed set of utterances; the segment index is built once."""

    def __init__(self, utts: tuple[int, ...], data: CorpusData, device: torch.device, batch: int) -> None:
        rows = data.rows_of(utts)
        self.utts = utts
        local = {u: i for i, u in enumerate(utts)}
        self.mel, self.frames = data.mel[rows], data.frames[rows]
        self.local = np.array([local[u] for u in data.utt[rows]], dtype=np.int64)
        self.truth = data.emotion[np.asarray(utts)]
        self.n, self.device, self.batch = len(utts), device, batch

    def scores(self, model) -> np.ndarray:
        return utterance_scores(model, self.mel, self.frames, self.local, self.n, self.device, self.batch)

    def truth_pred(self, model) -> tuple[np.ndarray, np.ndarray]:
        return self.truth, self.scores(model).argmax(axis=1)
