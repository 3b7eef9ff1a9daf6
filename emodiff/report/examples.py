"""The real and synthetic segments the report draws and plays, chosen deterministically per emotion.

Real: per utterance of the emotion (in the corpus's row order, i.e. sorted by id), its first
segment with at least MIN_FRAMES valid frames; utterances with none come after all that have
one, longest segment first. Padding is trimmed (``frames``). Synthetic: the set's first
segments of the emotion, in stored order (they have no padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from emodiff.records import Corpus, Synthetic
from emodiff.store import read_data

MIN_FRAMES = 200  # about 2.3 s at hop 256 / 22050 Hz: long enough to hear and see the prosody


@dataclass
class Example:
    source: str  # corpus or synthetic set name
    emotion: int
    label: str  # utterance id, or #row and speaker for a synthetic segment
    key: str  # for file names: the utterance id, or row<i>
    mel: np.ndarray  # [80, F] float32 in the store's [-1, 1] scaling, padding trimmed


def real_examples(f: h5py.File, corpus: str, emotion: int, k: int) -> list[Example]:
    """Up to ``k`` segments of ``emotion`` from ``/corpora/<corpus>``, one per utterance (see the module doc)."""
    c = Corpus.read(f, corpus)
    seg_utt, frames, emo = c.seg_utt, c.seg_frames, c.utterances["emotion"].astype(int)
    seg = np.flatnonzero(emo[seg_utt] == emotion)
    long_ = seg[frames[seg] >= MIN_FRAMES]
    _, first = np.unique(seg_utt[long_], return_index=True)  # segments are in utterance order
    chosen = [int(i) for i in long_[first]]
    if len(chosen) < k:
        rest = seg[~np.isin(seg_utt[seg], seg_utt[long_])]
        # the longest segment of each remaining utterance (earliest on ties), longest first
        order = rest[np.lexsort((rest, -frames[rest], seg_utt[rest]))]
        _, first = np.unique(seg_utt[order], return_index=True)
        longest = order[first]
        chosen += [int(i) for i in longest[np.lexsort((longest, -frames[longest]))]]
    ids, mel = c.utterances["id"], f[c.mel_path]
    return [Example(corpus, emotion, str(ids[seg_utt[i]]), str(ids[seg_utt[i]]),
                    read_data(mel, np.s_[i, :, : frames[i]]).astype(np.float32)) for i in chosen[:k]]


def synthetic_examples(f: h5py.File, name: str, emotion: int, k: int) -> list[Example]:
    """The first ``k`` segments of ``emotion`` in ``/synthetic/<name>``."""
    s = Synthetic.read(f, name)
    if not s.mel_shape or not s.has_emotion:  # listed with its problem in the summary; nothing to draw
        return []
    g = f[Synthetic.path(name)]
    rows = np.flatnonzero(s.emotion == emotion)[:k]
    speakers = g["speaker"].asstr() if "speaker" in g else None
    return [Example(name, emotion, f"#{i}" + (f" {speakers[i]}" if speakers is not None else ""), f"row{i}",
                    read_data(g["mel"], int(i)).astype(np.float32)) for i in rows]
