"""The store's schema as code: one typed record per group kind (docs/store.md has the prose).

Each record is a frozen dataclass with

- ``path(...)``: the group's path in the store (``corpora/ravdess``);
- ``names(f)``: the complete groups of that kind, sorted; a ``.tmp-*`` group (a write in flight)
  and anything that is not a group (a foreign dataset) are left out;
- ``exists(f, ...)`` and ``read(f, ...)``: the record with its attrs typed. A missing attr reads
  as its default (``""``, ``None``, an empty list), so older and partial stores still read; the
  raw attrs stay in ``attrs`` for anything a step wants to check itself. Large arrays (mels,
  token states) are read on demand by the record's ``load_*`` methods.

Beside the records: :func:`existing` (is a group already there, made with the same settings?),
:func:`not_prepared` and :func:`taken` (the errors every step raises for a missing corpus and an
occupied name), :class:`SegmentWriter` (the growable ``segments/`` datasets of prepare and
augment), and the writers of ``/runs``, ``/synthetic`` and ``/quality``.

Adding an attr to a group: one field here, read in the record's ``read`` (and written by its
writer), plus its line in docs/store.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.store import (
    TMP_PREFIX,
    attrs_dict,
    config_hash,
    open_store,
    read_table,
    visible,
    write_group,
    write_table,
)

# ---------------------------------------------------------------------------------------------- listing


def group_at(f: h5py.File | h5py.Group, path: str) -> h5py.Group | None:
    """The complete group at ``path``; None when it is absent, in flight (``.tmp-*``) or not a group."""
    node: Any = f
    for part in [p for p in path.strip("/").split("/") if p]:
        if part.startswith(TMP_PREFIX) or not isinstance(node, h5py.Group) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, h5py.Group) else None


def children(f: h5py.File | h5py.Group, section: str) -> list[str]:
    """Names of the complete groups directly under ``section``, sorted (see the module docstring)."""
    g = group_at(f, section)
    return visible(g) if g is not None else []


def meta(f: h5py.File | h5py.Group, path: str) -> Meta | None:
    """The standard attrs of the complete group at ``path``; None when there is none."""
    g = group_at(f, path)
    return Meta.of(g) if g is not None else None


def _where(f: h5py.File | h5py.Group) -> str:
    return str(f.file.filename)


# ---------------------------------------------------------------------------------------------- typed attrs


def _str(a: Mapping[str, Any], key: str) -> str:
    v = a.get(key)
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def _float(a: Mapping[str, Any], key: str) -> float | None:
    """A finite number, else None (NaN stands for "not applicable" in the store)."""
    try:
        x = float(a.get(key))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _int(a: Mapping[str, Any], key: str) -> int | None:
    x = _float(a, key)
    return int(x) if x is not None else None


def _json(a: Mapping[str, Any], key: str) -> Any:
    try:
        return json.loads(_str(a, key)) if key in a else None
    except json.JSONDecodeError:
        return None


def _json_list(a: Mapping[str, Any], key: str) -> tuple[str, ...]:
    v = _json(a, key)
    return tuple(str(x) for x in v) if isinstance(v, list) else ()


@dataclass(frozen=True)
class Meta:
    """The standard attrs every group carries: ``emodiff_version``, ``created``, ``config``, ``config_hash``."""

    path: str
    created: str = ""
    version: str = ""
    config_hash: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, g: h5py.Group) -> Meta:
        a = g.attrs
        try:
            config = json.loads(_str(a, "config")) if "config" in a else {}
        except json.JSONDecodeError:
            config = {"unparsed": _str(a, "config")}
        return cls(path=g.name, created=_str(a, "created"), version=_str(a, "emodiff_version"),
                   config_hash=_str(a, "config_hash"), config=config if isinstance(config, dict) else {})


# ---------------------------------------------------------------------------------------------- already there?


@dataclass(frozen=True)
class Absent:
    """No complete group at ``path``."""

    path: str


@dataclass(frozen=True)
class Same:
    """The group is there, made with the same settings (its ``config_hash`` matches)."""

    path: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Different:
    """The group is there, made with other settings."""

    path: str
    attrs: dict[str, Any]

    def error(self, store: Path | str, fix: str = "pass --overwrite to replace it") -> EmodiffError:
        """The one message for "there, with other settings"; ``fix`` says what the user can do."""
        return EmodiffError(f"{store}: /{self.path} exists with other settings; {fix}")


def compare(f: h5py.File, path: str, config: Mapping[str, Any]) -> Absent | Same | Different:
    """:func:`existing` on an open store."""
    path = path.strip("/")
    g = group_at(f, path)
    if g is None:
        return Absent(path)
    attrs = attrs_dict(g)
    return (Same if attrs.get("config_hash") == config_hash(config)[1] else Different)(path, attrs)


def existing(store: Path, path: str, config: Mapping[str, Any]) -> Absent | Same | Different:
    """Whether ``store`` holds the group ``path`` and whether ``config`` is what made it.

    A missing store is Absent. The step decides what each answer means: ``sample`` and
    ``augment`` return at once on Same and raise ``Different.error`` otherwise; ``classify``
    refuses any group already there (:func:`taken`).
    """
    if not Path(store).exists():
        return Absent(path.strip("/"))
    with open_store(store) as f:
        return compare(f, path, config)


def taken(store: Path | str, path: str, instead: str = "") -> EmodiffError:
    """The error for a group already there when the step replaces only with ``--overwrite``."""
    return EmodiffError(f"{store}: already holds /{path.strip('/')}; pass --overwrite to replace it"
                        + (f" or {instead}" if instead else ""))


# ---------------------------------------------------------------------------------------------- corpora


def not_prepared(store: Path | str, corpus: str, note: str = "") -> EmodiffError:
    """The error for a step that needs ``/corpora/<corpus>`` when the store lacks it."""
    return EmodiffError(f"{store}: corpus {corpus} is not prepared{f' ({note})' if note else ''}; "
                        f"run `emodiff prepare {corpus} ROOT` first")


def none_prepared(store: Path | str) -> EmodiffError:
    return EmodiffError(f"{store}: holds no prepared corpus; run `emodiff prepare CORPUS ROOT` first")


@dataclass(frozen=True)
class Corpus:
    """``/corpora/<name>``: the utterance table, the segment index and the corpus's settings.

    The mels stay in the store until :meth:`load_mel`; ``mel_path`` names them for a lazy reader.
    """

    name: str
    meta: Meta
    attrs: dict[str, Any]
    utterances: dict[str, np.ndarray]  # columns, one row per utterance (docs/store.md)
    seg_utt: np.ndarray  # [N] int64, the utterance row of each segment
    seg_frames: np.ndarray  # [N] int64, valid frames of each segment
    mel_shape: tuple[int, ...]  # (N, n_mels, segment_frames)
    mel_dtype: str
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    corpus: str = ""
    root: str = ""
    dtype: str = ""
    calm: str = ""
    n_skipped: int | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    sample_rate: int | None = None
    n_fft: int | None = None
    hop: int | None = None
    win: int | None = None
    n_mels: int | None = None
    fmin: float | None = None
    fmax: float | None = None
    segment_frames: int | None = None
    log_min: float | None = None
    log_max: float | None = None

    @staticmethod
    def path(name: str) -> str:
        return f"corpora/{name}"

    @property
    def mel_path(self) -> str:
        return f"corpora/{self.name}/segments/mel"

    @staticmethod
    def names(f: h5py.File) -> list[str]:
        return children(f, "corpora")

    @staticmethod
    def exists(f: h5py.File, name: str) -> bool:
        return group_at(f, Corpus.path(name)) is not None

    @classmethod
    def read(cls, f: h5py.File, name: str, note: str = "") -> Corpus:
        """The record of ``/corpora/<name>``; :func:`not_prepared` (with ``note``) when it is not there."""
        g = group_at(f, cls.path(name))
        if g is None:
            raise not_prepared(_where(f), name, note)
        a = attrs_dict(g)
        mel = g["segments/mel"]
        skipped = read_table(g["skipped"]) if "skipped" in g else {}
        excluded = _json(a, "excluded")
        return cls(
            name=name, meta=Meta.of(g), attrs=a, utterances=read_table(g["utterances"]),
            seg_utt=g["segments/utt"][()].astype(np.int64), seg_frames=g["segments/frames"][()].astype(np.int64),
            mel_shape=tuple(mel.shape), mel_dtype=str(mel.dtype),
            skipped=tuple(zip(skipped.get("path", []), skipped.get("reason", []), strict=True)),
            corpus=_str(a, "corpus"), root=_str(a, "root"), dtype=_str(a, "dtype"), calm=_str(a, "calm"),
            n_skipped=_int(a, "n_skipped"), excluded=excluded if isinstance(excluded, dict) else {},
            sample_rate=_int(a, "sample_rate"), n_fft=_int(a, "n_fft"), hop=_int(a, "hop"), win=_int(a, "win"),
            n_mels=_int(a, "n_mels"), fmin=_float(a, "fmin"), fmax=_float(a, "fmax"),
            segment_frames=_int(a, "segment_frames"), log_min=_float(a, "log_min"), log_max=_float(a, "log_max"))

    def load_mel(self, f: h5py.File) -> np.ndarray:
        """Every segment's mel [N, n_mels, frames] as float16."""
        return f[self.mel_path][()].astype(np.float16, copy=False)

    @property
    def seg_emotion(self) -> np.ndarray:
        """[N] int64, the emotion of each segment's utterance."""
        return self.utterances["emotion"].astype(np.int64)[self.seg_utt]

    def qualified_speakers(self) -> np.ndarray:
        """[U] ``corpus:speaker``, the form a generator's training speakers are recorded in."""
        return np.array([f"{self.name}:{s}" for s in self.utterances["speaker"]])


