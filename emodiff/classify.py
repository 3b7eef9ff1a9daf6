"""``emodiff classify``: the CNN-BLSTM under a speaker-independent protocol -> ``/results/<name>``.

Protocols: within one corpus (``loso``, ``session``, ``groups:K``), cross-corpus (train on one
corpus, select on a seeded 30 % of the other's speakers, test on the rest) and adaptation (the
source plus a share of the target's other speakers, tested on a fixed half of them).

For each fold and each of ``repeats`` seeds the classifier trains on the fold's training
utterances (real segments, their offline augmentations, synthetic segments, or a mix, with mixup
and SpecAugment on the fly), keeps the epoch with the best validation UAR, and scores the test
utterances by pooling their segments. A synthetic set is used in a fold only if the generator that
drew it never saw the fold's test or validation speakers (its ``training_speakers`` attr); when the
store holds several sets, each fold takes one that qualifies. Otherwise the run stops before any
training, or with ``allow_leak`` goes on and is marked leaky.

With ``workers`` N > 1 the (fold, seed) trainings run N at a time in spawned processes, each on
1/N of this process's torch threads (at least 1), after every check. Each seeds its own RNGs, and
only this process writes the store, in the same order, so the results do not depend on N.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from emodiff import store as st
from emodiff.corpora import CORPORA, PAIRED
from emodiff.devices import resolve_device
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment, Experiment, TrainOn
from emodiff.parallel import thread_budget, use_threads
from emodiff.progress import QUIET, Progress
from emodiff.records import Absent, Augmented, Corpus, Results, Synthetic, existing, taken
from emodiff.ser.classifier import ClassifierConfig
from emodiff.ser.metrics import confusion, macro_f1, summarize, uar, weighted_accuracy
from emodiff.ser.paired import PairedComparison, compare
from emodiff.ser.protocols import Fold, adaptation, by_session, cross_corpus, loso, speaker_groups
from emodiff.ser.training import Segments, fit, utterance_scores


@dataclass(frozen=True)
class ClassifyJob:
    store: Path
    corpus: str  # the corpus tested on (within-corpus: the only one)
    train_corpus: str | None = None  # cross-corpus and adaptation: the source corpus
    folds: str = "loso"  # within-corpus protocol: loso | session | groups:K
    target_fraction: float | None = None  # adaptation: share of the target's non-test utterances trained on
    dev_fraction: float = 0.3  # cross-corpus: share of target utterances (by speaker) for model selection
    split_seed: int = 0  # seeds the cross-corpus and adaptation speaker splits
    train_on: TrainOn = "real"
    augment: Augment = field(default_factory=Augment)
    allow_leak: bool = False
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    repeats: int = 1  # seeds classifier.seed, +1, ...
    name: str | None = None
    device: str = "auto"
    overwrite: bool = False
    baseline: str | None = None  # a /results name run on the same folds and seeds: paired statistics against it
    workers: int = 1  # (fold, seed) trainings at once, each in its own process; 1: one after another, in this one

    def __post_init__(self) -> None:
        Experiment(self.train_on, self.augment)  # checks --train-on, and that offline augmentations have real data
        if self.repeats < 1:
            raise EmodiffError(f"--repeats must be at least 1, got {self.repeats}")
        if self.workers < 1:
            raise EmodiffError(f"--workers must be at least 1, got {self.workers}")
        if self.target_fraction is not None:
            if self.train_corpus is None:
                raise EmodiffError("--target-fraction needs --train SOURCE and --test TARGET")
            if not 0.0 <= self.target_fraction <= 1.0:
                raise EmodiffError(f"--target-fraction {self.target_fraction:g}: expected a fraction in [0, 1] "
                                   "(30 % is 0.3)")
        if self.train_corpus is not None and self.train_corpus == self.corpus:
            raise EmodiffError(f"--train and --test are both {self.corpus}; for one corpus use --corpus with --loso "
                               "or --folds")

    @property
    def protocol(self) -> str:
        if self.target_fraction is not None:
            return "adaptation"
        return "cross-corpus" if self.train_corpus is not None else self.folds

    @property
    def experiment(self) -> Experiment:
        """``train_on`` and ``augment`` as one :class:`Experiment` (EmodiffError when they do not fit)."""
        return Experiment(self.train_on, self.augment)

    @property
    def effective_train_on(self) -> TrainOn:
        """``--augment synthetic`` adds synthetic data to the real training set."""
        return self.experiment.train_on

    def config(self) -> dict:
        """What /results/<name> was made with (its ``config`` attr and hash); not ``workers`` or ``device``,
        which change how fast, not what."""
        return {"corpus": self.corpus, "train_corpus": self.train_corpus, "protocol": self.protocol,
                "folds": self.folds, "target_fraction": self.target_fraction, "dev_fraction": self.dev_fraction,
                "split_seed": self.split_seed, "train_on": self.effective_train_on, "augment": asdict(self.augment),
                "classifier": asdict(self.classifier), "repeats": self.repeats, "allow_leak": self.allow_leak,
                **({"baseline": self.baseline} if self.baseline else {})}

    @property
    def corpora(self) -> list[str]:
        """The corpora read, source first."""
        return [self.corpus] if self.train_corpus is None else [self.train_corpus, self.corpus]

    def default_name(self) -> str:
        if self.protocol == "adaptation":
            where = f"{self.train_corpus}-to-{self.corpus}-adapt{self.target_fraction:g}"
        elif self.protocol == "cross-corpus":
            where = f"{self.train_corpus}-to-{self.corpus}"
        else:
            where = f"{self.corpus}-{self.folds.replace(':', '')}"
        return "-".join([where, *self.experiment.name_parts])


@dataclass(frozen=True)
class ClassifyRequest:
    """``emodiff classify``'s flags as given; construction checks how they combine, :meth:`jobs` expands them.

    The protocol is one of: within one corpus (``corpus`` with ``folds``; ``loso`` is ``folds="loso"``),
    cross-corpus (``train`` and ``test``), adaptation (those and ``target_fraction``, a comma list
    of fractions that sweeps, one job each).
    """

    store: Path
    corpus: str | None = None
    loso: bool = False
    folds: str = "loso"
    train: str | None = None
    test: str | None = None
    target_fraction: str | None = None  # "0.3" or "0,0.1,0.3"
    train_on: str = "real"
    augment: str = ""
    allow_leak: bool = False
    repeats: int = 1
    split_seed: int = 0
    name: str | None = None
    device: str = "auto"
    overwrite: bool = False
    compare_with: str | None = None  # a /results name: the paired baseline of every job
    workers: int = 1

    def __post_init__(self) -> None:
        if self.loso and self.folds != "loso":
            raise EmodiffError(f"--loso and --folds {self.folds} disagree; give one of them")
        if (self.train is None) != (self.test is None):
            raise EmodiffError("cross-corpus needs both --train SOURCE and --test TARGET")
        if self.train is not None and (self.corpus is not None or self.loso or self.folds != "loso"):
            raise EmodiffError("--train/--test is its own protocol; drop --corpus, --loso and --folds")
        _fractions(self.target_fraction)  # a bad number stops here, before the store is read
        if self.target_fraction is not None and self.train is None:
            raise EmodiffError("--target-fraction needs --train SOURCE and --test TARGET")

    def jobs(self, classifier: ClassifierConfig, prepared: Callable[[], list[str]]) -> list[ClassifyJob]:
        """One :class:`ClassifyJob` per target fraction, every one checked before any runs.

        ``prepared()`` lists the store's corpora; within one corpus it picks ``--corpus`` when the
        store holds only one.
        """
        corpus = self.test
        if self.train is None:
            corpora = prepared()
            if self.corpus is None and len(corpora) > 1:
                raise EmodiffError(f"{self.store}: holds {', '.join(corpora)}; choose one with --corpus")
            corpus = self.corpus or corpora[0]
        augment = Augment.parse(self.augment)
        fractions = _fractions(self.target_fraction)
        return [ClassifyJob(store=self.store, corpus=corpus, train_corpus=self.train,  # type: ignore[arg-type]
                            folds=self.folds, target_fraction=fraction, split_seed=self.split_seed,
                            train_on=self.train_on, augment=augment, allow_leak=self.allow_leak,  # type: ignore[arg-type]
                            classifier=classifier, repeats=self.repeats,
                            name=f"{self.name}-{fraction:g}" if self.name and len(fractions) > 1 else self.name,
                            device=self.device, overwrite=self.overwrite, baseline=self.compare_with,
                            workers=self.workers)
                for fraction in fractions]


def _fractions(text: str | None) -> list[float | None]:
    """``--target-fraction`` as the fractions to run, one job each; ``[None]`` without it."""
    if text is None:
        return [None]
    try:
        out: list[float | None] = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out:
        raise EmodiffError(f"--target-fraction {text}: expected comma-separated numbers")
    return out


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


@dataclass
class ClassifyResult:
    group: str
    folds: list[FoldResult]
    uar: tuple[float, float]  # mean over all folds and seeds, std over folds (of their seed means)
    uar_seed_std: float  # std over seeds of the per-seed mean (0 with one seed)
    leaky: bool
    seconds: float
    protocol: str = "loso"
    comparison: PairedComparison | None = None  # against job.baseline, over the same (fold, seed) pairs


@dataclass
class _Data:
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

    @property
    def qualified(self) -> np.ndarray:
        """[U] "corpus:speaker", the form the generator's training speakers are recorded in."""
        return np.char.add(np.char.add(self.corpus.astype(str), ":"), self.speaker.astype(str))

    def rows_of(self, utts: tuple[int, ...]) -> np.ndarray:
        """Segment rows of the utterances ``utts``."""
        return np.flatnonzero(np.isin(self.utt, np.asarray(utts, dtype=np.int64)))


