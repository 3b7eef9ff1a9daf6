"""How good is a synthetic set: ``/synthetic/<name>`` against the real corpus it imitates -> ``/quality/<name>``.

Per emotion and for the whole set, beside real-vs-real values where they exist (docs/quality.md has the
equations, what each rewards and misses, and how to read them): ``mad`` (the paper's table-1 quantity,
made precise), ``frechet`` and ``frechet_real``, ``consistency`` and ``recall_real``, ``diversity_*``,
``density``/``coverage`` (Naeem et al. 2020) on the yardstick's embedding, the silence fraction and the
per-bin frame-to-frame change. Per set, on the speakers the generator never saw: ``tstr_uar`` against
``trtr_uar``, and ``two_sample_auc`` (against the generator's own speakers; with ``held_out_auc`` also against
the held-out speakers, beside the floor that the change of speaker alone sets). The yardstick is a
CNN-BLSTM trained on real speech: on the generator's own speakers when it held others out, which are
then where it judges.

The maths is in :mod:`emodiff.metrics`; here are the job, the yardstick and the assembly:
:mod:`emodiff.quality_inputs` reads the store and pairs a set with its corpus, ``_measure`` computes
(:mod:`emodiff.quality_fidelity` the fidelity/diversity block, :mod:`emodiff.quality_held_out` the set-level
metrics on the speakers the generator never saw) and ``_write`` writes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from emodiff import store as st
from emodiff.devices import resolve_device
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.generators import load_recipe, recipe_from_dict
from emodiff.metrics import NEAREST_K, frechet_distance, mad, mean_pairwise_distance, nanmean
from emodiff.progress import QUIET, Progress
from emodiff.quality_fidelity import TABLE_FIELDS, FidelityDiversity, fidelity_diversity
from emodiff.quality_held_out import Floors, HeldOut, held_out_metrics, real_segments, segments
from emodiff.quality_inputs import (
    AssessedSet,
    Pair,
    RealCorpus,
    imitated_corpus,
    pair_up,
    read_corpus,
    read_mel,
    read_synthetic,
    select,
)
from emodiff.records import Quality, Synthetic, taken
from emodiff.ser.classifier import ClassifierConfig, CnnBlstm
from emodiff.ser.metrics import uar
from emodiff.ser.training import fit
from emodiff.ser.two_sample import TWO_SAMPLE_FOLDS, roc_auc, two_sample_auc  # noqa: F401 (re-exported)
from emodiff.silence import SILENCE, counted_frames, silence_share, synthetic_frames  # noqa: F401 (re-exported)

MAD_DEFINITION = ("MAD = mean over the 80 mel bins of the Wasserstein-1 distance (mean absolute difference of "
                  "matched quantiles) between the real and synthetic values of that bin, in the store's [-1, 1] "
                  "scaling, over non-silent frames, real ones only before segments/frames.")
DEFAULT_RECIPE = "demo"
# The fewest segments a set may have. The two-sample AUC is the only set-level metric with a floor: with
# each synthetic segment a group of its own, TWO_SAMPLE_FOLDS of them put one in every fold's test part and
# the others in its training part; with fewer, a fold trains on no synthetic segment (or on nothing: fit()
# divides by zero) and the pooled AUC of a few scores reads 0 or 1 by chance. Per emotion every metric
# is NaN with a note where it lacks segments (MAD, consistency: 1; Frechet, diversity: 2; density and
# coverage: 1 synthetic, more than k real), so an emotion's count is no reason to refuse a set.
MIN_SEGMENTS = TWO_SAMPLE_FOLDS


@dataclass(frozen=True)
class QualityJob:
    """What ``assess`` measures: which sets of which store, against which corpus, with which yardstick."""

    store: Path
    synthetic: str | None = None  # a /synthetic set; None: every set without /quality (all with overwrite)
    # With synthetic None, only these sets (a study's own: the store may hold a sweep's dozens); (): every set.
    among: tuple[str, ...] = ()
    corpus: str | None = None  # the real corpus; None: the one most of the generator's training speakers are from
    classifier: ClassifierConfig | None = None  # None: the set's recipe's classifier section, else the demo recipe's
    device: str = "auto"
    overwrite: bool = False
    # True: a store without any synthetic set is nothing to do ([]) instead of an error, so that
    # `report --quality` and the study can always ask for the missing metrics.
    allow_empty: bool = False
    nearest_k: int = NEAREST_K  # the k of density and coverage
    # Also the two-sample AUC against the held-out speakers and its speaker-change floor: 6 more classifier fits
    held_out_auc: bool = False

    def __post_init__(self) -> None:
        if self.nearest_k < 1:
            raise EmodiffError(f"{self.store}: nearest_k must be >= 1 (density and coverage), got {self.nearest_k}")


@dataclass(frozen=True)
class EmotionQuality:
    """One row of ``/quality/<set>/per_emotion``; NaN where a metric is undefined, with ``note`` saying why."""

    emotion: str
    mad: float
    frechet: float
    frechet_real: float  # the real-vs-real floor: one half of the held-out speakers against the other
    consistency: float
    diversity_synthetic: float
    diversity_real: float
    n_real: int
    n_synthetic: int
    recall_real: float  # the yardstick's recall on this emotion's real (held-out) segments; consistency's floor
    silence_real: float  # share of silent frames, padding included: like for like with the synthetic set
    silence_synthetic: float
    fidelity_diversity: FidelityDiversity
    note: str = ""


@dataclass
class QualityResult:
    """What ``assess`` wrote for one set: its rows and the group attrs (docs/quality.md)."""

    group: str
    synthetic: str
    corpus: str
    rows: list[EmotionQuality]
    mad_mean: float
    consistency_mean: float
    real_accuracy_on_train: float
    classifier: ClassifierConfig
    classifier_source: str
    seconds: float
    real_speakers: list[str] = field(default_factory=list)
    held_out: HeldOut = field(default_factory=HeldOut)
    overall: FidelityDiversity | None = None  # the whole set: every emotion present in both
    nearest_k: int = NEAREST_K


# ---------------------------------------------------------------------------------------------- the job


def _set_names(store: Path, job: QualityJob) -> list[str]:
    """The sets ``job`` asks for: the named one, or every set without /quality (every set with overwrite)."""
    with st.open_store(store) as f:
        sets = Synthetic.names(f)
        done = set(Quality.names(f))
    if not sets and job.allow_empty and job.synthetic is None:
        return []
    if not sets:
        raise EmodiffError(f"{store}: holds no synthetic set (expected /synthetic/NAME); run `emodiff sample` first")
    if job.synthetic is None:
        return [s for s in sets if (job.overwrite or s not in done) and (not job.among or s in job.among)]
    if job.synthetic not in sets:
        raise EmodiffError(f"{store}: no synthetic set {job.synthetic!r}; sets: {', '.join(sets)}")
    if job.synthetic in done and not job.overwrite:
        raise taken(store, Quality.path(job.synthetic))
    return [job.synthetic]


def _check_size(store: Path, synth: AssessedSet) -> None:
    """Refuse a set of fewer than MIN_SEGMENTS segments, which quality cannot measure."""
    n = len(synth.emotion)
    if n < MIN_SEGMENTS:
        raise EmodiffError(f"{store}: synthetic set {synth.name!r} has {n} segment{'' if n == 1 else 's'}; quality "
                           f"needs at least {MIN_SEGMENTS} per set (the two-sample AUC's {TWO_SAMPLE_FOLDS}-fold "
                           "cross-validation tests one in each fold); sample a larger one (`emodiff sample --n`)")


def _classifier(job: QualityJob, synth: AssessedSet) -> tuple[ClassifierConfig, str]:
    """(config, where it came from): the job's, else the set's recipe's classifier section, else the demo recipe's."""
    if job.classifier is not None:
        return job.classifier, "job"
    if synth.recipe is not None:
        where = f"{job.store}:/synthetic/{synth.name}:recipe"
        return recipe_from_dict(synth.recipe, where).classifier, f"/synthetic/{synth.name} recipe"
    return load_recipe(DEFAULT_RECIPE).classifier, f"{DEFAULT_RECIPE} recipe"


# ---------------------------------------------------------------------------------------------- compute


@dataclass
class _Yardstick:
    """The classifier trained on the real segments ``trained`` (the generator's speakers when others are held
    out, else all), with its embeddings [N, 2H] and predictions [N] of every real segment."""

    model: CnnBlstm
    real_embed: np.ndarray
    real_pred: np.ndarray
    accuracy: float  # segment-level UAR on its own training segments


@torch.no_grad()
def embed_segments(model: CnnBlstm, mel: np.ndarray, frames: np.ndarray, device: torch.device,
                   batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, 2H] float64, predicted class [N]) of mel [N, C, F] with valid frames [N], in eval mode."""
    model.eval()
    emb, pred = [], []
    for lo in range(0, len(mel), batch_size):
        x = torch.from_numpy(np.asarray(mel[lo:lo + batch_size], np.float32)).to(device)
        e = model.embed(x, torch.from_numpy(np.asarray(frames[lo:lo + batch_size], np.int64)).to(device))
        emb.append(e.double().cpu().numpy())
        pred.append(model.out(e).argmax(dim=1).cpu().numpy())
    if not emb:
        return np.zeros((0, 2 * model.cfg.lstm_hidden)), np.zeros(0, np.int64)
    return np.concatenate(emb), np.concatenate(pred)