# ---------------------------------------------------------------------------------------------- growable segments


DEFLATE_LEVEL = 1  # HDF5's deflate level of every segments/mel dataset
GROW = 1024  # rows added to segments/mel at a time


def compress_segment(segment: np.ndarray) -> bytes:
    """One segment [n_mels, frames] as the stored chunk: HDF5's shuffle, then deflate (for
    :meth:`SegmentWriter.append_chunks`, so workers can compress in parallel)."""
    return deflate(shuffle(segment))


def shuffle(segment: np.ndarray) -> bytes:
    """HDF5's shuffle filter: byte k of every element, for k = 0 .. itemsize - 1, in turn."""
    raw = np.ascontiguousarray(segment).view(np.uint8).reshape(-1, segment.itemsize)
    return np.ascontiguousarray(raw.T).tobytes()


def deflate(data: bytes) -> bytes:
    """HDF5's deflate filter at DEFLATE_LEVEL with the RLE strategy: the padding (the -1 tail of
    short segments) is most of what compresses, and RLE gets it at a fraction of the cost of the
    default strategy; any inflater reads it."""
    packer = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return packer.compress(data) + packer.flush()


class SegmentWriter:
    """``<group>/segments``: ``mel`` [N, C, F] grown as segments arrive (one segment per chunk,
    shuffle + deflate), then ``utt`` [N] and ``frames`` [N] int32 and any ``extra`` per-segment
    columns when :meth:`close` is called. The segments of one utterance are appended together,
    so an utterance's rows are contiguous and in time order."""

    def __init__(self, group: h5py.Group, shape: tuple[int, int], dtype: str | np.dtype,
                 extra: Mapping[str, str | np.dtype] | None = None) -> None:
        self.group = group.require_group("segments")
        self.dtype = np.dtype(dtype)
        self.mel = self.group.create_dataset(
            "mel", shape=(0, *shape), maxshape=(None, *shape), dtype=self.dtype, chunks=(1, *shape),
            shuffle=True, compression="gzip", compression_opts=DEFLATE_LEVEL)
        self.capacity = 0  # mel.shape costs an HDF5 call; track the allocated rows here
        self.utt: list[int] = []
        self.frames: list[np.ndarray] = []
        self.extra: dict[str, list[Any]] = {k: [] for k in extra or {}}
        self.extra_dtype = {k: np.dtype(v) for k, v in (extra or {}).items()}

    def __len__(self) -> int:
        return len(self.utt)

    def _grow(self, n: int) -> int:
        first = len(self.utt)
        if first + n > self.capacity:
            self.capacity = first + n + GROW
            self.mel.resize(self.capacity, axis=0)
        return first

    def _index(self, row: int, frames: np.ndarray, extra: Mapping[str, Any]) -> None:
        if set(extra) != set(self.extra):
            raise ValueError(f"per-segment columns {sorted(extra)}; expected {sorted(self.extra)}")
        self.utt.extend([row] * len(frames))
        self.frames.append(np.asarray(frames, dtype=np.int32))
        for k, v in extra.items():
            self.extra[k].extend([v] * len(frames))

    def append(self, row: int, mel: np.ndarray, frames: np.ndarray, **extra: Any) -> None:
        """The segments [S, C, F] of utterance ``row``, their valid frames [S] and one value per extra column."""
        first = self._grow(len(mel))
        self.mel[first:first + len(mel)] = np.asarray(mel).astype(self.dtype, copy=False)
        self._index(row, frames, extra)

    def append_chunks(self, row: int, chunks: Sequence[bytes], frames: np.ndarray, **extra: Any) -> None:
        """Like :meth:`append`, with segments already compressed by :func:`compress_segment`."""
        first = self._grow(len(chunks))
        for i, chunk in enumerate(chunks):
            self.mel.id.write_direct_chunk((first + i, 0, 0), chunk)
        self._index(row, frames, extra)

    def close(self) -> int:
        """Trim ``mel`` to the segments written and write the index columns; returns N."""
        n = len(self.utt)
        self.mel.resize(n, axis=0)
        self.group.create_dataset("utt", data=np.asarray(self.utt, dtype=np.int32))
        self.group.create_dataset("frames", data=np.concatenate(self.frames) if self.frames else np.zeros(0, np.int32))
        for k, values in self.extra.items():
            self.group.create_dataset(k, data=np.asarray(values, dtype=self.extra_dtype[k]))
        return n


