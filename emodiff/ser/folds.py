"""One classifier training per (fold, seed) of ``emodiff classify``: the corpus data it reads, the segments a
fold trains on (real, their offline copies, a synthetic set), and the runs, here one after another or in
spawned worker processes. With ``classifier.kind: stats`` a fold trains on units instead (an utterance, an
offline copy of one, a synthetic segment), each one row of speaker-standardised statistics
(:func:`stats_features`, :func:`training_units`; emodiff/ser/stats.py).

``classify`` (emodiff/classify.py) plans the folds, checks every one (leaks, empty sets, the paired
baseline) and writes the store; this module only reads the store and trains. A worker reads the
store read-only, seeds its own RNGs from the run's seed, and returns its result to the parent, which
writes them in order, so the results do not depend on how many workers ran them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from emodiff import store as st
from emodiff.corpora import CORPORA, unknown_corpus
from emodiff.devices import resolve_device
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment, Experiment
from emodiff.parallel import process_pool, thread_budget, use_threads
from emodiff.records import Augmented, Corpus, Synthetic
from emodiff.ser.classifier import ClassifierConfig, SpecAugment
from emodiff.ser.metrics import macro_f1, uar, weighted_accuracy
from emodiff.ser.protocols import Fold
from emodiff.ser.stats import Units, fit_stats_selecting, standardise_groups, utterance_stats
from emodiff.ser.training import Segments, fit_selecting, utterance_scores


@dataclass(frozen=True)
class FoldSpec:
    """What every run of one ``classify`` shares: where the data are, what it trains on, how, and how many at once."""

    store: Path
    corpora: tuple[str, ...]  # read, source first
    classifier: ClassifierConfig
    experiment: Experiment = field(default_factory=Experiment)  # the data trained on, what is added, the controls
    device: str = "auto"
    workers: int = 1

    @property
    def real(self) -> bool:
        """Train on the fold's real utterances (False: on synthetic segments alone)."""
        return "real" in self.experiment.sources

    @property
    def augment(self) -> Augment:
        """What is added to the data, and the controls."""
        return self.experiment.augment


@dataclass
class FoldResult:
    name: str
    uar: float
    wa: float
    f1: float
    best_epoch: int
    val_uar: float
    seed: int = 0
    synthetic: str = ""
    epochs_run: int = 0  # below the recipe's epochs when early stopping ended the fold
    best_step: int = 0  # optimiser steps taken when the kept weights were validated
    steps_run: int = 0  # optimiser steps taken in all (fewer than planned when early stopping ended the fold)
    # kind stats: the L2 strength kept (best_epoch and best_step are its 1-based place in classifier.l2, epochs_run
    # and steps_run the grid's size); None for the CNN-BLSTM, whose results do not record it
    l2: float | None = None


@dataclass
class CorpusData:
    """The utterances of one or two corpora (source first), with their segments."""

    mel: torch.Tensor  # [N, C, F] float16
    frames: torch.Tensor  # [N]
    utt: np.ndarray  # [N] row in the utterance arrays
    emotion: np.ndarray  # [U]
    speaker: np.ndarray  # [U] as the corpus names them
    session: np.ndarray  # [U]
    ids: np.ndarray  # [U]
    corpus: np.ndarray  # [U]
    offset: dict[str, int]  # first utterance row of each corpus
    gender: np.ndarray | None = None  # [U] "F"/"M"; None when a corpus's table has no gender column

    @property
    def qualified(self) -> np.ndarray:
        """[U] "corpus:speaker", the form the generator's training speakers are recorded in."""
        return np.char.add(np.char.add(self.corpus.astype(str), ":"), self.speaker.astype(str))

    def rows_of(self, utts: tuple[int, ...]) -> np.ndarray:
        """Segment rows of the utterances ``utts``."""
        return np.flatnonzero(np.isin(self.utt, np.asarray(utts, dtype=np.int64)))


@dataclass
class Candidate:
    """A /synthetic set a fold may train on: who its generator saw, and its segments, read on first use."""

    name: str
    training_speakers: frozenset[str]
    shape: tuple[int, ...]
    count: int
    _segments: Segments | None = None
    _units: Units | None = None

    def segments(self, store: Path) -> Segments:
        if self._segments is None:
            with st.open_store(store) as f:
                record = Synthetic.read(f, self.name)
                mel, valid = record.load_mel(f)
            frames = torch.from_numpy(valid) if valid is not None else torch.full((len(mel),), mel.shape[2])
            self._segments = Segments(torch.from_numpy(mel), frames, torch.from_numpy(record.emotion))
        return self._segments

    def units(self, store: Path) -> Units:
        """kind stats: each segment one unit, its statistics standardised within its ``speaker`` (the voice it was
        drawn in; the whole set is one group when the set has no speaker column)."""
        if self._units is None:
            seg = self.segments(store)
            with st.open_store(store) as f:
                speaker = Synthetic.read(f, self.name).load_speaker(f)
            x = utterance_stats(seg.mel, seg.frames, np.arange(len(seg)), len(seg))
            group = speaker if speaker is not None else np.zeros(len(seg), dtype=np.int64)
            self._units = Units(standardise_groups(x, group), seg.labels.numpy().astype(np.int64))
        return self._units