def _train_yardstick(cfg: ClassifierConfig, real: RealCorpus, trained: np.ndarray, device: torch.device) -> _Yardstick:
    """fit() on the real segments ``trained`` [N] bool for cfg's budget (no selection), seeded by cfg.seed."""
    rows = np.flatnonzero(trained)
    model = fit(cfg, real_segments(real, rows), device).model
    emb, pred = embed_segments(model, real.mel, real.frames, device, cfg.batch_size)
    return _Yardstick(model, emb, pred, uar(real.emotion[rows], pred[rows]))


def _recall(pred: np.ndarray, label: int) -> float:
    return float(np.mean(pred == label)) if len(pred) else math.nan


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a, b) if len(a) >= 2 and len(b) >= 2 else math.nan


@dataclass(frozen=True)
class _Drawn:
    """The synthetic set as measured: mel [M, C, F], valid frames [M], yardstick embeddings [M, 2H] and classes [M]."""

    mel: np.ndarray
    frames: np.ndarray
    embed: np.ndarray
    pred: np.ndarray


def _row(k: int, pair: Pair, drawn: _Drawn, yard: _Yardstick, nearest_k: int) -> EmotionQuality:
    """The metrics of emotion k: the real rows of k against the synthetic rows asked to be k.

    MAD compares with what the generator imitated (its speakers). Recall, Frechet distance and
    diversity use the held-out speakers when there are any: the yardstick never saw them, so
    synthetic-vs-real and the real-vs-real floor (``frechet_real``: one half of the held-out speakers
    against the other) are both out of sample. Synthetic-vs-real is then the mean of the FD of each
    half of the synthetic rows against one real half, so both sides of each FD are of like size.
    """
    real, rows = pair.real, select(pair, [k])
    r_rows, judged, s_rows = rows.ref, rows.judged, rows.synthetic
    notes = []
    value = mad(real.mel[r_rows], real.frames[r_rows], drawn.mel[s_rows])
    if math.isnan(value):
        notes.append("mad: no non-silent frame on one side")
    s_emb = drawn.embed[s_rows]
    fd = fd_real = math.nan
    if rows.halves is not None:
        a, b = rows.halves
        half = len(s_rows) // 2
        fd = nanmean([_frechet(s_emb[:half], yard.real_embed[a]), _frechet(s_emb[half:], yard.real_embed[b])])
        fd_real = _frechet(yard.real_embed[a], yard.real_embed[b])
    else:
        fd = _frechet(yard.real_embed[judged], s_emb)
        if pair.held.any():  # (with none held out, the set's held_out_speakers attr says so once)
            notes.append("frechet_real and the other real-vs-real values: need >= 2 held-out speakers")
    if math.isnan(fd):
        notes.append(f"frechet: needs >= 2 real and >= 2 synthetic segments, has {len(judged)} and {len(s_rows)}")
    separated = fidelity_diversity(rows, real, yard.real_embed, drawn.mel, drawn.frames, drawn.embed, nearest_k)
    if math.isnan(separated.coverage):
        notes.append(f"density, coverage: need > {nearest_k} real segments (in each half) and a synthetic one")
    div_s = mean_pairwise_distance(s_emb) if len(s_rows) >= 2 else math.nan
    div_r = mean_pairwise_distance(yard.real_embed[judged]) if len(judged) >= 2 else math.nan
    return EmotionQuality(
        emotion=EMOTIONS[k], mad=value, frechet=fd, frechet_real=fd_real, consistency=_recall(drawn.pred[s_rows], k),
        diversity_synthetic=div_s, diversity_real=div_r, n_real=len(judged), n_synthetic=len(s_rows),
        recall_real=_recall(yard.real_pred[judged], k),
        silence_real=silence_share(real.mel[r_rows], real.frames[r_rows]),
        silence_synthetic=silence_share(drawn.mel[s_rows]), fidelity_diversity=separated, note="; ".join(notes))