# ---------------------------------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class Embeddings:
    """``/embeddings/<model>/<corpus>``: one condition text per utterance, encoded; arrays on demand."""

    model: str  # the group name (store-safe model name)
    corpus: str
    meta: Meta
    attrs: dict[str, Any]
    rows: int  # U
    width: int  # L of tokens [U, L, D]
    source: str = ""  # the `model` attr: the folder or name loaded
    template: str = ""
    pooling: str = ""
    dim: int | None = None
    max_length: int | None = None
    corpus_created: str = ""
    truncated: int = 0

    @staticmethod
    def path(model: str, corpus: str) -> str:
        return f"embeddings/{model}/{corpus}"

    @staticmethod
    def models(f: h5py.File) -> list[str]:
        return children(f, "embeddings")

    @staticmethod
    def names(f: h5py.File, model: str) -> list[str]:
        """The corpora embedded with ``model``."""
        return children(f, f"embeddings/{model}")

    @staticmethod
    def exists(f: h5py.File, model: str, corpus: str) -> bool:
        return group_at(f, Embeddings.path(model, corpus)) is not None

    @classmethod
    def read(cls, f: h5py.File, model: str, corpus: str) -> Embeddings:
        g = group_at(f, cls.path(model, corpus))
        if g is None:
            raise EmodiffError(f"{_where(f)}: /{cls.path(model, corpus)} is missing; run "
                               f"`emodiff embed --corpus {corpus} --model {model}` first")
        a = attrs_dict(g)
        return cls(model=model, corpus=_str(a, "corpus") or corpus, meta=Meta.of(g), attrs=a,
                   rows=len(g["pooled"]) if "pooled" in g else 0,
                   width=int(g["tokens"].shape[1]) if "tokens" in g else 0, source=_str(a, "model"),
                   template=_str(a, "template"), pooling=_str(a, "pooling"), dim=_int(a, "dim"),
                   max_length=_int(a, "max_length"), corpus_created=_str(a, "corpus_created"),
                   truncated=_int(a, "truncated") or 0)

    def _path(self) -> str:
        return self.path(self.model, self.corpus)

    def load_tokens(self, f: h5py.File) -> np.ndarray:
        """[U, L, D] float16, zero past ``lengths``."""
        return f[self._path()]["tokens"][()].astype(np.float16, copy=False)

    def load_lengths(self, f: h5py.File) -> np.ndarray:
        return f[self._path()]["lengths"][()]

    def load_pooled(self, f: h5py.File) -> np.ndarray:
        return f[self._path()]["pooled"][()]


