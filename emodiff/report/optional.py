"""The report's two heavy helpers, imported only when used: the quality metrics and the vocoder.

Each coupling is one small function; a report without ``--quality`` or audio never loads
``emodiff.quality`` or ``emodiff.vocoder``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from emodiff.config.settings import VocoderKind

if TYPE_CHECKING:
    from emodiff.vocoder import Vocoder

# From the recipe's settings, not emodiff.vocoder, so that checking --vocoder does not load that module.
VOCODER_KINDS: tuple[str, ...] = get_args(VocoderKind)


def assess_quality(store: Path, device: str) -> None:
    """Compute and store the quality metrics the store lacks (``emodiff.quality.assess``; none when it holds no set)."""
    from emodiff.quality import QualityJob, assess

    assess(QualityJob(store=store, device=device, allow_empty=True))


def vocoder_with_note(kind: VocoderKind, device: str) -> tuple[Vocoder, str]:
    """``emodiff.vocoder.load_vocoder(kind, device)`` and a note for the page (EmodiffError if it cannot load).

    The note carries the vocoder's warnings, such as why ``auto`` fell back from HiFi-GAN to Griffin-Lim.
    """
    from emodiff.vocoder import load_vocoder as load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vocoder = load(kind=kind, device=device)
    return vocoder, " ".join(f"Vocoder: {w.message}." for w in caught if issubclass(w.category, UserWarning))
