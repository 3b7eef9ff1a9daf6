"""Counts of what a prepared corpus group holds: per emotion, per speaker, hours, problems."""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from emodiff.emotions import EMOTIONS
from emodiff.records import Corpus, Meta


@dataclass
class CorpusStats:
    """What ``/corpora/<name>`` holds, for the summary tables of ``prepare`` and ``inspect``."""

    name: str
    utterances: int
    segments: int
    hours: float
    speakers: int
    # emotion name -> (utterances, segments); always in EMOTIONS order
    per_emotion: dict[str, tuple[int, int]]
    # speaker -> (gender, utterances, segments)
    per_speaker: dict[str, tuple[str, int, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)
    meta: Meta | None = None  # the group's standard attrs (None in a summary not read from a store)


def corpus_stats(group: h5py.Group) -> CorpusStats:
    """Read the utterance table and segment index of a corpus group and count them."""
    corpus = Corpus.read(group.file, group.name.rsplit("/", 1)[-1])
    utt, seg_utt = corpus.utterances, corpus.seg_utt
    segs_per_utt = np.bincount(seg_utt, minlength=len(utt["id"]))
    emotion = utt["emotion"].astype(int)
    per_emotion = {
        name: (int(np.sum(emotion == k)), int(segs_per_utt[emotion == k].sum()))
        for k, name in enumerate(EMOTIONS)
    }
    per_speaker: dict[str, tuple[str, int, int]] = {}
    for spk in sorted(set(utt["speaker"].tolist())):
        rows = utt["speaker"] == spk
        per_speaker[spk] = (str(utt["gender"][rows][0]), int(rows.sum()), int(segs_per_utt[rows].sum()))
    return CorpusStats(
        name=corpus.corpus or corpus.name,
        utterances=len(utt["id"]),
        segments=len(seg_utt),
        hours=float(utt["duration_s"].sum()) / 3600.0,
        speakers=len(per_speaker),
        per_emotion=per_emotion,
        per_speaker=per_speaker,
        skipped=list(corpus.skipped),
        excluded=corpus.excluded,
        attrs=corpus.attrs,
        meta=corpus.meta,
    )