# ---------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """``/runs/<name>``: where a finished training run's files are, and what it was trained on."""

    name: str
    meta: Meta
    attrs: dict[str, Any]
    folder: str = ""  # the run folder (the `path` attr)
    checkpoint: str = ""  # the last checkpoint file
    sha256: str = ""  # its sha256 (the `checkpoint_sha256` attr)
    step: int | None = None
    corpora: tuple[str, ...] = ()
    exclude_speakers: tuple[str, ...] = ()
    embed_model: str = ""
    training_speakers: tuple[str, ...] = ()  # corpus:speaker
    final: dict[str, float] = field(default_factory=dict)  # final_<metric> without the prefix
    generator: str = "diffusion"  # the family that trained it (emodiff/generators/)

    @staticmethod
    def path(name: str) -> str:
        return f"runs/{name}"

    @staticmethod
    def names(f: h5py.File) -> list[str]:
        return children(f, "runs")

    @staticmethod
    def exists(f: h5py.File, name: str) -> bool:
        return group_at(f, Run.path(name)) is not None

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Run:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{_where(f)}: no run {name!r}; runs: {', '.join(cls.names(f)) or 'none'}")
        a = attrs_dict(g)
        speakers = _json_list(a, "training_speakers")
        if not speakers and isinstance(g.get("training_speakers"), h5py.Dataset):
            speakers = tuple(read_table(g)["training_speakers"].tolist())
        final = {k.removeprefix("final_"): float(v) for k, v in a.items()
                 if k.startswith("final_") and isinstance(v, (int, float))}
        return cls(name=name, meta=Meta.of(g), attrs=a, folder=_str(a, "path"), checkpoint=_str(a, "checkpoint"),
                   sha256=_str(a, "checkpoint_sha256"), step=_int(a, "step"), corpora=_json_list(a, "corpora"),
                   exclude_speakers=_json_list(a, "exclude_speakers"), embed_model=_str(a, "embed_model"),
                   training_speakers=speakers, final=final, generator=_str(a, "generator") or "diffusion")

    @classmethod
    def all(cls, f: h5py.File) -> list[Run]:
        return [cls.read(f, n) for n in cls.names(f)]

    @classmethod
    def latest(cls, f: h5py.File) -> Run | None:
        """The run recorded last (by its ``created`` attr); None when the store records none."""
        runs = cls.all(f)
        return max(runs, key=lambda r: r.meta.created) if runs else None

    @classmethod
    def of_checkpoint(cls, f: h5py.File, checkpoint: Path) -> Run | None:
        """The run whose last checkpoint is the file ``checkpoint`` (paths compared resolved), if any."""
        target = Path(checkpoint).resolve()
        return next((r for r in cls.all(f) if r.checkpoint and Path(r.checkpoint).resolve() == target), None)

    @classmethod
    def write(cls, store: Path, name: str, *, config: Mapping[str, Any], folder: Path, checkpoint: Path,
              sha256: str, step: int, corpora: Sequence[str], exclude_speakers: Sequence[str], embed_model: str,
              training_speakers: Sequence[str], final: Mapping[str, float], generator: str = "diffusion",
              what: str = "", wait_s: float = 0.0) -> None:
        """Write (or replace: a resumed run finishes again) ``/runs/<name>``, waiting up to ``wait_s`` for
        another writer of the store to finish."""
        with write_group(store, cls.path(name), config=config, overwrite=True, what=what or f"train {name}",
                         wait_s=wait_s) as g:
            write_table(g, {"training_speakers": list(training_speakers)})
            g.attrs.update(path=str(folder), checkpoint=str(checkpoint), checkpoint_sha256=sha256, step=step,
                           corpora=json.dumps(list(corpora)), exclude_speakers=json.dumps(list(exclude_speakers)),
                           embed_model=embed_model, training_speakers=json.dumps(list(training_speakers)),
                           generator=generator, **{f"final_{k}": v for k, v in final.items()})