def read_corpora(store: Path, corpora: list[str], segments: bool = True) -> CorpusData:
    mels, frames, utts, tables, offset, n = [], [], [], [], {}, 0
    with st.open_store(store) as f:
        for corpus in corpora:
            if not Corpus.exists(f, corpus) and corpus not in CORPORA:  # a named one is "not prepared" below
                raise EmodiffError(f"{unknown_corpus(corpus)} (prepared in {store}: "
                                   f"{', '.join(Corpus.names(f)) or 'none'})")
            record = Corpus.read(f, corpus)
            table = record.utterances
            mels.append(torch.from_numpy(record.load_mel(f)) if segments
                        else torch.zeros((0, *record.mel_shape[1:]), dtype=torch.float16))
            frames.append(torch.from_numpy(record.seg_frames))
            utts.append(record.seg_utt + n)
            tables.append(table | {"corpus": np.full(len(table["id"]), corpus)})
            offset[corpus] = n
            n += len(table["id"])
    if len({m.shape[1:] for m in mels}) > 1:
        shapes = ", ".join(f"{c} {tuple(m.shape[1:])}" for c, m in zip(corpora, mels, strict=True))
        raise EmodiffError(f"{store}: the corpora's segments differ in shape ({shapes})")

    def col(key: str) -> np.ndarray:
        return np.concatenate([t[key] for t in tables])

    gender = col("gender").astype(str) if all("gender" in t for t in tables) else None
    return CorpusData(torch.cat(mels), torch.cat(frames), np.concatenate(utts), col("emotion").astype(np.int64),
                 col("speaker"), col("session"), col("id"), col("corpus"), offset, gender)


Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]  # test utterance rows, predicted class, scores


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
        done: dict[int, tuple[FoldResult, Predictions]] = {}
        for i in range(len(runs)):
            if i not in done:  # the first run of its group: train the group
                group = group_of[i]
                done.update(zip(group, _run_group([runs[j] for j in group], data, offline, spec, device),
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


def _run_group(runs: list[FoldRun], data: CorpusData, offline: dict[str, Offline], spec: FoldSpec,
               device: torch.device) -> list[tuple[FoldResult, Predictions]]:
    """The runs of one :func:`shared_trainings` group, trained once."""
    first = runs[0]
    if spec.classifier.kind == "stats":
        features = stats_features(data, offline)
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
    return _run_group(runs, data, offline, spec, resolve_device(spec.device))


# Read once per worker process, not per run (a worker serves one classify() and ends with its pool);
# the store is only read while the parent writes its side file, so no lock is involved.
@functools.lru_cache(maxsize=1)
def _worker_inputs(store: Path, corpora: tuple[str, ...],
                   kinds: tuple[str, ...]) -> tuple[CorpusData, dict[str, Offline]]:
    data = read_corpora(store, list(corpora))
    return data, {kind: read_offline(store, kind, data, list(corpora)) for kind in kinds}


def read_offline(store: Path, kind: str, data: CorpusData, corpora: list[str]) -> Offline:
    """Every training corpus's /augmented/<corpus>/<kind> segments, labelled; ``utt`` mapped into ``data``."""
    parts, utts, params = [], [], []
    with st.open_store(store) as f:
        for corpus in corpora:
            if not Augmented.exists(f, corpus, kind):
                continue
            record = Augmented.read(f, corpus, kind)
            utt = record.seg_utt + data.offset[corpus]
            parts.append(Segments(torch.from_numpy(record.load_mel(f)), torch.from_numpy(record.seg_frames),
                                  torch.from_numpy(data.emotion[utt])))
            utts.append(utt)
            params.append(record.seg_param.astype(np.float64))
    if not parts:
        raise EmodiffError(f"{store}: no /augmented/*/{kind} set for {' or '.join(corpora)}; run "
                           f"`emodiff augment {kind} --corpus {corpora[0]}` first")
    return Offline(Segments.join(parts), np.concatenate(utts), np.concatenate(params))


@dataclass(frozen=True)
class Offline:
    """Offline-augmented segments and the utterance row in ``CorpusData`` each was made from."""

    segments: Segments
    utt: np.ndarray  # [N]
    param: np.ndarray | None = None  # [N] the speed factor or SNR of each segment's copy (None: one copy each)


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