@dataclass
class _Candidate:
    """A /synthetic set a fold may train on: who its generator saw, and its segments, read on first use."""

    name: str
    training_speakers: frozenset[str]
    shape: tuple[int, ...]
    count: int
    _segments: Segments | None = None

    def segments(self, store: Path) -> Segments:
        if self._segments is None:
            with st.open_store(store) as f:
                record = Synthetic.read(f, self.name)
                mel, valid = record.load_mel(f)
            frames = torch.from_numpy(valid) if valid is not None else torch.full((len(mel),), mel.shape[2])
            self._segments = Segments(torch.from_numpy(mel), frames, torch.from_numpy(record.emotion))
        return self._segments


def plan_held_out(store: Path, job: ClassifyJob) -> list[list[str]]:
    """Per fold of ``job``'s protocol, the speakers it holds out ("corpus:speaker"): a generator must not see them."""
    data = _read_corpora(store, job.corpora, segments=False)
    return [held_out(fold, data) for fold in plan_folds(data, job)]


def _read_corpora(store: Path, corpora: list[str], segments: bool = True) -> _Data:
    mels, frames, utts, tables, offset, n = [], [], [], [], {}, 0
    with st.open_store(store) as f:
        for corpus in corpora:
            if not Corpus.exists(f, corpus) and corpus not in CORPORA:
                raise EmodiffError(f"unknown corpus {corpus!r}; expected one of {', '.join(CORPORA)}")
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

    return _Data(torch.cat(mels), torch.cat(frames), np.concatenate(utts), col("emotion").astype(np.int64),
                 col("speaker"), col("session"), col("id"), col("corpus"), offset)


