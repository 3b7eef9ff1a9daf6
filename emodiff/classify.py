"""``emodiff classify``: the CNN-BLSTM under a speaker-independent protocol -> ``/results/<name>``.

For each fold of the protocol the classifier trains on the fold's training utterances (real
segments, synthetic segments, or both, with mixup and SpecAugment on the fly), keeps the
epoch with the best validation UAR, and scores the test utterances by pooling their segments.
Synthetic sets are used only if the generator that drew them never saw the fold's test or
validation speakers (their ``training_speakers`` attr); otherwise the run stops, or with
``allow_leak`` goes on and is marked leaky.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from emodiff import store as st
from emodiff.devices import resolve_device
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.ser.classifier import ClassifierConfig, CnnBlstm, mixup, soft_cross_entropy, spec_augment
from emodiff.ser.metrics import confusion, macro_f1, pool_segments, summarize, uar, weighted_accuracy
from emodiff.ser.protocols import Fold, by_session, loso, speaker_groups

TrainOn = Literal["real", "synthetic", "real+synthetic"]
PAIRED = ("iemocap", "msp-improv")  # corpora whose sessions pair two speakers (validation partner)


@dataclass(frozen=True)
class Augment:
    """``--augment`` parsed: sources joined by '+', e.g. ``synthetic:demo+mixup:0.4+specaugment``."""

    synthetic: str | None = None  # a /synthetic set name; "" means the only one in the store
    mixup: float | None = None  # Beta(alpha, alpha)
    specaugment: bool = False

    @classmethod
    def parse(cls, text: str) -> Augment:
        values: dict[str, object] = {}
        for part in filter(None, (p.strip() for p in text.split("+"))):
            kind, _, arg = part.partition(":")
            if kind == "synthetic":
                values["synthetic"] = arg
            elif kind == "mixup":
                try:
                    values["mixup"] = float(arg) if arg else 0.2
                except ValueError:
                    raise EmodiffError(f"--augment mixup:{arg}: expected a number (Beta alpha)") from None
            elif kind == "specaugment":
                values["specaugment"] = True
            elif kind in ("speed", "noise"):
                raise EmodiffError(f"--augment {kind}: needs `emodiff augment {kind}`, which is not built yet")
            else:
                raise EmodiffError(f"--augment {part!r}: expected synthetic[:NAME], mixup[:alpha] or specaugment")
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClassifyJob:
    store: Path
    corpus: str
    folds: str = "loso"  # loso | session | groups:K
    train_on: TrainOn = "real"
    augment: Augment = field(default_factory=Augment)
    allow_leak: bool = False
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    name: str | None = None
    device: str = "auto"
    overwrite: bool = False


@dataclass
class FoldResult:
    name: str
    uar: float
    wa: float
    f1: float
    best_epoch: int
    val_uar: float


@dataclass
class ClassifyResult:
    group: str
    folds: list[FoldResult]
    uar: tuple[float, float]
    leaky: bool
    seconds: float


@dataclass
class _Data:
    mel: torch.Tensor  # [N, C, F] float16
    frames: torch.Tensor  # [N]
    utt: np.ndarray  # [N] row in the utterance arrays
    emotion: np.ndarray  # [U]
    speaker: np.ndarray  # [U]
    session: np.ndarray  # [U]
    ids: np.ndarray  # [U]


def _read_corpus(store: Path, corpus: str) -> _Data:
    with st.open_store(store) as f:
        if f"corpora/{corpus}" not in f:
            raise EmodiffError(f"{store}: corpus {corpus} is not prepared; run `emodiff prepare {corpus} ROOT` first")
        g = f[f"corpora/{corpus}"]
        table = st.read_table(g["utterances"])
        return _Data(torch.from_numpy(g["segments/mel"][()].astype(np.float16)),
                     torch.from_numpy(g["segments/frames"][()].astype(np.int64)), g["segments/utt"][()],
                     table["emotion"].astype(np.int64), table["speaker"], table["session"], table["id"])


def _synthetic(store: Path, name: str | None) -> tuple[str, torch.Tensor, np.ndarray, list[str]]:
    """(set name, mels [M, C, F], emotions [M], the generator's training speakers)."""
    with st.open_store(store) as f:
        sets = st.visible(f["synthetic"]) if "synthetic" in f else []
        if not sets:
            raise EmodiffError(f"{store}: holds no synthetic set; run `emodiff sample --n N` first")
        if not name:
            if len(sets) > 1:
                raise EmodiffError(f"{store}: several synthetic sets ({', '.join(sets)}); name one: synthetic:NAME")
            name = sets[0]
        if name not in sets:
            raise EmodiffError(f"{store}: no synthetic set {name!r}; sets: {', '.join(sets)}")
        g = f[f"synthetic/{name}"]
        return (name, torch.from_numpy(g["mel"][()].astype(np.float16)), g["emotion"][()].astype(np.int64),
                json.loads(str(g.attrs["training_speakers"])))


def plan_folds(data: _Data, corpus: str, folds: str) -> list[Fold]:
    if folds == "loso":
        return loso(data.speaker.tolist(), data.session.tolist(), pair_by_session=corpus in PAIRED)
    if folds == "session":
        return by_session(data.speaker.tolist(), data.session.tolist())
    if folds.startswith("groups:"):
        try:
            k = int(folds.partition(":")[2])
        except ValueError:
            raise EmodiffError(f"--folds {folds}: expected groups:K with an integer K") from None
        return speaker_groups(data.speaker.tolist(), k)
    raise EmodiffError(f"--folds {folds!r}: expected loso, session or groups:K")


def leak_check(fold: Fold, data: _Data, corpus: str, seen: list[str], allow: bool) -> bool:
    """True if the generator saw a test or validation speaker of ``fold`` (EmodiffError unless ``allow``)."""
    held = sorted({f"{corpus}:{data.speaker[i]}" for i in fold.test + fold.val})
    leaked = [s for s in held if s in set(seen)]
    if leaked and not allow:
        raise EmodiffError(
            f"fold {fold.name}: the synthetic set's generator was trained on {', '.join(leaked)}, which this fold "
            f"tests or validates on; train one with `emodiff train --exclude-speakers {','.join(held)}` "
            "(or pass --allow-leak to go on, marked leaky)")
    return bool(leaked)


def classify(job: ClassifyJob, on_total: Callable[[int], None] = lambda n: None,
             on_fold: Callable[[FoldResult], None] = lambda r: None) -> ClassifyResult:
    """Run every fold of ``job.folds`` and store per-fold metrics and predictions; see the module docstring."""
    start = time.perf_counter()
    device = resolve_device(job.device)
    data = _read_corpus(job.store, job.corpus)
    folds = plan_folds(data, job.corpus, job.folds)
    use_synth = job.train_on != "real" or job.augment.synthetic is not None
    synth = _synthetic(job.store, job.augment.synthetic) if use_synth else None
    if synth is not None and synth[1].shape[1:] != data.mel.shape[1:]:
        raise EmodiffError(f"{job.store}: /synthetic/{synth[0]} segments are {tuple(synth[1].shape[1:])}, "
                           f"the corpus's are {tuple(data.mel.shape[1:])}")
    name = job.name or f"{job.corpus}-{job.folds.replace(':', '')}-{job.train_on.replace('+', '-')}"
    # Every fold is checked before any training, so a leak stops the run at once.
    leaky = synth is not None and any([leak_check(f, data, job.corpus, synth[3], job.allow_leak) for f in folds])
    results = []
    with st.write_group(job.store, f"results/{name}", config=_config(job, synth), overwrite=job.overwrite,
                        what=f"classify {name}") as g:
        on_total(len(folds))
        for fold in folds:
            res, preds = _run_fold(fold, data, synth, job, device)
            _write_fold(g.create_group(fold.name.replace("/", "_")), res, preds, data)
            results.append(res)
            on_fold(res)
        mean_std = summarize([r.uar for r in results])
        g.attrs.update(uar_mean=mean_std[0], uar_std=mean_std[1], leaky=leaky, corpus=job.corpus,
                       folds=job.folds, train_on=job.train_on, synthetic=synth[0] if synth else "")
    return ClassifyResult(f"/results/{name}", results, mean_std, leaky, time.perf_counter() - start)


def _config(job: ClassifyJob, synth: tuple | None) -> dict:
    return {"corpus": job.corpus, "folds": job.folds, "train_on": job.train_on, "augment": asdict(job.augment),
            "classifier": asdict(job.classifier), "synthetic": synth[0] if synth else None,
            "allow_leak": job.allow_leak}


def _rows_of(utts: tuple[int, ...], data: _Data) -> np.ndarray:
    return np.flatnonzero(np.isin(data.utt, np.asarray(utts)))


def _run_fold(fold: Fold, data: _Data, synth: tuple | None, job: ClassifyJob,
              device: torch.device) -> tuple[FoldResult, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Train on the fold, keep the best validation epoch, score the test utterances."""
    cfg = job.classifier
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    mel, frames, labels = [], [], []
    if job.train_on != "synthetic":
        rows = _rows_of(fold.train, data)
        mel.append(data.mel[rows])
        frames.append(data.frames[rows])
        labels.append(torch.from_numpy(data.emotion[data.utt[rows]]))
    if synth is not None and job.train_on != "real":
        mel.append(synth[1])
        frames.append(torch.full((len(synth[1]),), synth[1].shape[2]))
        labels.append(torch.from_numpy(synth[2]))
    x, fr, y = torch.cat(mel), torch.cat(frames), torch.cat(labels)
    if len(x) == 0 or not fold.test or not fold.val:
        raise EmodiffError(f"fold {fold.name}: an empty training, validation or test set")
    model = CnnBlstm(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for lo in range(0, len(x), cfg.batch_size):
            idx = order[lo:lo + cfg.batch_size]
            xb, fb = x[idx].float(), fr[idx]
            yb = torch.nn.functional.one_hot(y[idx], len(EMOTIONS)).float()
            if job.augment.specaugment:
                xb = spec_augment(xb, fb, generator=gen)
            if job.augment.mixup is not None:
                xb, yb = mixup(xb, yb, job.augment.mixup, generator=gen)
            loss = soft_cross_entropy(model(xb.to(device), fb.to(device)), yb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_uar = uar(*_predict(model, fold.val, data, device, cfg.batch_size))
        if val_uar > best[0]:
            best = (val_uar, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    truth, pred, probs = _predict(model, fold.test, data, device, cfg.batch_size, with_probs=True)
    res = FoldResult(fold.name, uar(truth, pred), weighted_accuracy(truth, pred), macro_f1(truth, pred),
                     best[1], best[0])
    return res, (np.asarray(fold.test), pred, probs)


@torch.no_grad()
def _predict(model: CnnBlstm, utts: tuple[int, ...], data: _Data, device: torch.device, batch: int,
             with_probs: bool = False):
    """(true labels, predicted labels[, log-probabilities]) per utterance, segments pooled."""
    model.eval()
    rows = _rows_of(utts, data)
    logits = torch.cat([model(data.mel[rows[lo:lo + batch]].float().to(device),
                              data.frames[rows[lo:lo + batch]].to(device)).cpu()
                        for lo in range(0, len(rows), batch)]).numpy()
    local = {u: i for i, u in enumerate(utts)}
    pooled = pool_segments(logits, np.array([local[u] for u in data.utt[rows]]), len(utts))
    truth, pred = data.emotion[np.asarray(utts)], pooled.argmax(axis=1)
    return (truth, pred, pooled) if with_probs else (truth, pred)


def _write_fold(g, res: FoldResult, preds: tuple[np.ndarray, np.ndarray, np.ndarray], data: _Data) -> None:
    utts, pred, probs = preds
    truth = data.emotion[utts]
    g.create_dataset("confusion", data=confusion(truth, pred))
    st.write_table(g.create_group("predictions"), {
        "id": [str(data.ids[u]) for u in utts], "speaker": [str(data.speaker[u]) for u in utts],
        "true": truth.astype(np.int8), "pred": pred.astype(np.int8)})
    g.create_dataset("predictions/log_probs", data=probs.astype(np.float32))
    g.attrs.update(uar=res.uar, wa=res.wa, macro_f1=res.f1, best_epoch=res.best_epoch, val_uar=res.val_uar)
