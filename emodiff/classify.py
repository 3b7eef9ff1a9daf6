"""``emodiff classify``: the CNN-BLSTM under a speaker-independent protocol -> ``/results/<name>``.

Protocols: within one corpus (``loso``, ``session``, ``groups:K``, ``groups:KxR``), cross-corpus (train on one
corpus, select on a seeded 30 % of the other's speakers, test on the rest) and adaptation (the
source plus a share of the target's other speakers, tested on a fixed half of them).

For each fold and each of ``repeats`` seeds the classifier trains on the fold's training
utterances (real segments, their offline augmentations, synthetic segments, or a mix, with mixup
and SpecAugment on the fly), keeps the epoch with the best validation UAR, and scores the test
utterances by pooling their segments. A synthetic set is used in a fold only if the generator that
drew it never saw the fold's test or validation speakers (its ``training_speakers`` attr); when the
store holds several sets (of the family asked for, or with ``synthetic:PREFIX*`` those whose names start
with PREFIX), each fold takes one that qualifies. Otherwise the run stops before any
training, or with ``allow_leak`` goes on and is marked leaky.

With ``workers`` N > 1 the (fold, seed) trainings run N at a time in spawned processes, each on
1/N of this process's torch threads (at least 1), after every check. Each seeds its own RNGs, and
only this process writes the store, in the same order, so the results do not depend on N.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emodiff import store as st
from emodiff.corpora import PAIRED
from emodiff.devices import resolve_device
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment, Experiment, TrainOn
from emodiff.progress import QUIET, Progress
from emodiff.records import Absent, Results, Synthetic, check_name, existing, taken
from emodiff.ser.classifier import ClassifierConfig
from emodiff.ser.folds import (
    Candidate,
    CorpusData,
    FoldResult,
    FoldRun,
    FoldSpec,
    Predictions,
    fold_runs,
    read_corpora,
    read_offline,
)
from emodiff.ser.metrics import confusion, summarize
from emodiff.ser.paired import PairedComparison, compare
from emodiff.ser.protocols import Fold, WithinCorpus, adaptation, by_session, cross_corpus, loso, speaker_partitions


@dataclass(frozen=True)
class ClassifyJob:
    store: Path
    corpus: str  # the corpus tested on (within-corpus: the only one)
    train_corpus: str | None = None  # cross-corpus and adaptation: the source corpus
    folds: str = "loso"  # within-corpus protocol: loso | session | groups:K | groups:KxR (WithinCorpus.parse)
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
    # The synthetic sets each fold may choose from, when a caller (a study) names its own; empty: every set
    # --augment selects. A study's store can hold other sets (a sweep's), which must not stand in for its own.
    sets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        Experiment(self.train_on, self.augment)  # checks --train-on, and that offline augmentations have real data
        WithinCorpus.parse(self.folds)  # a bad --folds stops here, before the store is read
        if self.name is not None:
            check_name(self.name)
        if self.baseline is not None:
            _check_baseline(self.baseline, self.name or self.default_name())
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
                "split_seed": self.split_seed, "train_on": self.effective_train_on, "augment": self.augment.config(),
                "classifier": self.classifier.recorded(), "repeats": self.repeats, "allow_leak": self.allow_leak,
                **({"baseline": self.baseline} if self.baseline else {}),
                **({"sets": list(self.sets)} if self.sets else {})}

    @property
    def corpora(self) -> list[str]:
        """The corpora read, source first."""
        return [self.corpus] if self.train_corpus is None else [self.train_corpus, self.corpus]

    def fold_spec(self) -> FoldSpec:
        """What each (fold, seed) training of this job shares (emodiff/ser/folds.py)."""
        return FoldSpec(store=self.store, corpora=tuple(self.corpora), classifier=self.classifier,
                        real=self.effective_train_on != "synthetic", augment=self.augment, device=self.device,
                        workers=self.workers)

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
        WithinCorpus.parse(self.folds)
        _fractions(self.target_fraction)  # a bad number stops here, before the store is read
        if self.name is not None:
            check_name(self.name)
        _check_baseline(self.compare_with, self.name if len(_fractions(self.target_fraction)) == 1 else None)
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


def _check_baseline(baseline: str | None, name: str | None) -> None:
    """``--compare-with``: a name, and not the result this run writes (``name``, when known)."""
    if baseline is None:
        return
    if not baseline.strip():
        raise EmodiffError(f"--compare-with {baseline!r}: expected the name of a /results group run on the same "
                           "folds and seeds (e.g. the real-only run's)")
    if baseline == name:
        raise EmodiffError(f"--compare-with {baseline}: that is the result this run writes (/results/{name}); "
                           "compare with another result, e.g. the real-only run's")


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
class ClassifyResult:
    group: str
    folds: list[FoldResult]
    uar: tuple[float, float]  # mean over all folds and seeds, std over folds (of their seed means)
    uar_seed_std: float  # std over seeds of the per-seed mean (0 with one seed)
    leaky: bool
    seconds: float
    protocol: str = "loso"
    comparison: PairedComparison | None = None  # against job.baseline, the fold as the unit (seeds averaged)


def plan_held_out(store: Path, job: ClassifyJob) -> list[list[str]]:
    """Per fold of ``job``'s protocol, the speakers it holds out ("corpus:speaker"): a generator must not see them."""
    data = read_corpora(store, job.corpora, segments=False)
    return [held_out(fold, data) for fold in plan_folds(data, job)]


