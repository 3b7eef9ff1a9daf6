"""``emodiff classify``: the CNN-BLSTM (or, with ``classifier.kind: stats``, utterance statistics into a linear
model: emodiff/ser/stats.py) under a speaker-independent protocol -> ``/results/<name>``.

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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emodiff import store as st
from emodiff.classify_job import ClassifyJob
from emodiff.corpora import PAIRED
from emodiff.devices import resolve_device
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment
from emodiff.progress import QUIET, Progress
from emodiff.records import Absent, Results, ResultsWriter, Synthetic, existing, taken, write_results
from emodiff.ser.folds import (
    Candidate,
    CorpusData,
    FoldResult,
    FoldRun,
    Predictions,
    fold_runs,
    read_corpora,
    read_offline,
)
from emodiff.ser.metrics import confusion, summarize
from emodiff.ser.paired import PairedComparison, compare
from emodiff.ser.protocols import (
    Fold,
    TargetSplit,
    WithinCorpus,
    adaptation,
    by_session,
    cross_corpus,
    cross_corpus_groups,
    cross_corpus_random,
    loso,
    speaker_partitions,
)


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
        named = [*only, *([wanted] if wanted and augment.prefix is None else [])]
        absent = [name for name in named if name not in names]
        if absent:
            raise EmodiffError(f"{store}: no synthetic set {absent[0]!r}; sets: {', '.join(names)}")
        if only:
            names = [name for name in names if name in only]
        if augment.prefix is not None:
            chosen = [name for name in names if name.startswith(augment.prefix)]
            if not chosen:
                raise EmodiffError(f"{store}: no synthetic set's name starts with {augment.prefix!r} "
                                   f"(--augment synthetic:{wanted}); sets: {', '.join(names)}")
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
        split = TargetSplit.parse(job.target_split)
        if split.kind == "random":
            return [cross_corpus_random(n_source, target, job.dev_fraction, seed=job.split_seed)]
        if split.kind in ("groups", "loso"):
            return cross_corpus_groups(n_source, target, split.k or len(set(target)))
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
    with write_results(job.store, name, config=job.config(), overwrite=job.overwrite,
                       what=f"classify {name}") as writer, contextlib.closing(
            fold_runs(runs, data, offline, job.fold_spec(), device)) as done:
        progress.total(len(runs))
        for (fold, synth, leak), (res, preds) in zip(plan * len(seeds), done, strict=True):
            res.synthetic = synth.name if synth else ""
            group_name = _group_name(fold) + (f"@seed{res.seed}" if len(seeds) > 1 else "")
            _write_fold(writer, group_name, res, preds, data, fold, leak)
            results.append(res)
            progress.advance()
        summary = _summary(results, seeds)
        writer.finish(
            corpus=job.corpus, train_corpus=job.train_corpus or job.corpus, protocol=job.protocol, folds=job.folds,
            target_fraction=job.target_fraction, train_on=train_on, augment=job.augment.label(), leaky=leaky,
            repeats=job.repeats, seeds=seeds, split_seed=job.split_seed,
            synthetic=sorted({r.synthetic for r in results} - {""}), summary=summary)
        comparison = None
        if baseline is not None:
            ours = {(_group_name(fold), r.seed): r.uar for (fold, _, _), r in zip(plan * len(seeds), results,
                                                                                   strict=True)}
            sizes = {_group_name(fold): (len(fold.test), len(fold.train)) for fold in folds}
            comparison = compare(baseline, ours, sizes, experiment=name, baseline=str(job.baseline))
            writer.paired(comparison.as_attrs())
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


def _write_fold(writer: ResultsWriter, name: str, res: FoldResult, preds: Predictions, data: CorpusData, fold: Fold,
                leak: bool) -> None:
    utts, pred, probs = preds
    truth = data.emotion[utts]
    q = data.qualified

    def speakers(rows: tuple[int, ...]) -> list[str]:
        return sorted(set(q[list(rows)].tolist()))

    writer.fold(name, confusion=confusion(truth, pred), ids=[str(data.ids[u]) for u in utts],
                corpora=[str(data.corpus[u]) for u in utts], speakers=[str(data.speaker[u]) for u in utts],
                true=truth, pred=pred, log_probs=probs, uar=res.uar, wa=res.wa, macro_f1=res.f1,
                best_epoch=res.best_epoch, val_uar=res.val_uar, epochs_run=res.epochs_run, best_step=res.best_step,
                steps_run=res.steps_run, seed=res.seed, synthetic=res.synthetic, leaky=leak,
                n_train=len(fold.train), n_val=len(fold.val), n_test=len(fold.test),
                test_speakers=speakers(fold.test), val_speakers=speakers(fold.val), l2=res.l2)