# ---------------------------------------------------------------------------------------------- synthetic sets


@dataclass(frozen=True)
class SyntheticAttrs:
    """The provenance attrs of ``/synthetic/<name>`` (docs/store.md), the same for every generator family.

    ``drawing`` holds the family's own settings (for diffusion: sampler, steps, eta, guidance,
    parameterization), written as attrs of their own; ``drawn_with`` says them in one line for tables.
    """

    checkpoint: str = ""
    checkpoint_sha256: str = ""
    run: str = ""
    seed: int | None = None
    generator: str = "diffusion"  # the family that drew the set (emodiff/generators/)
    drawn_with: str = ""
    drawing: dict[str, Any] = field(default_factory=dict)
    training_speakers: tuple[str, ...] = ()  # corpus:speaker, the generator's (for the leak guard)
    embed_model: str = ""
    template: str = ""
    recipe: dict[str, Any] | None = None  # the generator's recipe

    def to_attrs(self) -> dict[str, Any]:
        return {**self.drawing, "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
                "run": self.run, "seed": self.seed, "generator": self.generator, "drawn_with": self.drawn_with,
                "training_speakers": json.dumps(list(self.training_speakers)), "embed_model": self.embed_model,
                "template": self.template, "recipe": json.dumps(self.recipe)}

    @classmethod
    def of(cls, a: Mapping[str, Any]) -> SyntheticAttrs:
        recipe = _json(a, "recipe")
        drawing = {k: v for k, v in a.items() if k not in _SYNTHETIC_COMMON}
        drawn_with = _str(a, "drawn_with") or ", ".join(str(x) for x in (  # sets drawn before drawn_with was kept
            a.get("sampler"), f"{a['steps']} steps" if "steps" in a else None,
            f"guidance {a['guidance']:g}" if a.get("guidance") else None) if x)
        return cls(checkpoint=_str(a, "checkpoint"), checkpoint_sha256=_str(a, "checkpoint_sha256"), run=_str(a, "run"),
                   seed=_int(a, "seed"), generator=_str(a, "generator") or "diffusion", drawn_with=drawn_with,
                   drawing=drawing, training_speakers=_json_list(a, "training_speakers"),
                   embed_model=_str(a, "embed_model"), template=_str(a, "template"),
                   recipe=recipe if isinstance(recipe, dict) else None)