def _measure(pair: Pair, mel: np.ndarray, frames: np.ndarray, yard: _Yardstick, cfg: ClassifierConfig,
             device: torch.device, nearest_k: int,
             floors: Floors | None = None) -> tuple[list[EmotionQuality], HeldOut, FidelityDiversity]:
    """Per-emotion rows for every emotion present in both sets, the set-level held-out metrics
    (:func:`emodiff.quality_held_out.held_out_metrics`, given ``floors`` also the AUC against the held-out
    speakers), and the fidelity/diversity block of the whole set (those emotions pooled)."""
    drawn = _Drawn(mel, frames, *embed_segments(yard.model, mel, frames, device, cfg.batch_size))
    rows = [_row(k, pair, drawn, yard, nearest_k) for k in pair.common]
    overall = fidelity_diversity(select(pair, pair.common), pair.real, yard.real_embed, mel, frames, drawn.embed,
                                 nearest_k)
    out = held_out_metrics(pair, segments(mel, frames, pair.synth.emotion), yard.model, cfg, device, floors)
    return rows, out, overall


# ---------------------------------------------------------------------------------------------- store: write


def _write(store: Path, result: QualityResult, config: dict, overwrite: bool) -> None:
    """Write ``/quality/<set>``: the per_emotion table and the group attrs (docs/quality.md)."""
    def column(values: list, kind: str) -> list | np.ndarray:
        return np.array(values, np.int64) if kind == "int" else np.array(values, np.float64) if kind == "float" \
            else [str(v) for v in values]

    columns = {f.name: column([getattr(r, f.name) for r in result.rows], f.type) for f in fields(EmotionQuality)
               if f.name != "fidelity_diversity"}
    separated = [r.fidelity_diversity for r in result.rows]
    columns |= {f.name: column([getattr(x, f.name) for x in separated], f.type) for f in fields(FidelityDiversity)
                if f.name in TABLE_FIELDS}
    whole = result.overall
    # One row per per_emotion row, then the whole set's (docs/store.md).
    arrays = {} if whole is None else {name: np.stack([getattr(x, key) for x in [*separated, whole]])
                                       for name, key in (("frame_change_ratio", "ratio"),
                                                         ("frame_change_ratio_real", "ratio_real"))}
    Quality.write(store, result.synthetic, table=columns, config=config, overwrite=overwrite, arrays=arrays, attrs=dict(
        corpus=result.corpus, synthetic=result.synthetic, classifier=json.dumps(result.classifier.recorded()),
        classifier_source=result.classifier_source, seed=result.classifier.seed, mad_definition=MAD_DEFINITION,
        mad_mean=result.mad_mean, consistency_mean=result.consistency_mean,
        real_accuracy_on_train=result.real_accuracy_on_train, silence_threshold=SILENCE,
        real_speakers=json.dumps(result.real_speakers), nearest_k=result.nearest_k, **result.held_out.attrs(),
        **({} if whole is None else whole.scalars())))


