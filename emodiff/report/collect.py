"""Read a store into plain dataclasses for the report, defensively.

Every attr may be missing in a partial or older store: a missing number becomes ``None``, a
missing string ``""``. A group that cannot be read at all (a dataset missing, a bad attr) is left
out and named in :attr:`StoreContents.problems`, which the page shows, rather than stopping the
report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from emodiff import store as st
from emodiff.emotions import EMOTIONS
from emodiff.summary import CorpusStats, corpus_stats

T = TypeVar("T")


@dataclass
class GroupMeta:
    """The standard attrs every group carries (docs/store.md), as written."""

    path: str
    created: str = ""
    version: str = ""
    config_hash: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class CorpusInfo:
    stats: CorpusStats
    meta: GroupMeta


@dataclass
class EmbeddingInfo:
    model: str
    corpus: str
    utterances: int
    dim: int | None
    template: str
    meta: GroupMeta


@dataclass
class RunInfo:
    name: str
    step: int | None
    checkpoint: str
    sha256: str
    corpora: list[str]
    training_speakers: list[str]
    final: dict[str, float]  # final_<metric> attrs without the prefix, e.g. {"loss": 0.12}
    meta: GroupMeta


@dataclass
class SyntheticInfo:
    name: str
    n: int
    per_emotion: list[int]  # segments per emotion, EMOTIONS order
    frames: int
    sampler: str
    steps: int | None
    eta: float | None
    seed: int | None
    run: str
    checkpoint: str
    sha256: str
    training_speakers: list[str]  # corpus:speaker
    meta: GroupMeta

    @property
    def corpora(self) -> list[str]:
        """The corpora the generator was trained on, in first-seen order."""
        return list(dict.fromkeys(s.partition(":")[0] for s in self.training_speakers if ":" in s))


@dataclass
class QualityInfo:
    """``/quality/<set>``: one row per emotion, whatever columns its table holds."""

    name: str
    corpus: str
    classifier: str  # JSON of the yardstick classifier's settings, as stored
    rows: list[str]  # the `emotion` column
    columns: dict[str, np.ndarray]  # numeric columns
    text_columns: dict[str, list[str]]  # other str columns with something in them (e.g. `note`)
    summary: dict[str, float]  # numeric group attrs (set-level values such as mad_mean)
    meta: GroupMeta


@dataclass
class FoldInfo:
    name: str
    uar: float | None
    wa: float | None
    f1: float | None
    best_epoch: int | None
    seed: int | None
    confusion: np.ndarray | None  # [4, 4] counts, rows true, columns predicted


@dataclass
class ResultInfo:
    name: str
    corpus: str  # the test corpus
    train_corpus: str
    protocol: str  # loso | session | groups:K | cross-corpus | adaptation | as stored
    target_fraction: float | None
    train_on: str
    augment: str  # "synthetic+mixup:0.2"-style, "" for none
    synthetic: str
    leaky: bool
    repeats: int
    uar: tuple[float, float] | None  # (mean, std) as stored
    wa: tuple[float, float] | None  # stored, else from the folds (see metric_of)
    f1: tuple[float, float] | None
    folds: list[FoldInfo]
    classifier: dict[str, Any]  # the config's classifier section
    meta: GroupMeta

    @property
    def confusion(self) -> np.ndarray | None:
        """Confusion counts summed over folds and repeats."""
        mats = [f.confusion for f in self.folds if f.confusion is not None]
        return np.sum(mats, axis=0) if mats else None

    @property
    def folds_per_repeat(self) -> int:
        return len(self.folds) // self.repeats if self.repeats > 0 else len(self.folds)


@dataclass
class StoreContents:
    path: Path
    root_version: str
    corpora: list[CorpusInfo] = field(default_factory=list)
    embeddings: list[EmbeddingInfo] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)
    synthetic: list[SyntheticInfo] = field(default_factory=list)
    quality: list[QualityInfo] = field(default_factory=list)
    results: list[ResultInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # groups left out, and why

    def corpus(self, name: str) -> CorpusInfo | None:
        return next((c for c in self.corpora if c.stats.name == name), None)


def collect(store: Path) -> StoreContents:
    """Everything the report shows, read from ``store`` (EmodiffError if it is missing or not HDF5)."""
    with st.open_store(store) as f:
        out = StoreContents(path=Path(store), root_version=str(f.attrs.get("emodiff_version", "")))
        out.corpora = _each(f, "corpora", out.problems, lambda g: CorpusInfo(corpus_stats(g), _meta(g)))
        out.embeddings = [e for model in _children(f, "embeddings")
                          for e in _each(f, f"embeddings/{model}", out.problems, _embedding)]
        out.runs = _each(f, "runs", out.problems, _run)
        out.synthetic = _each(f, "synthetic", out.problems, _synthetic)
        out.quality = _each(f, "quality", out.problems, _quality)
        out.results = _each(f, "results", out.problems, _result)
    return out


def _children(f: h5py.File, section: str) -> list[str]:
    return [k for k in st.visible(f[section]) if isinstance(f[section][k], h5py.Group)] if section in f else []


def _each(f: h5py.File, section: str, problems: list[str], read: Callable[[h5py.Group], T]) -> list[T]:
    out = []
    for name in _children(f, section):
        try:
            out.append(read(f[section][name]))
        except (KeyError, ValueError, TypeError, IndexError, OSError) as err:
            problems.append(f"/{section}/{name} could not be read ({type(err).__name__}: {err}); left out")
    return out


def _meta(g: h5py.Group) -> GroupMeta:
    a = g.attrs
    try:
        config = json.loads(str(a["config"])) if "config" in a else {}
    except json.JSONDecodeError:
        config = {"unparsed": str(a["config"])}
    return GroupMeta(path=g.name, created=_str(a, "created"), version=_str(a, "emodiff_version"),
                     config_hash=_str(a, "config_hash"), config=config if isinstance(config, dict) else {})


def _str(a: h5py.AttributeManager | dict, key: str) -> str:
    v = a.get(key)
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def _float(a: h5py.AttributeManager | dict, key: str) -> float | None:
    v = a.get(key)
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _int(a: h5py.AttributeManager | dict, key: str) -> int | None:
    x = _float(a, key)
    return int(x) if x is not None else None


def _json_list(a: h5py.AttributeManager, key: str) -> list[str]:
    try:
        v = json.loads(_str(a, key) or "[]")
    except json.JSONDecodeError:
        return []
    return [str(x) for x in v] if isinstance(v, list) else []


def _embedding(g: h5py.Group) -> EmbeddingInfo:
    a = g.attrs
    model, corpus = g.name.split("/")[-2:]
    rows = len(g["pooled"]) if "pooled" in g else 0
    return EmbeddingInfo(model=model, corpus=_str(a, "corpus") or corpus, utterances=rows, dim=_int(a, "dim"),
                         template=_str(a, "template"), meta=_meta(g))


def _run(g: h5py.Group) -> RunInfo:
    a = g.attrs
    final = {k.removeprefix("final_"): float(v) for k, v in st.attrs_dict(g).items()
             if k.startswith("final_") and isinstance(v, (int, float))}
    speakers = _json_list(a, "training_speakers")
    if not speakers and "training_speakers" in g:
        speakers = st.read_table(g)["training_speakers"].tolist()
    return RunInfo(name=g.name.rsplit("/", 1)[-1], step=_int(a, "step"), checkpoint=_str(a, "checkpoint"),
                   sha256=_str(a, "checkpoint_sha256"), corpora=_json_list(a, "corpora"),
                   training_speakers=speakers, final=final, meta=_meta(g))


def _synthetic(g: h5py.Group) -> SyntheticInfo:
    a = g.attrs
    emotion = g["emotion"][()].astype(int) if "emotion" in g else np.zeros(0, int)
    counts = np.bincount(emotion[(emotion >= 0) & (emotion < len(EMOTIONS))], minlength=len(EMOTIONS))
    return SyntheticInfo(
        name=g.name.rsplit("/", 1)[-1], n=len(emotion), per_emotion=[int(c) for c in counts],
        frames=int(g["mel"].shape[-1]) if "mel" in g else 0, sampler=_str(a, "sampler"), steps=_int(a, "steps"),
        eta=_float(a, "eta"), seed=_int(a, "seed"), run=_str(a, "run"), checkpoint=_str(a, "checkpoint"),
        sha256=_str(a, "checkpoint_sha256"), training_speakers=_json_list(a, "training_speakers"), meta=_meta(g))


def _quality_table(g: h5py.Group) -> h5py.Group:
    """The group holding the per-emotion columns: ``g`` itself or a subgroup (``per_emotion``)."""
    if isinstance(g.get("emotion"), h5py.Dataset):
        return g
    for key in ("per_emotion", *st.visible(g)):
        if isinstance(g.get(key), h5py.Group) and isinstance(g[key].get("emotion"), h5py.Dataset):
            return g[key]
    raise KeyError(f"{g.name} holds no table with an emotion column")


_STANDARD_ATTRS = {"seed", "config_hash", "created", "emodiff_version", "config"}


def _quality(g: h5py.Group) -> QualityInfo:
    table = st.read_table(_quality_table(g))
    rows = [str(r) for r in table.pop("emotion")]
    numeric = {k: v for k, v in table.items() if v.dtype.kind in "iuf" and v.ndim == 1}
    text = {k: [str(x) for x in v] for k, v in table.items() if k not in numeric and any(str(x) for x in v)}
    summary = {k: float(v) for k, v in st.attrs_dict(g).items()
               if k not in _STANDARD_ATTRS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    a = g.attrs
    return QualityInfo(name=g.name.rsplit("/", 1)[-1], corpus=_str(a, "corpus"), classifier=_str(a, "classifier"),
                       rows=rows, columns=numeric, text_columns=text, summary=summary, meta=_meta(g))


def _fold_groups(g: h5py.Group) -> Iterator[h5py.Group]:
    # A fold is a subgroup holding a confusion matrix or a uar attr (not `predictions`).
    for key in st.visible(g):
        item = g[key]
        if isinstance(item, h5py.Group) and ("confusion" in item or "uar" in item.attrs):
            yield item


def _fold(g: h5py.Group) -> FoldInfo:
    a = g.attrs
    conf = g["confusion"][()].astype(np.int64) if "confusion" in g else None
    if conf is not None and conf.shape != (len(EMOTIONS), len(EMOTIONS)):
        raise ValueError(f"{g.name}/confusion has shape {conf.shape}, expected (4, 4)")
    return FoldInfo(name=g.name.rsplit("/", 1)[-1], uar=_float(a, "uar"), wa=_float(a, "wa"),
                    f1=_float(a, "macro_f1"), best_epoch=_int(a, "best_epoch"), seed=_int(a, "seed"), confusion=conf)


def augment_text(value: object) -> str:
    """The ``augment`` attr as text; older results keep it only as the config's dict."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        return ""
    parts = []
    if value.get("synthetic") is not None:
        parts.append("synthetic" + (f":{value['synthetic']}" if value["synthetic"] else ""))
    if value.get("mixup") is not None:
        parts.append(f"mixup:{float(value['mixup']):g}")
    if value.get("specaugment"):
        parts.append("specaugment")
    for key, v in value.items():  # sources added later (speed, noise, ...) still show
        if key not in ("synthetic", "mixup", "specaugment") and v not in (None, False, "", 0):
            parts.append(key if v is True else f"{key}:{v}")
    return "+".join(parts)


