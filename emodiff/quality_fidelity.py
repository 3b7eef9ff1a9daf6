"""Fidelity apart from diversity (issue 20): density, coverage, silence fraction and frame change of one
selection of rows (an emotion, or the whole set), each beside its real value (docs/quality.md).

Density and coverage use the yardstick's embeddings of the judged speakers (held out when there are
any), like the Frechet distance; the silence fraction and frame change use the mels of the reference
speakers (what the generator imitated), like MAD. Real-vs-real values use the two halves of the held-out
speakers that ``frechet_real`` uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from emodiff.metrics import change_ratio, density_coverage, frame_change, nanmean, ratio_summary, silence_fraction
from emodiff.quality_inputs import RealCorpus, Rows


@dataclass(frozen=True)
class FidelityDiversity:
    """The issue-20 metrics of one selection; NaN where undefined (a bin of -1 where no ratio is).

    ``*_real`` is real-vs-real: one half of the held-out speakers against the other (NaN with fewer than
    two), except ``silence_fraction_real``, the reference speakers' own value. Frame change compares
    each mel bin's mean |x[b, t + 1] - x[b, t]| with the reference speakers' (halves: A's over B's).
    """

    density: float
    density_real: float
    coverage: float
    coverage_real: float
    silence_fraction_synthetic: float
    silence_fraction_real: float
    frame_change_low: float  # mean over bins 0-14 of the per-bin ratio synthetic / real
    frame_change_low_real: float
    frame_change_worst: float  # the ratio of the bin farthest from 1
    frame_change_worst_bin: int  # that bin; -1 when no ratio is defined
    frame_change_worst_real: float
    frame_change_worst_real_bin: int
    ratio: np.ndarray = field(compare=False, repr=False)  # [B] synthetic / real per bin
    ratio_real: np.ndarray = field(compare=False, repr=False)  # [B] real half A / real half B per bin

    def scalars(self) -> dict[str, float | int]:
        """The scalar fields: per_emotion columns for an emotion, attrs for the whole set."""
        return {name: getattr(self, name) for name in TABLE_FIELDS}


# (annotations are strings here: ``from __future__ import annotations``)
TABLE_FIELDS = tuple(f.name for f in fields(FidelityDiversity) if f.type in ("float", "int"))


def fidelity_diversity(rows: Rows, real: RealCorpus, real_embed: np.ndarray, mel: np.ndarray, frames: np.ndarray,
                       embed: np.ndarray, nearest_k: int) -> FidelityDiversity:
    """The metrics of ``rows``: real segments of ``real`` (embeddings [N, 2H]) against the synthetic set's
    mel [M, C, F], valid frames [M] and embeddings [M, 2H] (``rows.synthetic`` picks its rows)."""
    s = rows.synthetic
    density, coverage, density_real, coverage_real = _density_coverage(rows, real_embed, embed[s], nearest_k)
    ratio = change_ratio(frame_change(mel[s], frames[s]), _change(real, rows.ref))
    ratio_real = np.full_like(ratio, math.nan)
    if rows.halves is not None:
        ratio_real = change_ratio(_change(real, rows.halves[0]), _change(real, rows.halves[1]))
    low, worst_bin, worst = ratio_summary(ratio)
    low_real, worst_bin_real, worst_real = ratio_summary(ratio_real)
    return FidelityDiversity(
        density=density, density_real=density_real, coverage=coverage, coverage_real=coverage_real,
        silence_fraction_synthetic=silence_fraction(mel[s], frames[s]),
        silence_fraction_real=silence_fraction(real.mel[rows.ref], real.frames[rows.ref]),
        frame_change_low=low, frame_change_low_real=low_real, frame_change_worst=worst,
        frame_change_worst_bin=worst_bin, frame_change_worst_real=worst_real,
        frame_change_worst_real_bin=worst_bin_real, ratio=ratio, ratio_real=ratio_real)


def _change(real: RealCorpus, rows: np.ndarray) -> np.ndarray:
    return frame_change(real.mel[rows], real.frames[rows])


def _density_coverage(rows: Rows, real_embed: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, ...]:
    """(density, coverage, density_real, coverage_real), each as (reference, fakes). Without halves: (judged,
    synthetic) and no real value. With halves A and B: the mean of (A, part 1) and (B, part 2) of the
    synthetic rows, and real-vs-real the mean of (A, B) and (B, A)."""
    if rows.halves is None:
        return (*_dc(real_embed[rows.judged], fake, k), math.nan, math.nan)
    a, b = (real_embed[h] for h in rows.halves)
    # Coverage grows with the number of fakes, so each part has as many as the real half it stands in
    # for, when the set is large enough. Shuffled first: a set stored in emotion order would otherwise
    # give the parts different emotions. Seeded, so the numbers are reproducible.
    shuffled = fake[np.random.default_rng(0).permutation(len(fake))]
    enough = len(fake) >= len(a) + len(b)
    n1 = len(b) if enough else len(fake) // 2
    n2 = len(a) if enough else len(fake) - n1
    pairs = [_dc(a, shuffled[:n1], k), _dc(b, shuffled[n1:n1 + n2], k), _dc(a, b, k), _dc(b, a, k)]
    return tuple(nanmean([pairs[i][j] for i in sides]) for sides in ((0, 1), (2, 3)) for j in (0, 1))


def _dc(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    return density_coverage(real, fake, k) if len(real) > k and len(fake) else (math.nan, math.nan)
