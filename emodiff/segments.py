"""Segments and their text conditions, read from the store for training and sampling.

One :class:`SegmentSet` is what a step trains on: the mel segments of one or more prepared
corpora (optionally without some speakers), each with the token vectors of its utterance's
condition text from ``/embeddings/<model>/<corpus>``. Speakers are named ``corpus:speaker``
everywhere outside a corpus group, since speaker ids are only unique within a corpus.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch

from emodiff import store as st
from emodiff.errors import EmodiffError
from emodiff.records import Augmented, Corpus, Embeddings

Load = Literal["auto", "memory", "chunks"]
# "auto" reads everything into memory when it takes at most this share of the available RAM.
MEMORY_SHARE = 0.5


class StoreMel:
    """Mel segments left in the store and read on demand: ``mel[rows]`` -> [B, n_mels, F] float16.

    Stands in for the in-memory tensor when a training set is larger than memory: each batch
    reads its rows (sorted, as HDF5 wants them) from the chunked, compressed datasets.
    """

    def __init__(self, store: Path, datasets: list[str], part: np.ndarray, local: np.ndarray,
                 shape: tuple[int, int]):
        self.store, self.datasets, self.part, self.local = store, datasets, part, local
        self.shape = (len(local), *shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: torch.Tensor | np.ndarray) -> torch.Tensor | StoreMel:
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float16)
        with st.open_store(self.store) as f:
            for p, name in enumerate(self.datasets):
                mine = np.flatnonzero(self.part[rows] == p)
                if len(mine) == 0:
                    continue
                wanted = self.local[rows[mine]]
                unique, back = np.unique(wanted, return_inverse=True)
                out[mine] = st.read_data(f[name], unique)[back]
        return torch.from_numpy(out)

    def subset(self, rows: np.ndarray) -> StoreMel:
        return StoreMel(self.store, self.datasets, self.part[rows], self.local[rows], self.shape[1:])


@dataclass
class SegmentSet:
    """Mels [N, 80, F] (float16), their utterance's tokens [U, L, D] and lengths, and labels.

    ``utt`` [N] indexes the utterance arrays (``emotion``, ``speaker``, ``tokens``, ...), which
    run over all corpora in order.
    """

    mel: torch.Tensor | StoreMel  # [N, n_mels, F] float16, in memory or read from the store
    utt: torch.Tensor  # [N] long
    tokens: torch.Tensor  # [U, L, D] float16
    lengths: torch.Tensor  # [U] long
    speaker: np.ndarray  # [U] str, "corpus:speaker"
    emotion: torch.Tensor | None = None  # [U] long, 0..3
    frames: torch.Tensor | None = None  # [N] long, valid frames of each segment
    # [U] long: the utterance row each row copies (an offline copy's original; None: every row is an original)
    source: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.mel.shape[0])

    def speakers(self) -> list[str]:
        return sorted(set(self.speaker[self.utt.numpy()].tolist()))

    def originals(self) -> np.ndarray:
        """[N] the original utterance row of each segment (its own, unless it is an offline copy's)."""
        utt = self.utt.numpy()
        return utt if self.source is None else self.source[utt]

    def subset(self, rows: np.ndarray) -> SegmentSet:
        """The segments ``rows`` (utterance arrays are kept whole, so ``utt`` stays valid)."""
        index = torch.as_tensor(rows, dtype=torch.long)
        mel = self.mel.subset(np.asarray(rows)) if isinstance(self.mel, StoreMel) else self.mel[index]
        frames = None if self.frames is None else self.frames[index]
        return dataclasses.replace(self, mel=mel, utt=self.utt[index], frames=frames)


def speaker_matches(speaker: str, patterns: list[str]) -> bool:
    """``corpus:speaker`` matches ``corpus:speaker`` exactly, or a bare ``speaker`` in any corpus."""
    _, _, bare = speaker.partition(":")
    return any(p in (speaker, bare) for p in patterns)


def available_memory() -> int:
    """Bytes of RAM available now (Linux and macOS); a large number where it cannot be told."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def load_segments(
    store: Path, corpora: list[str], embed_model: str, exclude_speakers: list[str] | None = None,
    load: Load = "auto", augmented: tuple[str, ...] = (),
) -> tuple[SegmentSet, dict[str, str]]:
    """Read the segments of ``corpora`` with their ``embed_model`` tokens.

    ``augmented``: kinds of offline copies (``/augmented/<corpus>/<kind>``) read beside each corpus's
    own segments. Each factor's copy of an utterance is an utterance row of its own (so windows never
    join a copy to its original) with the original's text, speaker and emotion, and ``source`` pointing
    at the original. ``load``: "memory" reads every mel into RAM once; "chunks" leaves them in the store and
    reads each batch's rows on demand; "auto" picks memory when the mels take at most half the
    available RAM. Returns the set and a fingerprint of what it was built from: group ->
    config_hash. Raises EmodiffError when a corpus, its embeddings or a copy are missing, or when the
    exclusion leaves nothing.
    """
    if load not in ("auto", "memory", "chunks"):
        raise EmodiffError(f"unknown load mode {load!r}; expected auto, memory or chunks")
    exclude = exclude_speakers or []
    parts, fingerprint = [], {}
    with st.open_store(store) as f:
        for corpus in corpora:
            original = _read_corpus(f, store, corpus, embed_model, fingerprint)
            parts.append(original)
            parts += [_read_copies(f, store, corpus, kind, original, len(parts) - 1, fingerprint) for kind in augmented]
        size = sum(f[p["mel"]].size * 2 for p in parts)  # float16 bytes
        in_memory = load == "memory" or (load == "auto" and size <= MEMORY_SHARE * available_memory())
        for p in parts:
            p["mel"] = st.read_data(f[p["mel"]]).astype(np.float16, copy=False) if in_memory else p["mel"]
    shapes = {p["frame_shape"] for p in parts}
    if len(shapes) > 1:
        raise EmodiffError(f"{store}: corpora {', '.join(corpora)} have segments of different shapes {sorted(shapes)}")
    width = max(p["tokens"].shape[1] for p in parts)
    dims = {p["tokens"].shape[2] for p in parts}
    if len(dims) > 1:
        raise EmodiffError(f"{store}: embeddings of {embed_model} differ in width across corpora: {sorted(dims)}")
    mel, utt, tokens, lengths, speaker, emotion, frames, source = [], [], [], [], [], [], [], []
    part, local, offsets = [], [], []
    offset = 0
    for i, p in enumerate(parts):
        offsets.append(offset)
        source.append(p["source"] + offsets[i if p["source_part"] is None else p["source_part"]])
        keep = np.array([not speaker_matches(s, exclude) for s in p["speaker"]])[p["utt"]]
        if in_memory:
            mel.append(torch.from_numpy(p["mel"][keep]))
        part.append(np.full(int(keep.sum()), i))
        local.append(np.flatnonzero(keep))
        utt.append(torch.from_numpy(p["utt"][keep].astype(np.int64) + offset))
        pad = width - p["tokens"].shape[1]
        tokens.append(torch.nn.functional.pad(torch.from_numpy(p["tokens"]), (0, 0, 0, pad)))
        lengths.append(torch.from_numpy(p["lengths"].astype(np.int64)))
        speaker.append(p["speaker"])
        emotion.append(torch.from_numpy(p["emotion"]))
        frames.append(torch.from_numpy(p["frames"][keep]))
        offset += len(p["speaker"])
    mels: torch.Tensor | StoreMel = torch.cat(mel) if in_memory else StoreMel(
        store, [p["mel"] for p in parts], np.concatenate(part), np.concatenate(local), parts[0]["frame_shape"])
    data = SegmentSet(mels, torch.cat(utt), torch.cat(tokens), torch.cat(lengths), np.concatenate(speaker),
                      torch.cat(emotion), torch.cat(frames), np.concatenate(source) if augmented else None)
    if len(data) == 0:
        raise EmodiffError(f"{store}: no segments left in {', '.join(corpora)} after excluding {', '.join(exclude)}")
    return data, fingerprint


def _read_corpus(f: h5py.File, store: Path, corpus: str, model: str, fingerprint: dict[str, str]) -> dict:
    c = Corpus.read(f, corpus)
    e = Embeddings.read(f, model, corpus)
    group, emb = Corpus.path(corpus), Embeddings.path(model, corpus)
    if e.rows != len(c.utterances["id"]) or not e.made_from(c.meta):
        raise EmodiffError(f"{store}: /{emb} was made from an earlier preparation of /{group} ({e.rows} rows for "
                           f"its {len(c.utterances['id'])} utterances); re-run `emodiff embed --corpus {corpus} "
                           "--overwrite`")
    fingerprint[group], fingerprint[emb] = c.meta.config_hash, e.meta.config_hash
    return {
        "mel": c.mel_path,  # read by the caller, into memory or on demand
        "frame_shape": c.mel_shape[1:],
        "utt": c.seg_utt,
        "tokens": e.load_tokens(f),
        "lengths": e.load_lengths(f),
        "speaker": c.qualified_speakers(),
        "emotion": c.utterances["emotion"].astype(np.int64),
        "frames": c.seg_frames,
        "source": np.arange(len(c.utterances["id"])), "source_part": None,  # its own
    }


def _read_copies(f: h5py.File, store: Path, corpus: str, kind: str, original: dict, at: int,
                 fingerprint: dict[str, str]) -> dict:
    """The offline copies ``/augmented/<corpus>/<kind>`` as a part like :func:`_read_corpus`'s: factor k's copy of
    utterance u is utterance row k U + u, its text, speaker and emotion the original's (``original``, part ``at``)."""
    a = Augmented.read(f, corpus, kind)
    group = Augmented.path(corpus, kind)
    shape = tuple(f[group]["segments/mel"].shape[1:])
    if shape != original["frame_shape"]:
        raise EmodiffError(f"{store}: /{group} has segments of {shape}, /{Corpus.path(corpus)} of "
                           f"{original['frame_shape']}; re-run `emodiff augment {kind} --corpus {corpus} --overwrite`")
    fingerprint[group] = a.meta.config_hash
    n_utt, params = len(original["speaker"]), np.unique(a.seg_param)
    copy = np.searchsorted(params, a.seg_param)
    tile = (len(params), 1, 1)
    return {
        "mel": f"{group}/segments/mel", "frame_shape": shape,
        "utt": copy * n_utt + a.seg_utt,
        "tokens": np.tile(original["tokens"], tile), "lengths": np.tile(original["lengths"], len(params)),
        "speaker": np.tile(original["speaker"], len(params)), "emotion": np.tile(original["emotion"], len(params)),
        "frames": a.seg_frames,
        "source": np.tile(np.arange(n_utt), len(params)), "source_part": at,
    }


