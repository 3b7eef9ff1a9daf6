"""What one classifier training of ``emodiff classify`` reads: the settings every run of a classify shares
(:class:`FoldSpec`), a run's result (:class:`FoldResult`), the corpus data (:func:`read_corpora`), a synthetic set a
fold may take (:class:`Candidate`) and the offline copies (:func:`read_offline`). Only reads the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emodiff import store as st
from emodiff.corpora import CORPORA, unknown_corpus
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment, Experiment
from emodiff.records import Augmented, Corpus, Synthetic
from emodiff.ser.classifier import ClassifierConfig
from emodiff.ser.stats import Units, standardise_groups, utterance_stats
from emodiff.ser.training import Segments


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