def _synthetic_sets(store: Path, wanted: str) -> list[_Candidate]:
    """The synthetic sets a run may draw on: the one named, or every set in the store."""
    with st.open_store(store) as f:
        names = Synthetic.names(f)
        if not names:
            raise EmodiffError(f"{store}: holds no synthetic set; run `emodiff sample --n N` first")
        if wanted and wanted not in names:
            raise EmodiffError(f"{store}: no synthetic set {wanted!r}; sets: {', '.join(names)}")
        sets = []
        for name in [wanted] if wanted else names:
            record = Synthetic.read(f, name)
            record.check(store, speakers=True)
            sets.append(_Candidate(name, frozenset(record.provenance.training_speakers), record.mel_shape[1:],
                                   record.mel_shape[0]))
    return sets


def plan_folds(data: _Data, job: ClassifyJob) -> list[Fold]:
    """The protocol's folds over ``data``'s utterance rows (source rows first where there are two corpora)."""
    if job.train_corpus is not None:
        n_source = data.offset[job.corpus]  # the target's rows follow the source's
        target = data.speaker[n_source:].tolist()
        if job.target_fraction is not None:
            return [adaptation(n_source, target, job.target_fraction, seed=job.split_seed)]
        return [cross_corpus(n_source, target, job.dev_fraction, seed=job.split_seed)]
    folds = job.folds
    if folds == "loso":
        return loso(data.speaker.tolist(), data.session.tolist(), pair_by_session=job.corpus in PAIRED)
    if folds == "session":
        return by_session(data.speaker.tolist(), data.session.tolist())
    if folds.startswith("groups:"):
        try:
            k = int(folds.partition(":")[2])
        except ValueError:
            raise EmodiffError(f"--folds {folds}: expected groups:K with an integer K") from None
        return speaker_groups(data.speaker.tolist(), k)
    raise EmodiffError(f"--folds {folds!r}: expected loso, session or groups:K")


