"""Segments and their text conditions, read from the store for training and sampling.

One :class:`SegmentSet` is what a step trains on: the mel segments of one or more prepared
corpora (optionally without some speakers), each with the token vectors of its utterance's
condition text from ``/embeddings/<model>/<corpus>``. Speakers are named ``corpus:speaker``
everywhere outside a corpus group, since speaker ids are only unique within a corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from emodiff import store as st
from emodiff.errors import EmodiffError


@dataclass
class SegmentSet:
    """Mels [N, 80, F] (float16), their utterance's tokens [U, L, D] and lengths, and labels.

    ``utt`` [N] indexes the utterance arrays (``emotion``, ``speaker``, ``tokens``, ...), which
    run over all corpora in order.
    """

    mel: torch.Tensor  # [N, n_mels, F] float16
    utt: torch.Tensor  # [N] long
    tokens: torch.Tensor  # [U, L, D] float16
    lengths: torch.Tensor  # [U] long
    emotion: np.ndarray  # [U] int
    speaker: np.ndarray  # [U] str, "corpus:speaker"
    text: np.ndarray  # [U] str, the transcript
    utt_id: np.ndarray  # [U] str, "corpus:id"

    def __len__(self) -> int:
        return int(self.mel.shape[0])

    def speakers(self) -> list[str]:
        return sorted(set(self.speaker[self.utt.numpy()].tolist()))

    def subset(self, rows: np.ndarray) -> SegmentSet:
        """The segments ``rows`` (utterance arrays are kept whole, so ``utt`` stays valid)."""
        index = torch.as_tensor(rows, dtype=torch.long)
        return SegmentSet(self.mel[index], self.utt[index], self.tokens, self.lengths, self.emotion,
                          self.speaker, self.text, self.utt_id)

    def conditions(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [B, L, D] float32, mask [B, L] bool) of the segments ``rows``."""
        u = self.utt[rows]
        tokens = self.tokens[u].float()
        mask = torch.arange(tokens.shape[1])[None, :] < self.lengths[u][:, None]
        return tokens, mask


def speaker_matches(speaker: str, patterns: list[str]) -> bool:
    """``corpus:speaker`` matches ``corpus:speaker`` exactly, or a bare ``speaker`` in any corpus."""
    _, _, bare = speaker.partition(":")
    return any(p in (speaker, bare) for p in patterns)


def load_segments(
    store: Path, corpora: list[str], embed_model: str, exclude_speakers: list[str] | None = None
) -> tuple[SegmentSet, dict[str, str]]:
    """Read the segments of ``corpora`` (all into memory) with their ``embed_model`` tokens.

    Returns the set and a fingerprint of what it was built from: group -> config_hash.
    Raises EmodiffError when a corpus or its embeddings are missing, or when the exclusion
    leaves nothing.
    """
    exclude = exclude_speakers or []
    parts, fingerprint = [], {}
    with st.open_store(store) as f:
        for corpus in corpora:
            parts.append(_read_corpus(f, store, corpus, embed_model, fingerprint))
    width = max(p["tokens"].shape[1] for p in parts)
    dims = {p["tokens"].shape[2] for p in parts}
    if len(dims) > 1:
        raise EmodiffError(f"{store}: embeddings of {embed_model} differ in width across corpora: {sorted(dims)}")
    mel, utt, tokens, lengths, emotion, speaker, text, ids = [], [], [], [], [], [], [], []
    offset = 0
    for p in parts:
        keep = np.array([not speaker_matches(s, exclude) for s in p["speaker"]])[p["utt"]]
        mel.append(torch.from_numpy(p["mel"][keep]))
        utt.append(torch.from_numpy(p["utt"][keep].astype(np.int64) + offset))
        pad = width - p["tokens"].shape[1]
        tokens.append(torch.nn.functional.pad(torch.from_numpy(p["tokens"]), (0, 0, 0, pad)))
        lengths.append(torch.from_numpy(p["lengths"].astype(np.int64)))
        emotion.append(p["emotion"])
        speaker.append(p["speaker"])
        text.append(p["text"])
        ids.append(p["ids"])
        offset += len(p["emotion"])
    data = SegmentSet(torch.cat(mel), torch.cat(utt), torch.cat(tokens), torch.cat(lengths),
                      np.concatenate(emotion), np.concatenate(speaker), np.concatenate(text), np.concatenate(ids))
    if len(data) == 0:
        raise EmodiffError(f"{store}: no segments left in {', '.join(corpora)} after excluding {', '.join(exclude)}")
    return data, fingerprint


def _read_corpus(f: h5py.File, store: Path, corpus: str, model: str, fingerprint: dict[str, str]) -> dict:
    group, emb = f"corpora/{corpus}", f"embeddings/{model}/{corpus}"
    if group not in f:
        raise EmodiffError(f"{store}: corpus {corpus} is not prepared; run `emodiff prepare {corpus} ROOT` first")
    if emb not in f:
        raise EmodiffError(f"{store}: /{emb} is missing; run `emodiff embed --corpus {corpus} --model {model}` first")
    c, e = f[group], f[emb]
    utt = st.read_table(c["utterances"])
    if len(e["pooled"]) != len(utt["id"]):
        raise EmodiffError(f"{store}: /{emb} has {len(e['pooled'])} rows for {len(utt['id'])} utterances of "
                           f"/{group}; re-run `emodiff embed --corpus {corpus} --overwrite`")
    for name in (group, emb):
        fingerprint[name] = str(f[name].attrs.get("config_hash", ""))
    return {
        "mel": c["segments/mel"][()].astype(np.float16, copy=False),
        "utt": c["segments/utt"][()],
        "tokens": e["tokens"][()].astype(np.float16, copy=False),
        "lengths": e["lengths"][()],
        "emotion": utt["emotion"].astype(np.int64),
        "speaker": np.array([f"{corpus}:{s}" for s in utt["speaker"]]),
        "text": utt["text"],
        "ids": np.array([f"{corpus}:{i}" for i in utt["id"]]),
    }