class UtteranceWindows:
    """Random windows of ``frames`` frames cut from utterances' valid frames, with their conditions.

    An utterance's segments are joined in order and cut at their total valid length, so a window
    never holds the padding of a segment tail, and a long utterance offers every start position,
    not only the segment boundaries. An utterance shorter than the window is padded at its end with
    silence (``pad``). Mels must be in memory.
    """

    def __init__(self, data: SegmentSet, frames: int, pad: float = -1.0) -> None:
        if isinstance(data.mel, StoreMel) or data.frames is None:
            raise EmodiffError("train.crop_frames needs the mels in memory with their valid frames; "
                               "set train.load: memory")
        self.frames, self.data = frames, data
        utt = data.utt.numpy()
        order = np.argsort(utt, kind="stable")  # segments of one utterance stay in stored order
        self.utts, starts = np.unique(utt[order], return_index=True)
        pieces, lengths = [], []
        for k, lo in enumerate(starts):
            hi = starts[k + 1] if k + 1 < len(starts) else len(order)
            rows = order[lo:hi]
            valid = int(data.frames[rows].sum())
            joined = torch.cat([data.mel[int(r)] for r in rows], dim=1)[:, :valid]
            if joined.shape[1] < frames:
                joined = torch.nn.functional.pad(joined, (0, frames - joined.shape[1]), value=pad)
            pieces.append(joined)
            lengths.append(joined.shape[1])
        self.flat = torch.cat(pieces, dim=1)  # [C, total frames]
        self.offset = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]])).long()
        self.length = torch.tensor(lengths, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.utts)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(mel [B, C, frames] float16, utterance index [B] into the SegmentSet's utterance arrays)."""
        pick = torch.randint(len(self.utts), (batch,), generator=generator)
        room = self.length[pick] - self.frames + 1
        start = (torch.rand(batch, generator=generator) * room).long()
        idx = self.offset[pick, None] + start[:, None] + torch.arange(self.frames)[None, :]
        mel = self.flat[:, idx].permute(1, 0, 2)
        return mel, torch.from_numpy(self.utts).long()[pick]