def held_out(fold: Fold, data: _Data) -> list[str]:
    """Speakers the fold tests or validates on and does not also train on ("corpus:speaker", sorted).

    Only adaptation with fraction 1 validates on training speakers (source rows); a generator that
    saw those tells the classifier nothing it does not already train on.
    """
    q = data.qualified
    train = set(q[list(fold.train)].tolist())
    return sorted(set(q[list(fold.test + fold.val)].tolist()) - train)


def choose_synthetic(fold: Fold, data: _Data, sets: list[_Candidate], allow: bool) -> tuple[_Candidate, bool]:
    """The set this fold trains on and whether it leaks; EmodiffError for a leak unless ``allow``.

    With several sets, a fold takes one whose generator saw none of its held-out speakers (the one
    trained on most speakers, then by name); a leaky one only with ``allow``.
    """
    held = held_out(fold, data)
    clean = [s for s in sets if not s.training_speakers.intersection(held)]
    if clean:
        return sorted(clean, key=lambda s: (-len(s.training_speakers), s.name))[0], False
    chosen = sorted(sets, key=lambda s: (len(s.training_speakers.intersection(held)), s.name))[0]
    if not allow:
        leaked = sorted(chosen.training_speakers.intersection(held))
        which = f"the generator of /synthetic/{chosen.name}" if len(sets) == 1 else "every synthetic set's generator"
        raise EmodiffError(
            f"fold {fold.name}: {which} was trained on {', '.join(leaked)}, which this fold tests or validates on; "
            f"train one with `emodiff train --exclude-speakers {','.join(held)}` and sample from it "
            "(or pass --allow-leak to go on, marked leaky)")
    return chosen, True


