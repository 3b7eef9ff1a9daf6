"""Which frames of a stored mel are sound: silence and padding share the log floor, -1.

Used by ``sample`` (the valid frames of a generated segment) and ``quality`` (frames that count).
"""

from __future__ import annotations

import math

import numpy as np

# A frame is silent when no mel bin rises above this level: -1 is the log floor (ln 1e-5), where
# padding and digital silence sit; -0.95 is 0.37 nats above it, below any recorded noise floor.
SILENCE = -0.95


def counted_frames(mel: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
    """Bool [N, F]: frame t of segment n counts iff t < frames[n] (all when None) and max_b mel[n, b, t] > SILENCE."""
    mel = np.asarray(mel)
    if mel.ndim != 3:
        raise ValueError(f"mel: expected [N, bins, frames], got shape {mel.shape}")
    loud = mel.max(axis=1) > SILENCE
    if frames is None:
        return loud
    frames = np.asarray(frames)
    if frames.shape != (len(mel),):
        raise ValueError(f"frames: expected shape ({len(mel)},), got {frames.shape}")
    return loud & (np.arange(mel.shape[2])[None, :] < frames[:, None])


def silence_share(mel: np.ndarray, frames: np.ndarray | None = None) -> float:
    """Share of all N*F frames of mel [N, bins, F] that are silent or (with frames [N]) padding."""
    return float(1.0 - counted_frames(mel, frames).mean()) if len(mel) else math.nan


def synthetic_frames(mel: np.ndarray) -> np.ndarray:
    """Valid frames [N] of generated mel [N, bins, F]: 1 + the last non-silent frame (at least 1).

    A generator trained on padded segments draws the padding too; trimming the trailing silence
    lets the yardstick embed a synthetic segment as it embeds a real one (padding masked).
    """
    loud = counted_frames(mel)
    last = loud.shape[1] - np.argmax(loud[:, ::-1], axis=1)  # 1 + index of the last loud frame
    return np.where(loud.any(axis=1), last, 1).astype(np.int64)
