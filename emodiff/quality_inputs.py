"""What ``emodiff.quality`` compares: a synthetic set and the real corpus it imitates, read and paired.

The *reference* is the corpus's segments of the speakers the generator trained on (what it
imitated); the *held-out* segments are those of its other speakers (what neither the generator nor
the yardstick saw). docs/quality.md, "The real reference" and "The real-vs-real floor", say why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emodiff import store as st
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.records import Corpus, Synthetic
from emodiff.silence import synthetic_frames


@dataclass
class AssessedSet:
    """A set's labels and provenance; its mels are read only when it is measured (:func:`read_mel`)."""

    name: str
    shape: tuple[int, ...]  # of mel: (M, C, F)
    emotion: np.ndarray  # [M] int64
    training_speakers: list[str]  # "corpus:speaker"
    recipe: dict | None  # the generator's recipe, when recorded
    config_hash: str


@dataclass
class RealCorpus:
    name: str
    mel: np.ndarray  # [N, C, F] float16
    frames: np.ndarray  # [N] int64
    emotion: np.ndarray  # [N] int64, per segment
    speaker: np.ndarray  # [N] str, per segment
    config_hash: str
    utt: np.ndarray | None = None  # [N] int64, the utterance row of each segment


def read_synthetic(store: Path, name: str) -> AssessedSet:
    with st.open_store(store) as f:
        record = Synthetic.read(f, name)
    record.check(store)
    return AssessedSet(name, record.mel_shape, record.emotion, list(record.provenance.training_speakers),
                       record.provenance.recipe, record.meta.config_hash)


def read_mel(store: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The mels [M, C, F] float16 of /synthetic/<name> and their valid frames [M] (recorded by ``sample``;
    for older sets, everything up to the last non-silent frame)."""
    with st.open_store(store) as f:
        mel, frames = Synthetic.read(f, name).load_mel(f)
    return mel, np.clip(synthetic_frames(mel) if frames is None else frames, 1, mel.shape[2])


def imitated_corpus(training_speakers: list[str]) -> str | None:
    """The corpus most ``corpus:speaker`` entries name (ties: the first in sorted order); None if none do."""
    counts = Counter(s.partition(":")[0] for s in training_speakers if ":" in s)
    return min(counts, key=lambda c: (-counts[c], c)) if counts else None


def read_corpus(store: Path, corpus: str, synthetic: str) -> RealCorpus:
    with st.open_store(store) as f:
        record = Corpus.read(f, corpus, note=f"expected /corpora/{corpus} to compare /synthetic/{synthetic} with")
        mel = record.load_mel(f)
    utt = record.seg_utt
    return RealCorpus(corpus, mel, record.seg_frames, record.seg_emotion, record.utterances["speaker"][utt],
                      record.meta.config_hash, utt)


@dataclass
class Pair:
    """A synthetic set and its real reference, checked against each other."""

    synth: AssessedSet
    real: RealCorpus
    ref: np.ndarray  # [N] bool: the real segments of the speakers the generator imitated
    held: np.ndarray  # [N] bool: the real segments of this corpus's speakers it never saw
    speakers: list[str]  # the reference speakers, "corpus:speaker"
    common: list[int]  # emotion ids present in both

    def held_speakers(self) -> list[str]:
        return [f"{self.real.name}:{s}" for s in sorted(set(self.real.speaker[self.held].tolist()))]


def pair_up(store: Path, synth: AssessedSet, real: RealCorpus) -> Pair:
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
    return Pair(synth, real, ref, held, [f"{real.name}:{s}" for s in speakers], common)


@dataclass(frozen=True)
class Rows:
    """The rows that one line of the quality table compares (indices into the corpus and into the set)."""

    ref: np.ndarray  # real: the reference speakers (what the generator imitated)
    judged: np.ndarray  # real: the held-out speakers when there are any (unseen by the yardstick), else ref
    synthetic: np.ndarray
    # judged split by speaker into two halves for the real-vs-real values; None with < 2 held-out speakers
    halves: tuple[np.ndarray, np.ndarray] | None


def select(pair: Pair, emotions: list[int]) -> Rows:
    """The rows of ``emotions`` on both sides (one emotion for a table row, every common one for the set)."""
    real = pair.real
    wanted = np.isin(real.emotion, emotions)
    judged = np.flatnonzero((pair.held if pair.held.any() else pair.ref) & wanted)
    floor = pair.held.any() and len(set(real.speaker[judged].tolist())) >= 2
    return Rows(ref=np.flatnonzero(pair.ref & wanted), judged=judged,
                synthetic=np.flatnonzero(np.isin(pair.synth.emotion, emotions)),
                halves=halves(real.speaker, judged) if floor else None)


def halves(speakers: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` split by speaker into two halves (alternate speakers in sorted order)."""
    names = sorted(set(speakers[rows].tolist()))
    first = set(names[0::2])
    in_first = np.array([s in first for s in speakers[rows]], bool)
    return rows[in_first], rows[~in_first]