def classify(job: ClassifyJob, progress: Progress = QUIET) -> ClassifyResult:
    """Run every fold of the protocol for each seed and store metrics and predictions; see the module docstring.

    ``progress`` hears the number of fold runs (folds x seeds) and each one done.
    """
    start = time.perf_counter()
    device = resolve_device(job.device)
    name = job.name or job.default_name()
    # Checked before minutes of reading and training; classify replaces results only with --overwrite.
    if not job.overwrite and not isinstance(existing(job.store, Results.path(name), job.config()), Absent):
        raise taken(job.store, Results.path(name), instead="--name")
    corpora = job.corpora
    data = _read_corpora(job.store, corpora)
    folds = plan_folds(data, job)
    for fold in folds:
        if not fold.train or not fold.test or not fold.val:
            raise EmodiffError(f"fold {fold.name}: an empty training, validation or test set")
    offline = {kind: _read_offline(job.store, kind, data, corpora) for kind in job.augment.offline}
    train_on = job.effective_train_on
    sets = _synthetic_sets(job.store, job.augment.synthetic or "") if train_on != "real" else []
    for s in sets:
        if s.shape != tuple(data.mel.shape[1:]):
            raise EmodiffError(f"{job.store}: /synthetic/{s.name} segments are {s.shape}, the corpus's are "
                               f"{tuple(data.mel.shape[1:])}")
    # Every fold is checked before any training, so a leak stops the run at once.
    plan = [(fold, *choose_synthetic(fold, data, sets, job.allow_leak)) if sets else (fold, None, False)
            for fold in folds]
    for fold, synth, _ in plan:
        real = len(data.rows_of(fold.train)) if train_on != "synthetic" else 0
        if real + (synth.count if synth else 0) == 0:
            raise EmodiffError(f"fold {fold.name}: no training segments ({train_on} data)")
    leaky = any(leak for _, _, leak in plan)
    seeds = [job.classifier.seed + r for r in range(job.repeats)]
    baseline = _baseline_uars(job, [(_group_name(fold), seed) for seed in seeds for fold in folds])
    runs = [_Run(fold, synth, seed) for seed in seeds for fold, synth, _ in plan]
    results: list[FoldResult] = []
    with st.write_group(job.store, Results.path(name), config=job.config(), overwrite=job.overwrite,
                        what=f"classify {name}") as g, contextlib.closing(
            _fold_runs(runs, data, offline, job, device)) as done:
        progress.total(len(runs))
        for (fold, synth, leak), (res, preds) in zip(plan * len(seeds), done, strict=True):
            res.synthetic = synth.name if synth else ""
            group_name = _group_name(fold) + (f"@seed{res.seed}" if len(seeds) > 1 else "")
            _write_fold(g.create_group(group_name), res, preds, data, fold, leak)
            results.append(res)
            progress.advance()
        summary = _summary(results, seeds)
        g.attrs.update(
            corpus=job.corpus, train_corpus=job.train_corpus or job.corpus, protocol=job.protocol, folds=job.folds,
            target_fraction=job.target_fraction if job.target_fraction is not None else float("nan"),
            train_on=train_on, augment=job.augment.label(), leaky=leaky, repeats=job.repeats,
            seeds=json.dumps(seeds), split_seed=job.split_seed,
            synthetic=",".join(sorted({r.synthetic for r in results} - {""})), **summary)
        comparison = None
        if baseline is not None:
            ours = {(_group_name(fold), r.seed): r.uar for (fold, _, _), r in zip(plan * len(seeds), results,
                                                                                   strict=True)}
            comparison = compare(baseline, ours, experiment=name, baseline=str(job.baseline))
            g.attrs.update(comparison.as_attrs())
    return ClassifyResult(f"/results/{name}", results, (summary["uar_mean"], summary["uar_std"]),
                          summary["uar_seed_std"], leaky, time.perf_counter() - start, job.protocol, comparison)


Predictions = tuple[np.ndarray, np.ndarray, np.ndarray]  # test utterance rows, predicted class, scores


@dataclass(frozen=True)
class _Run:
    """One training of :func:`classify`: a fold, the synthetic set it takes (if any), a seed."""

    fold: Fold
    synth: _Candidate | None
    seed: int


