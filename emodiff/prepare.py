"""``emodiff prepare``: corpus audio + labels -> ``/corpora/<corpus>`` (mels, utterance table).

Decoding, resampling, mels and chunk compression run on ``workers`` threads (each library
involved releases the GIL, and threads start in microseconds where processes would each
import torch); one thread writes, in corpus order, so the segments of an utterance are
contiguous and the store's layout does not depend on timing. At most a few utterances per
worker are in flight, so peak memory does not grow with the corpus.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch

from emodiff import store as st
from emodiff.audio import AudioError, MelConfig, MelExtractor, load_audio, resample, segment
from emodiff.corpora import CORPORA, Problem, Utterance, canonical_name, list_corpus, unknown_corpus
from emodiff.corpora.manifest import ManifestSpec, manifest_name
from emodiff.errors import EmodiffError
from emodiff.parallel import ordered_map, thread_budget, torch_threads
from emodiff.progress import QUIET, Progress
from emodiff.records import SegmentWriter, compress_segment, write_corpus
from emodiff.summary import CorpusStats, corpus_stats

Dtype = Literal["float16", "float32"]


@dataclass(frozen=True)
class PrepareJob:
    """One ``prepare`` run: the store and every setting; those that shape the data go into the group's config."""

    store: Path
    corpus: str
    root: Path
    workers: int = field(default_factory=thread_budget)  # torch's thread count, which --threads sets
    limit: int | None = None
    strict: bool = False
    overwrite: bool = False
    dtype: Dtype = "float16"
    calm: Literal["drop", "neutral"] = "drop"  # RAVDESS only
    # A corpus from a manifest (`prepare manifest FILE`): ``root`` is the file, ``corpus`` the name it gets.
    manifest: ManifestSpec | None = None

    def __post_init__(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise EmodiffError(f"unknown dtype {self.dtype!r}; expected float16 or float32")
        if self.workers < 1:
            raise EmodiffError(f"--workers must be at least 1, got {self.workers}")
        if self.limit is not None and self.limit < 1:
            raise EmodiffError(f"--limit must be at least 1, got {self.limit}")
        if self.manifest is not None:
            manifest_name(self.root, self.corpus)  # a name a group may have, and none of a named corpus

    def reader_options(self) -> dict[str, Any]:
        """Options for the corpus reader (``list_<corpus>``): RAVDESS takes ``calm``, a manifest its
        :class:`ManifestSpec` (recorded in the group's config with them)."""
        name = canonical_name(self.corpus)
        if self.manifest is None and name not in CORPORA:
            raise unknown_corpus(self.corpus)
        if name == "ravdess":
            return {"calm": self.calm}
        if self.calm != "drop":
            raise EmodiffError(f"--calm applies to RAVDESS only, not to {name}")
        return {} if self.manifest is None else self.manifest.reader_options()


@dataclass
class PrepareResult:
    """What ``prepare`` did: the stats of the group, or that it was already there."""

    stats: CorpusStats
    already_there: bool
    seconds: float
    audio_seconds: float


@dataclass
class _Features:
    chunks: list[bytes]  # [n_mels, frames] segments compressed as stored (records.compress_segment)
    frames: np.ndarray  # [N] valid frames per segment
    duration_s: float
    source_rate: int


def prepare(job: PrepareJob, progress: Progress = QUIET) -> PrepareResult:
    """Prepare ``job.corpus`` from ``job.root`` into ``job.store``; see the module docstring.

    ``progress`` hears the number of utterances to process and each one done. Raises
    EmodiffError for a bad root, an empty result, or (with ``strict``) the first bad file; the
    store is unchanged after any error.
    """
    start = time.perf_counter()
    name = canonical_name(job.corpus)
    group_name = f"corpora/{name}"
    if not job.overwrite and st.has_group(job.store, group_name):
        with st.open_store(job.store) as f:
            stats = corpus_stats(f[group_name])
        return PrepareResult(stats, already_there=True, seconds=0.0, audio_seconds=0.0)

    listing = list_corpus(name, job.root, **job.reader_options())
    utterances = _limit(listing.utterances, job.limit)
    if job.strict and listing.problems:
        first = listing.problems[0]
        raise EmodiffError(f"{first.path}: {first.reason} (--strict; {len(listing.problems)} problem(s) in all)")
    if not utterances:
        raise EmodiffError(f"{job.root}: no {name} utterances of the four emotions found")

    mel_cfg = MelConfig()
    config = {
        "corpus": name, "root": str(Path(job.root).resolve()), "limit": job.limit,
        "dtype": job.dtype, **job.reader_options(), "mel": mel_cfg.attrs(),
    }
    with st.write_group(job.store, group_name, config=config, overwrite=job.overwrite, what=f"prepare {name}") as group:
        progress.total(len(utterances))
        kept, problems, audio_seconds = _write_segments(group, utterances, job, mel_cfg, progress)
        problems = listing.problems + problems
        if not kept:
            raise EmodiffError(f"{job.root}: none of the {len(utterances)} {name} files could be read "
                               f"(first: {problems[0].path}: {problems[0].reason})")
        write_corpus(group, kept, problems, corpus=name, root=str(Path(job.root).resolve()), dtype=job.dtype,
                     excluded=listing.excluded, mel=mel_cfg.attrs(), calm=job.calm if name == "ravdess" else None)
    with st.open_store(job.store) as f:
        stats = corpus_stats(f[group_name])
    return PrepareResult(stats, already_there=False, seconds=time.perf_counter() - start,
                         audio_seconds=audio_seconds)


def _limit(utterances: list[Utterance], limit: int | None) -> list[Utterance]:
    """``limit`` utterances spread evenly over the sorted list, so each speaker and emotion shows."""
    if limit is None or limit >= len(utterances):
        return utterances
    picks = np.linspace(0, len(utterances) - 1, limit).round().astype(int)
    return [utterances[i] for i in picks]


def _write_segments(
    group: h5py.Group,
    utterances: list[Utterance],
    job: PrepareJob,
    mel_cfg: MelConfig,
    progress: Progress,
) -> tuple[list[tuple[Utterance, float, int]], list[Problem], float]:
    """Stream every utterance's segments into ``group/segments``; return kept rows and problems."""
    segments = SegmentWriter(group, (mel_cfg.n_mels, mel_cfg.segment_frames), job.dtype)
    kept: list[tuple[Utterance, float, int]] = []
    problems: list[Problem] = []
    extractor = MelExtractor(mel_cfg)
    audio_seconds = 0.0

    def work(utt: Utterance) -> _Features | AudioError:
        try:
            return _features(utt.path, extractor, np.dtype(job.dtype))
        except AudioError as err:
            return err

    with torch_threads(1):
        for utt, result in zip(utterances, ordered_map(work, utterances, job.workers), strict=True):
            progress.advance()
            if isinstance(result, AudioError):
                if job.strict:
                    raise EmodiffError(f"{utt.path}: {result} (--strict)")
                problems.append(Problem(str(utt.path), str(result)))
                continue
            segments.append_chunks(len(kept), result.chunks, result.frames)
            kept.append((utt, result.duration_s, result.source_rate))
            audio_seconds += result.duration_s
    segments.close()
    return kept, problems, audio_seconds


def _features(path: Path, extractor: MelExtractor, dtype: np.dtype) -> _Features:
    """One file -> compressed segments: decode, mono, resample, mel, scale, segment (compressed here, in
    the worker threads, so the one writing thread only copies chunks)."""
    wave, rate = load_audio(path)
    cfg = extractor.cfg
    wave = resample(wave, rate, cfg.sample_rate)
    mel = extractor(torch.from_numpy(wave)).to(_TORCH_DTYPES[dtype.name]).numpy()
    segments, frames = segment(mel, cfg.segment_frames)
    chunks = [compress_segment(s) for s in segments]
    return _Features(chunks, frames, duration_s=len(wave) / cfg.sample_rate, source_rate=rate)


_TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}
