"""Vocoded example clips as 16-bit WAV files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from emodiff.errors import EmodiffError

if TYPE_CHECKING:
    from emodiff.vocoder import Vocoder  # duck-typed: a name, a sample_rate, mel [80, F] -> waveform


def write_clip(path: Path, vocoder: Vocoder, mel: np.ndarray) -> None:
    """Vocode ``mel`` [80, F] and write it to ``path`` as PCM_16 at the vocoder's rate."""
    wave = np.asarray(vocoder(mel), dtype=np.float32).reshape(-1)
    if not np.isfinite(wave).all():
        raise EmodiffError(f"{path.name}: the {vocoder.name} vocoder returned non-finite samples")
    # PCM_16 cannot hold values beyond full scale; clip rather than let them wrap.
    sf.write(str(path), np.clip(wave, -1.0, 1.0), int(vocoder.sample_rate), subtype="PCM_16")