def _synthetic_sets(store: Path, augment: Augment, only: tuple[str, ...] = ()) -> list[Candidate]:
    """The synthetic sets a run may draw on: the one named, every set whose name starts with ``augment.prefix``
    (of any family), or every set the family ``augment.generator`` drew; of those, only the sets ``only``
    names when it names any."""
    wanted = augment.synthetic or ""
    with st.open_store(store) as f:
        names = Synthetic.names(f)
        if not names:
            raise EmodiffError(f"{store}: holds no synthetic set; run `emodiff sample --n N` first")
        if only:
            absent = [name for name in only if name not in names]
            if absent:
                raise EmodiffError(f"{store}: no synthetic set {absent[0]!r}; sets: {', '.join(names)}")
            names = [name for name in names if name in only]
        if augment.prefix is not None:
            chosen = [name for name in names if name.startswith(augment.prefix)]
            if not chosen:
                raise EmodiffError(f"{store}: no synthetic set's name starts with {augment.prefix!r} "
                                   f"(--augment synthetic:{wanted}); sets: {', '.join(names)}")
        elif wanted and wanted not in names:
            raise EmodiffError(f"{store}: no synthetic set {wanted!r}; sets: {', '.join(names)}")
        else:
            chosen = [wanted] if wanted else names
        records = {name: Synthetic.read(f, name) for name in chosen}
        if not wanted:
            by_family = {name: r.provenance.generator for name, r in records.items()}
            records = {name: r for name, r in records.items() if by_family[name] == augment.generator}
            if not records:
                others = ", ".join(sorted(set(by_family.values())))
                raise EmodiffError(f"{store}: holds no synthetic set drawn by a {augment.generator} generator (its "
                                   f"sets are from: {others}); sample one from a {augment.generator} run, or name a "
                                   "set with --augment synthetic:NAME")
        sets = []
        for name, record in records.items():
            record.check(store, speakers=True)
            sets.append(Candidate(name, frozenset(record.provenance.training_speakers), record.mel_shape[1:],
                                   record.mel_shape[0]))
    return sets


def plan_folds(data: CorpusData, job: ClassifyJob) -> list[Fold]:
    """The protocol's folds over ``data``'s utterance rows (source rows first where there are two corpora)."""
    if job.train_corpus is not None:
        n_source = data.offset[job.corpus]  # the target's rows follow the source's
        target = data.speaker[n_source:].tolist()
        if job.target_fraction is not None:
            return [adaptation(n_source, target, job.target_fraction, seed=job.split_seed)]
        return [cross_corpus(n_source, target, job.dev_fraction, seed=job.split_seed)]
    within = WithinCorpus.parse(job.folds)
    if within.kind == "loso":
        return loso(data.speaker.tolist(), data.session.tolist(), pair_by_session=job.corpus in PAIRED)
    if within.kind == "session":
        return by_session(data.speaker.tolist(), data.session.tolist())
    if within.kind == "groups":
        genders = data.gender.tolist() if data.gender is not None else None
        return speaker_partitions(data.speaker.tolist(), within.k, within.partitions, genders)
    raise ValueError(f"WithinCorpus kind {within.kind!r}; expected loso, session or groups")


def held_out(fold: Fold, data: CorpusData) -> list[str]:
    """Speakers the fold tests or validates on and does not also train on ("corpus:speaker", sorted).

    Only adaptation with fraction 1 validates on training speakers (source rows); a generator that
    saw those tells the classifier nothing it does not already train on.
    """
    q = data.qualified
    train = set(q[list(fold.train)].tolist())
    return sorted(set(q[list(fold.test + fold.val)].tolist()) - train)


def choose_synthetic(fold: Fold, data: CorpusData, sets: list[Candidate], allow: bool) -> tuple[Candidate, bool]:
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
    data = read_corpora(job.store, corpora)
    folds = plan_folds(data, job)
    for fold in folds:
        if not fold.train or not fold.test or not fold.val:
            raise EmodiffError(f"fold {fold.name}: an empty training, validation or test set")
    offline = {kind: read_offline(job.store, kind, data, corpora) for kind in job.augment.offline}
    train_on = job.effective_train_on
    sets = _synthetic_sets(job.store, job.augment, job.sets) if train_on != "real" else []
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
    runs = [FoldRun(fold, synth, seed) for seed in seeds for fold, synth, _ in plan]
    results: list[FoldResult] = []
    with st.write_group(job.store, Results.path(name), config=job.config(), overwrite=job.overwrite,
                        what=f"classify {name}") as g, contextlib.closing(
            fold_runs(runs, data, offline, job.fold_spec(), device)) as done:
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
            sizes = {_group_name(fold): (len(fold.test), len(fold.train)) for fold in folds}
            comparison = compare(baseline, ours, sizes, experiment=name, baseline=str(job.baseline))
            g.attrs.update(comparison.as_attrs())
    return ClassifyResult(f"/results/{name}", results, (summary["uar_mean"], summary["uar_std"]),
                          summary["uar_seed_std"], leaky, time.perf_counter() - start, job.protocol, comparison)


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
    uars = base.uar_by_key()
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


def _write_fold(g, res: FoldResult, preds: Predictions, data: CorpusData, fold: Fold, leak: bool) -> None:
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
                   epochs_run=res.epochs_run, best_step=res.best_step, steps_run=res.steps_run, seed=res.seed,
                   synthetic=res.synthetic, leaky=leak,
                   n_train=len(fold.train), n_val=len(fold.val), n_test=len(fold.test),
                   test_speakers=speakers(fold.test), val_speakers=speakers(fold.val))