_SYNTHETIC_COMMON = {f.name for f in fields(SyntheticAttrs)} - {"drawing"} | {
    "config", "config_hash", "created", "emodiff_version", "rows_done"}


@dataclass(frozen=True)
class Synthetic:
    """``/synthetic/<name>``: labelled generated segments; the mels are read by :meth:`load_mel`."""

    name: str
    meta: Meta
    attrs: dict[str, Any]
    provenance: SyntheticAttrs
    mel_shape: tuple[int, ...]  # (M, C, F); () when mel is missing
    emotion: np.ndarray  # [M] int64 (empty when the dataset is missing: see has_emotion)
    has_emotion: bool
    has_frames: bool  # sets drawn before the `frames` field lack it

    @staticmethod
    def path(name: str) -> str:
        return f"synthetic/{name}"

    @staticmethod
    def names(f: h5py.File) -> list[str]:
        return children(f, "synthetic")

    @staticmethod
    def exists(f: h5py.File, name: str) -> bool:
        return group_at(f, Synthetic.path(name)) is not None

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Synthetic:
        g = group_at(f, cls.path(name))
        if g is None:
            sets = cls.names(f)
            raise EmodiffError(f"{_where(f)}: no synthetic set {name!r}; sets: {', '.join(sets) or 'none'}")
        a = attrs_dict(g)
        emotion = g["emotion"][()].astype(np.int64) if "emotion" in g else np.zeros(0, np.int64)
        return cls(name=name, meta=Meta.of(g), attrs=a, provenance=SyntheticAttrs.of(a),
                   mel_shape=tuple(g["mel"].shape) if "mel" in g else (), emotion=emotion,
                   has_emotion="emotion" in g, has_frames="frames" in g)

    def check(self, store: Path | str, *, speakers: bool = False) -> None:
        """EmodiffError unless mel [M, C, F] and emotion [M] with ids in 0..3 are there (and, with
        ``speakers``, the training_speakers attr the leak guard needs)."""
        where = f"{store}: /synthetic/{self.name}"
        if not self.mel_shape or not self.has_emotion or (speakers and "training_speakers" not in self.attrs):
            what = "mel, emotion or its training_speakers attr" if speakers else "mel or emotion"
            raise EmodiffError(f"{where} lacks {what} (expected emodiff sample's layout)")
        if len(self.mel_shape) != 3 or self.emotion.shape != self.mel_shape[:1]:
            raise EmodiffError(f"{where}: expected mel (M, C, F) and emotion (M,), got {self.mel_shape} and "
                               f"{self.emotion.shape}")
        if len(self.emotion) and (self.emotion.min() < 0 or self.emotion.max() >= len(EMOTIONS)):
            raise EmodiffError(f"{where}/emotion holds ids outside 0..{len(EMOTIONS) - 1}")

    @property
    def per_emotion(self) -> list[int]:
        """Segments per emotion, in EMOTIONS order (ids outside 0..3 are not counted)."""
        e = self.emotion
        return [int(c) for c in np.bincount(e[(e >= 0) & (e < len(EMOTIONS))], minlength=len(EMOTIONS))]

    def load_mel(self, f: h5py.File) -> tuple[np.ndarray, np.ndarray | None]:
        """(mel [M, C, F] float16, valid frames [M] int64, or None for a set drawn before that field)."""
        g = f[self.path(self.name)]
        mel = g["mel"][()].astype(np.float16)
        return mel, g["frames"][()].astype(np.int64) if "frames" in g else None


class SyntheticWriter:
    """The datasets of a ``/synthetic/<name>`` being drawn; rows are written in order and the count
    done is kept in the side file, so an interrupted draw resumes (write_group's ``resumable``)."""

    def __init__(self, group: h5py.Group, n: int, mel: tuple[int, int], cond_dim: int) -> None:
        self.group = group
        self.mel = group.require_dataset("mel", shape=(n, *mel), dtype=np.float16, chunks=(1, *mel), shuffle=True,
                                         compression="gzip", compression_opts=DEFLATE_LEVEL)
        self.cond = group.require_dataset("cond", shape=(n, cond_dim), dtype=np.float32)
        self.frames = group.require_dataset("frames", shape=(n,), dtype=np.int64)

    @property
    def done(self) -> int:
        """Rows written by this or an interrupted earlier draw."""
        return int(self.group.attrs.get("rows_done", 0))

    def write(self, lo: int, mel: np.ndarray, frames: np.ndarray, cond: np.ndarray) -> None:
        """Rows lo .. lo + len(mel): mels [B, C, F] in [-1, 1], valid frames [B], pooled condition [B, D]."""
        hi = lo + len(mel)
        self.mel[lo:hi] = mel.astype(np.float16)
        self.frames[lo:hi] = frames
        self.cond[lo:hi] = cond
        self.group.attrs["rows_done"] = hi
        self.group.file.flush()

    def finish(self, *, emotion: np.ndarray, speaker: Sequence[str], text: Sequence[str],
               source_utterance: Sequence[str], provenance: SyntheticAttrs) -> None:
        """The per-segment labels and the provenance attrs; the set is complete after this."""
        write_table(self.group, {"emotion": np.asarray(emotion, dtype=np.int8), "speaker": list(speaker),
                                 "text": list(text), "source_utterance": list(source_utterance)})
        if "rows_done" in self.group.attrs:
            del self.group.attrs["rows_done"]
        self.group.attrs.update(provenance.to_attrs())