def metric_of(stored: tuple[float | None, float | None], per_fold: list[float | None]) -> tuple[float, float] | None:
    """(mean, std): the stored pair when there is one, else mean and sample std (ddof 1) of the folds."""
    if stored[0] is not None:
        return stored[0], stored[1] if stored[1] is not None else 0.0
    values = [v for v in per_fold if v is not None]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _result(g: h5py.Group) -> ResultInfo:
    a = g.attrs
    meta = _meta(g)
    cfg = meta.config
    folds = [_fold(x) for x in _fold_groups(g)]
    corpus = _str(a, "corpus") or str(cfg.get("corpus", ""))
    augment = _str(a, "augment") if "augment" in a else augment_text(cfg.get("augment"))
    classifier = cfg.get("classifier") if isinstance(cfg.get("classifier"), dict) else {}
    return ResultInfo(
        name=g.name.rsplit("/", 1)[-1], corpus=corpus,
        train_corpus=_str(a, "train_corpus") or str(cfg.get("train_corpus") or corpus),
        protocol=_str(a, "protocol") or _str(a, "folds") or str(cfg.get("protocol") or cfg.get("folds") or ""),
        target_fraction=_float(a, "target_fraction"), train_on=_str(a, "train_on") or str(cfg.get("train_on", "")),
        augment=augment, synthetic=_str(a, "synthetic"), leaky=bool(a.get("leaky", False)),
        repeats=max(1, _int(a, "repeats") or 1),
        uar=metric_of((_float(a, "uar_mean"), _float(a, "uar_std")), [f.uar for f in folds]),
        wa=metric_of((_float(a, "wa_mean"), _float(a, "wa_std")), [f.wa for f in folds]),
        f1=metric_of((_float(a, "f1_mean"), _float(a, "f1_std")), [f.f1 for f in folds]),
        folds=folds, classifier=classifier, meta=meta)