# ---------------------------------------------------------------------------------------------- entry points


def assess(job: QualityJob, progress: Progress = QUIET) -> list[QualityResult]:
    """Measure each set ``job`` names (see QualityJob.synthetic) and write ``/quality/<set>``; one result per set.

    One yardstick classifier is trained per (corpus, classifier config) and shared by the sets
    that use it. ``progress`` hears the number of sets and each one measured.
    """
    store = Path(job.store)
    names = _set_names(store, job)
    device = resolve_device(job.device)
    corpora: dict[str, RealCorpus] = {}
    plans: list[tuple[Pair, ClassifierConfig, str]] = []
    for name in names:  # every set is checked before anything trains, so bad input fails at once
        synth = read_synthetic(store, name)
        _check_size(store, synth)
        corpus = job.corpus or imitated_corpus(synth.training_speakers)
        if corpus is None:
            raise EmodiffError(f"{store}: /synthetic/{name} records no training_speakers (corpus:speaker); "
                               "name the real corpus it imitates (corpus=...)")
        if corpus not in corpora:
            corpora[corpus] = read_corpus(store, corpus, name)
        plans.append((pair_up(store, synth, corpora[corpus]), *_classifier(job, synth)))
    yardsticks: dict[tuple[str, ClassifierConfig, tuple[str, ...]], _Yardstick] = {}
    floors: Floors | None = {} if job.held_out_auc else None
    results = []
    progress.total(len(plans))
    for pair, cfg, source in plans:
        start = time.perf_counter()
        real, name = pair.real, pair.synth.name
        # Trained on the generator's speakers when it held some out (so those stay unseen), else on all.
        trained = pair.ref if pair.held.any() else np.ones(len(real.speaker), bool)
        key = (real.name, cfg, tuple(sorted(set(real.speaker[trained].tolist()))))
        if key not in yardsticks:
            yardsticks[key] = _train_yardstick(cfg, real, trained, device)
        yard = yardsticks[key]
        rows, held_out, overall = _measure(pair, *read_mel(store, name), yard, cfg, device, job.nearest_k, floors)
        result = QualityResult(
            group=f"/quality/{name}", synthetic=name, corpus=real.name, rows=rows,
            mad_mean=nanmean([r.mad for r in rows]), consistency_mean=nanmean([r.consistency for r in rows]),
            real_accuracy_on_train=yard.accuracy, classifier=cfg, classifier_source=source, seconds=0.0,
            real_speakers=pair.speakers, held_out=held_out, overall=overall, nearest_k=job.nearest_k)
        config = {"synthetic": name, "synthetic_config_hash": pair.synth.config_hash, "corpus": real.name,
                  "corpus_config_hash": real.config_hash, "classifier": cfg.recorded(), "silence": SILENCE,
                  "nearest_k": job.nearest_k}
        if job.held_out_auc:  # only then: a set assessed without it keeps its config hash
            config["held_out_auc"] = True
        _write(store, result, config, job.overwrite)
        result.seconds = time.perf_counter() - start
        results.append(result)
        progress.advance()
    return results