@contextlib.contextmanager
def write_synthetic(store: Path, name: str, *, config: Mapping[str, Any], n: int, mel: tuple[int, int],
                    cond_dim: int, overwrite: bool = False, what: str = "") -> Iterator[SyntheticWriter]:
    """Draw ``/synthetic/<name>``: yields a :class:`SyntheticWriter` (resumable with the same ``config``)."""
    with write_group(store, Synthetic.path(name), config=config, overwrite=overwrite, what=what or f"sample {name}",
                     resumable=True) as g:
        yield SyntheticWriter(g, n, mel, cond_dim)


# ---------------------------------------------------------------------------------------------- augmented sets


@dataclass(frozen=True)
class Augmented:
    """``/augmented/<corpus>/<kind>``: offline copies of a corpus's utterances; mels on demand."""

    corpus: str
    kind: str
    meta: Meta
    attrs: dict[str, Any]
    seg_utt: np.ndarray  # [N] int64, row in /corpora/<corpus>/utterances
    seg_frames: np.ndarray  # [N] int64
    seg_param: np.ndarray  # [N] float32, the speed factor or SNR
    params: tuple[float, ...] = ()
    param_unit: str = ""
    seed: int | None = None

    @staticmethod
    def path(corpus: str, kind: str) -> str:
        return f"augmented/{corpus}/{kind}"

    @staticmethod
    def names(f: h5py.File, corpus: str) -> list[str]:
        """The kinds made of ``corpus``."""
        return children(f, f"augmented/{corpus}")

    @staticmethod
    def exists(f: h5py.File, corpus: str, kind: str) -> bool:
        return group_at(f, Augmented.path(corpus, kind)) is not None

    @classmethod
    def read(cls, f: h5py.File, corpus: str, kind: str) -> Augmented:
        g = group_at(f, cls.path(corpus, kind))
        if g is None:
            raise EmodiffError(f"{_where(f)}: no /{cls.path(corpus, kind)}; run `emodiff augment {kind} "
                               f"--corpus {corpus}` first")
        a = attrs_dict(g)
        s = g["segments"]
        params = a.get("params", ())
        return cls(corpus=corpus, kind=kind, meta=Meta.of(g), attrs=a, seg_utt=s["utt"][()].astype(np.int64),
                   seg_frames=s["frames"][()].astype(np.int64),
                   seg_param=s["param"][()] if "param" in s else np.zeros(len(s["utt"]), np.float32),
                   params=tuple(float(p) for p in np.atleast_1d(params)), param_unit=_str(a, "param_unit"),
                   seed=_int(a, "seed"))

    def load_mel(self, f: h5py.File) -> np.ndarray:
        return f[self.path(self.corpus, self.kind)]["segments/mel"][()].astype(np.float16)


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Fold:
    """One fold (per seed) of ``/results/<name>``."""

    name: str
    attrs: dict[str, Any]
    uar: float | None
    wa: float | None
    f1: float | None  # the `macro_f1` attr
    best_epoch: int | None
    val_uar: float | None
    seed: int | None
    synthetic: str
    leaky: bool
    confusion: np.ndarray | None  # [4, 4] counts, rows true, columns predicted

    @classmethod
    def of(cls, g: h5py.Group) -> Fold:
        a = attrs_dict(g)
        conf = g["confusion"][()].astype(np.int64) if "confusion" in g else None
        if conf is not None and conf.shape != (len(EMOTIONS), len(EMOTIONS)):
            raise ValueError(f"{g.name}/confusion has shape {conf.shape}, expected (4, 4)")
        return cls(name=g.name.rsplit("/", 1)[-1], attrs=a, uar=_float(a, "uar"), wa=_float(a, "wa"),
                   f1=_float(a, "macro_f1"), best_epoch=_int(a, "best_epoch"), val_uar=_float(a, "val_uar"),
                   seed=_int(a, "seed"), synthetic=_str(a, "synthetic"), leaky=bool(a.get("leaky", False)),
                   confusion=conf)


