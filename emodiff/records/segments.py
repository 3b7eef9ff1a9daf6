"""The growable `segments/` datasets of prepare and augment, and their compression (docs/store.md)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

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


