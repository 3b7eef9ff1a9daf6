"""The report's two heavy helpers, imported only when used: the quality metrics and the vocoder.

Each coupling is one small function; a report without ``--quality`` or audio never loads them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np

VocoderKind = Literal["auto", "hifigan", "griffin-lim"]
VOCODER_KINDS: tuple[str, ...] = get_args(VocoderKind)


class Vocoder(Protocol):
    """``emodiff.vocoder``'s API: mel [80, F] in the store's [-1, 1] scaling -> float32 waveform."""

    name: str
    sample_rate: int

    def __call__(self, mel: np.ndarray) -> np.ndarray: ...


def assess_quality(store: Path, device: str) -> str | None:
    """Compute the quality metrics the store lacks (``emodiff.quality.assess_missing``); no note to add."""
    from emodiff.quality import assess_missing

    assess_missing(store, device)
    return None


def load_vocoder(kind: VocoderKind, device: str) -> tuple[Vocoder | None, str]:
    """(``emodiff.vocoder.load_vocoder(kind, device)``, a note for the page) or (None, why there is no audio).

    The note carries the vocoder's warnings, such as why ``auto`` fell back from HiFi-GAN to Griffin-Lim.
    """
    from emodiff.vocoder import load_vocoder as load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vocoder = load(kind=kind, device=device)
    return vocoder, " ".join(f"Vocoder: {w.message}." for w in caught if issubclass(w.category, UserWarning))