@dataclass(frozen=True)
class Results:
    """``/results/<name>``: a classify run's summary attrs and its folds (read defensively; the
    report falls back on the ``config`` for results written before an attr existed)."""

    name: str
    meta: Meta
    attrs: dict[str, Any]
    folds: tuple[Fold, ...]
    corpus: str = ""
    train_corpus: str = ""
    protocol: str = ""
    target_fraction: float | None = None  # NaN (None here) unless adaptation
    train_on: str = ""
    augment: str = ""
    synthetic: str = ""
    leaky: bool = False
    repeats: int | None = None
    seeds: tuple[str, ...] = ()
    split_seed: int | None = None

    @staticmethod
    def path(name: str) -> str:
        return f"results/{name}"

    @staticmethod
    def names(f: h5py.File) -> list[str]:
        return children(f, "results")

    @staticmethod
    def exists(f: h5py.File, name: str) -> bool:
        return group_at(f, Results.path(name)) is not None

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Results:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{_where(f)}: no /results/{name}")
        a = attrs_dict(g)
        # A fold is a subgroup holding a confusion matrix or a uar attr (not `predictions`).
        folds = tuple(Fold.of(g[k]) for k in children(g, "/")
                      if "confusion" in g[k] or "uar" in g[k].attrs)
        return cls(name=name, meta=Meta.of(g), attrs=a, folds=folds, corpus=_str(a, "corpus"),
                   train_corpus=_str(a, "train_corpus"), protocol=_str(a, "protocol"),
                   target_fraction=_float(a, "target_fraction"), train_on=_str(a, "train_on"),
                   augment=_str(a, "augment"), synthetic=_str(a, "synthetic"), leaky=bool(a.get("leaky", False)),
                   repeats=_int(a, "repeats"), seeds=_json_list(a, "seeds"), split_seed=_int(a, "split_seed"))

    def summary(self, metric: str) -> tuple[float | None, float | None]:
        """(``<metric>_mean``, ``<metric>_std``) as stored, for uar, wa or f1."""
        return _float(self.attrs, f"{metric}_mean"), _float(self.attrs, f"{metric}_std")


# ---------------------------------------------------------------------------------------------- quality


@dataclass(frozen=True)
class Quality:
    """``/quality/<set>``: the per-emotion table and the set-level attrs."""

    name: str
    meta: Meta
    attrs: dict[str, Any]
    table: dict[str, np.ndarray]  # per_emotion columns
    corpus: str = ""
    synthetic: str = ""
    classifier: str = ""  # JSON of the yardstick classifier's settings, as stored
    held_out_speakers: tuple[str, ...] = ()

    @staticmethod
    def path(name: str) -> str:
        return f"quality/{name}"

    @staticmethod
    def names(f: h5py.File) -> list[str]:
        return children(f, "quality")

    @staticmethod
    def exists(f: h5py.File, name: str) -> bool:
        return group_at(f, Quality.path(name)) is not None

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Quality:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{_where(f)}: no /quality/{name}; run `emodiff quality --synthetic {name}` first")
        a = attrs_dict(g)
        return cls(name=name, meta=Meta.of(g), attrs=a, table=read_table(_quality_table(g)), corpus=_str(a, "corpus"),
                   synthetic=_str(a, "synthetic"), classifier=_str(a, "classifier"),
                   held_out_speakers=_json_list(a, "held_out_speakers"))

    def number(self, key: str) -> float | None:
        """A set-level number (``mad_mean``, ``tstr_uar``, ...); None when missing or NaN."""
        return _float(self.attrs, key)

    @classmethod
    def write(cls, store: Path, name: str, *, table: Mapping[str, Sequence[Any] | np.ndarray],
              attrs: Mapping[str, Any], config: Mapping[str, Any], overwrite: bool = False) -> None:
        """Write ``/quality/<name>``: the ``per_emotion`` table and the set-level attrs."""
        with write_group(store, cls.path(name), config=config, overwrite=overwrite, what=f"quality {name}") as g:
            write_table(g.create_group("per_emotion"), table)
            g.attrs.update(attrs)


def _quality_table(g: h5py.Group) -> h5py.Group:
    """The group holding the per-emotion columns: ``g`` itself or a subgroup (``per_emotion``)."""
    if isinstance(g.get("emotion"), h5py.Dataset):
        return g
    for key in ("per_emotion", *children(g, "/")):
        if isinstance(g.get(key), h5py.Group) and isinstance(g[key].get("emotion"), h5py.Dataset):
            return g[key]
    raise KeyError(f"{g.name} holds no table with an emotion column")