def _fold_runs(runs: list[_Run], data: _Data, offline: dict[str, _Offline], job: ClassifyJob,
               device: torch.device) -> Iterator[tuple[FoldResult, Predictions]]:
    """Each run's result, in the order of ``runs``: here, one after another, or ``job.workers`` at a time in
    spawned processes (:func:`_in_worker`), each with this process's torch threads / workers (at least 1).

    A single run stays here, on all the threads. A worker's exception is raised here when its run's turn
    comes; the runs not started yet are cancelled, and those under way are waited for.
    """
    if job.workers == 1 or len(runs) == 1:
        for run in runs:
            yield _run_fold(run.fold, data, _training_segments(run.fold, data, run.synth, offline, job), job, device,
                            run.seed)
        return
    # spawn, not fork: a forked child of a process that has run torch's thread pools can deadlock.
    pool = ProcessPoolExecutor(max_workers=min(job.workers, len(runs)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=use_threads, initargs=(max(1, thread_budget() // job.workers),))
    try:
        futures = [pool.submit(_in_worker, run, job) for run in runs]
        for future in futures:
            try:
                yield future.result()
            except BrokenProcessPool:
                raise EmodiffError(f"classify: a worker process died (killed, or out of memory?); nothing was added "
                                   f"to {job.store}; run again with fewer --workers") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_worker(run: _Run, job: ClassifyJob) -> tuple[FoldResult, Predictions]:
    """In a worker process: what :func:`_fold_runs` runs here for ``run``, reading the store read-only."""
    data, offline = _worker_inputs(job.store, tuple(job.corpora), job.augment.offline)
    return _run_fold(run.fold, data, _training_segments(run.fold, data, run.synth, offline, job), job,
                     resolve_device(job.device), run.seed)


# Read once per worker process, not per run (a worker serves one classify() and ends with its pool);
# the store is only read while the parent writes its side file, so no lock is involved.
@functools.lru_cache(maxsize=1)
def _worker_inputs(store: Path, corpora: tuple[str, ...],
                   kinds: tuple[str, ...]) -> tuple[_Data, dict[str, _Offline]]:
    data = _read_corpora(store, list(corpora))
    return data, {kind: _read_offline(store, kind, data, list(corpora)) for kind in kinds}


def _group_name(fold: Fold) -> str:
    """A fold's group under /results/<name> (``@seedN`` is added with several seeds)."""
    return fold.name.replace("/", "_")


def _baseline_uars(job: ClassifyJob, keys: list[tuple[str, int]]) -> dict[tuple[str, int], float] | None:
    """UAR per (fold, seed) of ``job.baseline``, checked to cover exactly this run's (fold, seed) ``keys``,
    before any training: a paired comparison needs the same folds and seeds on both sides."""
    if job.baseline is None:
        return None
    with st.open_store(job.store) as f:
        if not Results.exists(f, job.baseline):
            raise EmodiffError(f"{job.store}: no /results/{job.baseline} to compare with; run it first or drop "
                               "--compare-with")
        base = Results.read(f, job.baseline)
    uars = {(fold.name.split("@seed")[0], fold.seed): fold.uar for fold in base.folds
            if fold.uar is not None and fold.seed is not None}
    if set(uars) != set(keys):
        missing, extra = sorted(set(keys) - set(uars))[:3], sorted(set(uars) - set(keys))[:3]
        raise EmodiffError(f"--compare-with {job.baseline}: its folds and seeds differ from this run's "
                           f"(this run only: {missing or 'none'}; {job.baseline} only: {extra or 'none'}); "
                           "run both with the same protocol and --repeats")
    return uars


def _summary(results: list[FoldResult], seeds: list[int]) -> dict[str, float]:
    """Mean over every (fold, seed); std over folds of their seed-averaged values; std over seeds of their means."""
    out: dict[str, float] = {}
    for key, attr in (("uar", "uar"), ("wa", "wa"), ("f1", "f1")):
        table = np.array([getattr(r, attr) for r in results]).reshape(len(seeds), -1)  # [seeds, folds]
        out[f"{key}_mean"] = float(table.mean())
        out[f"{key}_std"] = summarize(table.mean(axis=0))[1]
        out[f"{key}_seed_std"] = summarize(table.mean(axis=1))[1]
    return out


def _read_offline(store: Path, kind: str, data: _Data, corpora: list[str]) -> _Offline:
    """Every training corpus's /augmented/<corpus>/<kind> segments, labelled; ``utt`` mapped into ``data``."""
    parts, utts = [], []
    with st.open_store(store) as f:
        for corpus in corpora:
            if not Augmented.exists(f, corpus, kind):
                continue
            record = Augmented.read(f, corpus, kind)
            utt = record.seg_utt + data.offset[corpus]
            parts.append(Segments(torch.from_numpy(record.load_mel(f)), torch.from_numpy(record.seg_frames),
                                  torch.from_numpy(data.emotion[utt])))
            utts.append(utt)
    if not parts:
        raise EmodiffError(f"{store}: no /augmented/*/{kind} set for {' or '.join(corpora)}; run "
                           f"`emodiff augment {kind} --corpus {corpora[0]}` first")
    return _Offline(Segments.join(parts), np.concatenate(utts))


@dataclass(frozen=True)
class _Offline:
    """Offline-augmented segments and the utterance row in ``_Data`` each was made from."""

    segments: Segments
    utt: np.ndarray  # [N]


def _training_segments(fold: Fold, data: _Data, synth: _Candidate | None, offline: dict[str, _Offline],
                       job: ClassifyJob) -> Segments:
    parts = []
    if job.effective_train_on != "synthetic":
        rows = data.rows_of(fold.train)
        parts.append(Segments(data.mel[rows], data.frames[rows], torch.from_numpy(data.emotion[data.utt[rows]])))
        for extra in offline.values():  # only the augmented copies of this fold's training utterances
            keep = torch.from_numpy(np.flatnonzero(np.isin(extra.utt, np.asarray(fold.train))))
            seg = extra.segments
            parts.append(Segments(seg.mel[keep], seg.frames[keep], seg.labels[keep]))
    if synth is not None:
        parts.append(synth.segments(job.store))
    return Segments.join(parts)


def _run_fold(fold: Fold, data: _Data, train: Segments, job: ClassifyJob, device: torch.device,
              seed: int) -> tuple[FoldResult, Predictions]:
    """Train on the fold, keep the best validation epoch, score the test utterances."""
    cfg = replace(job.classifier, seed=seed)
    val = _Scorer(fold.val, data, device, cfg.batch_size)
    fitted = fit(cfg, train, device, mixup_alpha=job.augment.mixup, specaugment=job.augment.specaugment,
                 select=lambda model: uar(*val.truth_pred(model)))
    test = _Scorer(fold.test, data, device, cfg.batch_size)
    probs = test.scores(fitted.model)
    truth, pred = test.truth, probs.argmax(axis=1)
    res = FoldResult(fold.name, uar(truth, pred), weighted_accuracy(truth, pred), macro_f1(truth, pred),
                     fitted.best_epoch, fitted.best_score, seed, epochs_run=fitted.epochs_run)
    return res, (np.asarray(fold.test), pred, probs)


class _Scorer:
    """Per-utterance scores of a fixed set of utterances; the segment index is built once."""

    def __init__(self, utts: tuple[int, ...], data: _Data, device: torch.device, batch: int) -> None:
        rows = data.rows_of(utts)
        local = {u: i for i, u in enumerate(utts)}
        self.mel, self.frames = data.mel[rows], data.frames[rows]
        self.local = np.array([local[u] for u in data.utt[rows]], dtype=np.int64)
        self.truth = data.emotion[np.asarray(utts)]
        self.n, self.device, self.batch = len(utts), device, batch

    def scores(self, model) -> np.ndarray:
        return utterance_scores(model, self.mel, self.frames, self.local, self.n, self.device, self.batch)

    def truth_pred(self, model) -> tuple[np.ndarray, np.ndarray]:
        return self.truth, self.scores(model).argmax(axis=1)


def _write_fold(g, res: FoldResult, preds: Predictions, data: _Data, fold: Fold, leak: bool) -> None:
    utts, pred, probs = preds
    truth = data.emotion[utts]
    g.create_dataset("confusion", data=confusion(truth, pred))
    st.write_table(g.create_group("predictions"), {
        "id": [str(data.ids[u]) for u in utts], "corpus": [str(data.corpus[u]) for u in utts],
        "speaker": [str(data.speaker[u]) for u in utts], "true": truth.astype(np.int8), "pred": pred.astype(np.int8)})
    g.create_dataset("predictions/log_probs", data=probs.astype(np.float32))
    q = data.qualified

    def speakers(rows: tuple[int, ...]) -> str:
        return json.dumps(sorted(set(q[list(rows)].tolist())))

    g.attrs.update(uar=res.uar, wa=res.wa, macro_f1=res.f1, best_epoch=res.best_epoch, val_uar=res.val_uar,
                   epochs_run=res.epochs_run, seed=res.seed, synthetic=res.synthetic, leaky=leak,
                   n_train=len(fold.train), n_val=len(fold.val), n_test=len(fold.test),
                   test_speakers=speakers(fold.test), val_speakers=speakers(fold.val))
