"""How good is a synthetic set: ``/synthetic/<name>`` against the real corpus it imitates -> ``/quality/<name>``.

Per emotion (docs/quality.md has the equations, what each rewards and misses, and how to read them):

- ``mad``: the paper's table-1 quantity, made precise. The mean over mel bins of the 1-D
  Wasserstein-1 distance between the real and the synthetic values of that bin, which is the mean
  absolute difference between matched quantiles, in the store's [-1, 1] scaling. Real frames
  count only before ``segments/frames``; silent frames (no bin above ``SILENCE``) count on
  neither side, since the generator imitates padded segments and padding is silence.
- ``frechet``: the Frechet distance between Gaussians fitted to real and synthetic embeddings,
  taken from a CNN-BLSTM trained on real speech (the yardstick): on the generator's own speakers
  when it held others out, judged against those held-out speakers; ``frechet_real`` is the
  real-vs-real floor between two halves of them.
- ``consistency``: the yardstick's recall on the synthetic segments asked to be that emotion.
- ``diversity_synthetic`` / ``diversity_real``: the mean pairwise Euclidean distance between
  embeddings within the emotion (mode collapse shows as synthetic << real).

Per set, on the speakers the generator never saw: ``tstr_uar`` (a classifier trained on the
synthetic set alone) against ``trtr_uar`` (the yardstick, trained on the generator's speakers'
real segments), both UAR over held-out real utterances; and ``two_sample_auc``, a
cross-validated real-vs-synthetic classifier.

The pure functions (``mad``, ``frechet_distance``, ``mean_pairwise_distance``, ...) do the maths;
``_read_synthetic`` / ``_read_corpus`` read the store and ``_write`` writes it.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from emodiff import store as st
from emodiff.config import load_recipe, recipe_from_dict
from emodiff.devices import resolve_device
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.progress import QUIET, Progress
from emodiff.records import Corpus, Quality, Synthetic, taken
from emodiff.ser.classifier import ClassifierConfig, CnnBlstm
from emodiff.ser.metrics import uar
from emodiff.ser.training import Segments, fit, utterance_scores
from emodiff.ser.two_sample import roc_auc, two_sample_auc  # noqa: F401 (roc_auc re-exported)
from emodiff.silence import SILENCE, counted_frames, silence_share, synthetic_frames  # noqa: F401 (re-exported)

MAD_DEFINITION = ("MAD = mean over the 80 mel bins of the Wasserstein-1 distance (mean absolute difference of "
                  "matched quantiles) between the real and synthetic values of that bin, in the store's [-1, 1] "
                  "scaling, over non-silent frames, real ones only before segments/frames.")
DEFAULT_RECIPE = "demo"


@dataclass(frozen=True)
class QualityJob:
    """What ``assess`` measures: which sets of which store, against which corpus, with which yardstick."""

    store: Path
    synthetic: str | None = None  # a /synthetic set; None: every set without /quality (all with overwrite)
    corpus: str | None = None  # the real corpus; None: the one most of the generator's training speakers are from
    classifier: ClassifierConfig | None = None  # None: the set's recipe's classifier section, else the demo recipe's
    device: str = "auto"
    overwrite: bool = False
    # True: a store without any synthetic set is nothing to do ([]) instead of an error, so that
    # `report --quality` and the study can always ask for the missing metrics.
    allow_empty: bool = False


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
    held_out: _HeldOut = field(default_factory=lambda: _HeldOut())


# ---------------------------------------------------------------------------------------------- maths


def mad(real: np.ndarray, real_frames: np.ndarray, synthetic: np.ndarray) -> float:
    """MAD = (1/B) sum_b W1(R_b, S_b), real [N, B, F], real_frames [N], synthetic [M, B, F'].

    R_b (S_b) is the multiset of values of bin b over the counted frames (:func:`counted_frames`)
    of the real (synthetic) segments, and W1(P, Q) = int |F_P(v) - F_Q(v)| dv, which for two sets
    of equal size n is (1/n) sum_i |p_(i) - q_(i)| over their sorted values. NaN if either side
    has no counted frame.
    """
    real, synthetic = np.asarray(real), np.asarray(synthetic)
    if synthetic.ndim != 3 or real.ndim != 3 or real.shape[1] != synthetic.shape[1]:
        raise ValueError(f"mad: expected real [N, B, F] and synthetic [M, B, F'], got {real.shape}, {synthetic.shape}")
    r_mask, s_mask = counted_frames(real, real_frames), counted_frames(synthetic)
    if not r_mask.any() or not s_mask.any():
        return math.nan
    # [B, K] values per bin: moving bins first lets one boolean index pick the counted frames.
    r_vals = np.moveaxis(real, 1, 0)[:, r_mask]
    s_vals = np.moveaxis(synthetic, 1, 0)[:, s_mask]
    return float(np.mean([wasserstein_distance(r.astype(np.float64), s.astype(np.float64))
                          for r, s in zip(r_vals, s_vals, strict=True)]))


def frechet_from_moments(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}); mu [D], S [D, D] symmetric PSD.

    Tr((S_a S_b)^{1/2}) = sum_i sqrt(lambda_i), lambda = eig(A S_b A), A = S_a^{1/2}: S_a S_b = A (A S_b)
    has the eigenvalues of (A S_b) A, a symmetric PSD matrix, so they are real and >= 0 even when
    the covariances are singular (fewer samples than dimensions). ``eigh`` then needs no ridge and
    leaves no imaginary part; eigenvalues below 0 are round-off and are clipped, as is FD below 0.
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root_a @ cov_b @ root_a
    lam = np.linalg.eigvalsh((m + m.T) / 2.0)  # symmetrised: round-off makes m slightly asymmetric
    trace_root = float(np.sqrt(np.clip(lam, 0.0, None)).sum())
    diff = mu_a - mu_b
    return max(float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root), 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussians fitted to a [N, D] and b [M, D] (rows = samples; mean and covariance with ddof 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: expected [N, D] and [M, D], got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: a covariance needs >= 2 samples, got {len(a)} and {len(b)}")
    return frechet_from_moments(a.mean(0), np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], -1),
                                b.mean(0), np.cov(b, rowvar=False, ddof=1).reshape(b.shape[1], -1))


def mean_pairwise_distance(x: np.ndarray) -> float:
    """(2 / (N (N - 1))) sum_{i < j} ||x_i - x_j||_2 over the rows of x [N, D]; N >= 2."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"mean_pairwise_distance: expected [N, D] with N >= 2, got shape {x.shape}")
    # Row by row rather than through the Gram matrix: exact zeros for identical rows, O(N D) memory.
    total = sum(float(np.linalg.norm(x[i + 1:] - x[i], axis=1).sum()) for i in range(len(x) - 1))
    return total / (len(x) * (len(x) - 1) / 2)


# ---------------------------------------------------------------------------------------------- store: read


@dataclass
class _AssessedSet:
    """A set's labels and provenance; its mels are read only when it is measured (``_read_mel``)."""

    name: str
    shape: tuple[int, ...]  # of mel: (M, C, F)
    emotion: np.ndarray  # [M] int64
    training_speakers: list[str]  # "corpus:speaker"
    recipe: dict | None  # the generator's recipe, when recorded
    config_hash: str


@dataclass
class _Corpus:
    name: str
    mel: np.ndarray  # [N, C, F] float16
    frames: np.ndarray  # [N] int64
    emotion: np.ndarray  # [N] int64, per segment
    speaker: np.ndarray  # [N] str, per segment
    config_hash: str
    utt: np.ndarray | None = None  # [N] int64, the utterance row of each segment


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
        return [s for s in sets if job.overwrite or s not in done]
    if job.synthetic not in sets:
        raise EmodiffError(f"{store}: no synthetic set {job.synthetic!r}; sets: {', '.join(sets)}")
    if job.synthetic in done and not job.overwrite:
        raise taken(store, Quality.path(job.synthetic))
    return [job.synthetic]


def _read_synthetic(store: Path, name: str) -> _AssessedSet:
    with st.open_store(store) as f:
        record = Synthetic.read(f, name)
    record.check(store)
    return _AssessedSet(name, record.mel_shape, record.emotion, list(record.provenance.training_speakers),
                        record.provenance.recipe, record.meta.config_hash)


def _read_mel(store: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The mels [M, C, F] float16 of /synthetic/<name> and their valid frames [M] (recorded by ``sample``;
    for older sets, everything up to the last non-silent frame)."""
    with st.open_store(store) as f:
        mel, frames = Synthetic.read(f, name).load_mel(f)
    return mel, np.clip(synthetic_frames(mel) if frames is None else frames, 1, mel.shape[2])


def imitated_corpus(training_speakers: list[str]) -> str | None:
    """The corpus most ``corpus:speaker`` entries name (ties: the first in sorted order); None if none do."""
    counts = Counter(s.partition(":")[0] for s in training_speakers if ":" in s)
    return min(counts, key=lambda c: (-counts[c], c)) if counts else None


def _read_corpus(store: Path, corpus: str, synthetic: str) -> _Corpus:
    with st.open_store(store) as f:
        record = Corpus.read(f, corpus, note=f"expected /corpora/{corpus} to compare /synthetic/{synthetic} with")
        mel = record.load_mel(f)
    utt = record.seg_utt
    return _Corpus(corpus, mel, record.seg_frames, record.seg_emotion, record.utterances["speaker"][utt],
                   record.meta.config_hash, utt)


def _classifier(job: QualityJob, synth: _AssessedSet) -> tuple[ClassifierConfig, str]:
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


def _segments(mel: np.ndarray, frames: np.ndarray, labels: np.ndarray) -> Segments:
    return Segments(torch.from_numpy(np.asarray(mel)), torch.from_numpy(np.asarray(frames, np.int64)),
                    torch.from_numpy(np.asarray(labels, np.int64)))


def _train_yardstick(cfg: ClassifierConfig, real: _Corpus, trained: np.ndarray, device: torch.device) -> _Yardstick:
    """fit() on the real segments ``trained`` [N] bool for cfg's budget (no selection), seeded by cfg.seed."""
    rows = np.flatnonzero(trained)
    model = fit(cfg, _segments(real.mel[rows], real.frames[rows], real.emotion[rows]), device).model
    emb, pred = embed_segments(model, real.mel, real.frames, device, cfg.batch_size)
    return _Yardstick(model, emb, pred, uar(real.emotion[rows], pred[rows]))


def utterance_uar(model: CnnBlstm, real: _Corpus, rows: np.ndarray, device: torch.device) -> float:
    """UAR over the utterances of the real segments ``rows``, each scored by pooling its segments."""
    utt = real.utt[rows] if real.utt is not None else rows
    ids, index = np.unique(utt, return_inverse=True)
    scores = utterance_scores(model, torch.from_numpy(real.mel[rows]), torch.from_numpy(real.frames[rows]),
                              index, len(ids), device)
    first = np.unique(index, return_index=True)[1]
    return uar(real.emotion[rows][first], scores.argmax(axis=1))


def _recall(pred: np.ndarray, label: int) -> float:
    return float(np.mean(pred == label)) if len(pred) else math.nan


def _halves(speakers: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split by speaker into two halves (alternate speakers in sorted order)."""
    names = sorted(set(speakers[rows].tolist()))
    first = set(names[0::2])
    in_first = np.array([s in first for s in speakers[rows]], bool)
    return rows[in_first], rows[~in_first]


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a, b) if len(a) >= 2 and len(b) >= 2 else math.nan


def _row(k: int, pair: _Pair, mel: np.ndarray, s_embed: np.ndarray, s_pred: np.ndarray,
         yard: _Yardstick) -> EmotionQuality:
    """The metrics of emotion k: the real rows of k against the synthetic rows asked to be k.

    MAD compares with what the generator imitated (its speakers). Recall, Frechet distance and
    diversity use the held-out speakers when there are any: the yardstick never saw them, so
    synthetic-vs-real and the real-vs-real floor (``frechet_real``: one half of the held-out speakers
    against the other) are both out of sample. Synthetic-vs-real is then the mean of the FD of each
    half of the synthetic rows against one real half, so both sides of each FD are of like size.
    """
    real = pair.real
    r_rows = np.flatnonzero(pair.ref & (real.emotion == k))
    judged = np.flatnonzero((pair.held if pair.held.any() else pair.ref) & (real.emotion == k))
    s_rows = np.flatnonzero(pair.synth.emotion == k)
    notes = []
    value = mad(real.mel[r_rows], real.frames[r_rows], mel[s_rows])
    if math.isnan(value):
        notes.append("mad: no non-silent frame on one side")
    s_emb = s_embed[s_rows]
    fd = fd_real = math.nan
    if pair.held.any() and len(set(real.speaker[judged].tolist())) >= 2:
        a, b = _halves(real.speaker, judged)
        half = len(s_rows) // 2
        fd = _nanmean([_frechet(s_emb[:half], yard.real_embed[a]), _frechet(s_emb[half:], yard.real_embed[b])])
        fd_real = _frechet(yard.real_embed[a], yard.real_embed[b])
    else:
        fd = _frechet(yard.real_embed[judged], s_emb)
        if pair.held.any():  # (with none held out, the set's held_out_speakers attr says so once)
            notes.append("frechet_real: needs >= 2 held-out speakers")
    if math.isnan(fd):
        notes.append(f"frechet: needs >= 2 real and >= 2 synthetic segments, has {len(judged)} and {len(s_rows)}")
    div_s = mean_pairwise_distance(s_emb) if len(s_rows) >= 2 else math.nan
    div_r = mean_pairwise_distance(yard.real_embed[judged]) if len(judged) >= 2 else math.nan
    return EmotionQuality(
        emotion=EMOTIONS[k], mad=value, frechet=fd, frechet_real=fd_real, consistency=_recall(s_pred[s_rows], k),
        diversity_synthetic=div_s, diversity_real=div_r, n_real=len(judged), n_synthetic=len(s_rows),
        recall_real=_recall(yard.real_pred[judged], k),
        silence_real=silence_share(real.mel[r_rows], real.frames[r_rows]),
        silence_synthetic=silence_share(mel[s_rows]), note="; ".join(notes))


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass
class _Pair:
    """A synthetic set and its real reference, checked against each other."""

    synth: _AssessedSet
    real: _Corpus
    ref: np.ndarray  # [N] bool: the real segments of the speakers the generator imitated
    held: np.ndarray  # [N] bool: the real segments of this corpus's speakers it never saw
    speakers: list[str]  # the reference speakers, "corpus:speaker"
    common: list[int]  # emotion ids present in both

    def held_speakers(self) -> list[str]:
        return [f"{self.real.name}:{s}" for s in sorted(set(self.real.speaker[self.held].tolist()))]


def _pair(store: Path, synth: _AssessedSet, real: _Corpus) -> _Pair:
    """Check that ``synth`` can be compared with ``real`` (before any training) and pick the reference."""
    if synth.shape[1:] != real.mel.shape[1:]:
        raise EmodiffError(f"{store}: /synthetic/{synth.name} segments are {synth.shape[1:]}, /corpora/{real.name}"
                           f" segments are {real.mel.shape[1:]}; expected the same shape")
    # The reference is what the generator imitated: its training speakers of this corpus (the
    # whole corpus when it saw none of them, i.e. a set compared with another corpus on purpose).
    seen = sorted({s.partition(":")[2] for s in synth.training_speakers if s.partition(":")[0] == real.name})
    ref = np.isin(real.speaker, seen) if seen else np.ones(len(real.speaker), bool)
    if not ref.any():
        raise EmodiffError(f"{store}: /corpora/{real.name} holds none of the speakers /synthetic/{synth.name} "
                           f"was trained on ({', '.join(seen)})")
    held = ~ref if seen else np.zeros(len(real.speaker), bool)
    common = [k for k in range(len(EMOTIONS)) if (synth.emotion == k).any() and (real.emotion[ref] == k).any()]
    if not common:
        raise EmodiffError(f"{store}: /synthetic/{synth.name} and /corpora/{real.name} share no emotion")
    speakers = seen or sorted(set(real.speaker.tolist()))
    return _Pair(synth, real, ref, held, [f"{real.name}:{s}" for s in speakers], common)


@dataclass
class _HeldOut:
    """Set-level metrics against the speakers the generator never saw (NaN when it saw every speaker)."""

    tstr_uar: float = math.nan  # the classifier trained on the synthetic set alone, on held-out real utterances
    trtr_uar: float = math.nan  # the same classifier trained on the generator's speakers' real segments (the yardstick)
    two_sample_auc: float = math.nan  # real (generator's speakers) vs synthetic, cross-validated
    speakers: list[str] = field(default_factory=list)


def _measure(pair: _Pair, mel: np.ndarray, frames: np.ndarray, yard: _Yardstick, cfg: ClassifierConfig,
             device: torch.device) -> tuple[list[EmotionQuality], _HeldOut]:
    """Per-emotion rows for every emotion present in both sets, and the set-level held-out metrics."""
    s_embed, s_pred = embed_segments(yard.model, mel, frames, device, cfg.batch_size)
    rows = [_row(k, pair, mel, s_embed, s_pred, yard) for k in pair.common]
    real = pair.real
    synthetic = _segments(mel, frames, pair.synth.emotion)
    ref = np.flatnonzero(pair.ref)
    groups = real.utt[ref] if real.utt is not None else None
    out = _HeldOut(two_sample_auc=two_sample_auc(
        cfg, _segments(real.mel[ref], real.frames[ref], real.emotion[ref]), synthetic, device, seed=cfg.seed,
        real_groups=groups))
    if pair.held.any():
        held = np.flatnonzero(pair.held)
        out.speakers = pair.held_speakers()
        out.trtr_uar = utterance_uar(yard.model, real, held, device)
        out.tstr_uar = utterance_uar(fit(cfg, synthetic, device).model, real, held, device)
    return rows, out


# ---------------------------------------------------------------------------------------------- store: write


def _write(store: Path, result: QualityResult, config: dict, overwrite: bool) -> None:
    """Write ``/quality/<set>``: the per_emotion table and the group attrs (docs/quality.md)."""
    columns: dict[str, list | np.ndarray] = {}
    for f in fields(EmotionQuality):
        values = [getattr(r, f.name) for r in result.rows]
        columns[f.name] = (np.array(values, np.int64) if f.type == "int" else np.array(values, np.float64)
                           if f.type == "float" else [str(v) for v in values])
    Quality.write(store, result.synthetic, table=columns, config=config, overwrite=overwrite, attrs=dict(
        corpus=result.corpus, synthetic=result.synthetic, classifier=json.dumps(result.classifier.recorded()),
        classifier_source=result.classifier_source, seed=result.classifier.seed, mad_definition=MAD_DEFINITION,
        mad_mean=result.mad_mean, consistency_mean=result.consistency_mean,
        real_accuracy_on_train=result.real_accuracy_on_train, silence_threshold=SILENCE,
        real_speakers=json.dumps(result.real_speakers), tstr_uar=result.held_out.tstr_uar,
        trtr_uar=result.held_out.trtr_uar, two_sample_auc=result.held_out.two_sample_auc,
        held_out_speakers=json.dumps(result.held_out.speakers)))


# ---------------------------------------------------------------------------------------------- entry points


def assess(job: QualityJob, progress: Progress = QUIET) -> list[QualityResult]:
    """Measure each set ``job`` names (see QualityJob.synthetic) and write ``/quality/<set>``; one result per set.

    One yardstick classifier is trained per (corpus, classifier config) and shared by the sets
    that use it. ``progress`` hears the number of sets and each one measured.
    """
    store = Path(job.store)
    names = _set_names(store, job)
    device = resolve_device(job.device)
    corpora: dict[str, _Corpus] = {}
    plans: list[tuple[_Pair, ClassifierConfig, str]] = []
    for name in names:  # every set is checked before anything trains, so bad input fails at once
        synth = _read_synthetic(store, name)
        corpus = job.corpus or imitated_corpus(synth.training_speakers)
        if corpus is None:
            raise EmodiffError(f"{store}: /synthetic/{name} records no training_speakers (corpus:speaker); "
                               "name the real corpus it imitates (corpus=...)")
        if corpus not in corpora:
            corpora[corpus] = _read_corpus(store, corpus, name)
        plans.append((_pair(store, synth, corpora[corpus]), *_classifier(job, synth)))
    yardsticks: dict[tuple[str, ClassifierConfig, tuple[str, ...]], _Yardstick] = {}
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
        rows, held_out = _measure(pair, *_read_mel(store, name), yard, cfg, device)
        result = QualityResult(
            group=f"/quality/{name}", synthetic=name, corpus=real.name, rows=rows,
            mad_mean=_nanmean([r.mad for r in rows]), consistency_mean=_nanmean([r.consistency for r in rows]),
            real_accuracy_on_train=yard.accuracy, classifier=cfg, classifier_source=source, seconds=0.0,
            real_speakers=pair.speakers, held_out=held_out)
        config = {"synthetic": name, "synthetic_config_hash": pair.synth.config_hash, "corpus": real.name,
                  "corpus_config_hash": real.config_hash, "classifier": cfg.recorded(), "silence": SILENCE}
        _write(store, result, config, job.overwrite)
        result.seconds = time.perf_counter() - start
        results.append(result)
        progress.advance()
    return results

