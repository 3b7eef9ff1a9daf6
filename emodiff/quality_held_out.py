"""The set-level metrics of ``emodiff quality`` on the speakers the generator never saw (docs/quality.md).

TSTR against TRTR, the two-sample AUC against the generator's own speakers and, with ``held_out_auc``, against
the held-out speakers beside the floor that the change of speaker alone sets. :mod:`emodiff.quality` calls
:func:`held_out_metrics` once per set; the classifier fits are in :mod:`emodiff.ser`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from emodiff.quality_inputs import Pair, RealCorpus
from emodiff.ser.classifier import ClassifierConfig, CnnBlstm
from emodiff.ser.metrics import uar
from emodiff.ser.training import Segments, fit, utterance_scores
from emodiff.ser.two_sample import two_sample_auc

Floors = dict[tuple, float]  # (corpus, classifier, reference rows, m) -> the speaker-change floor, shared by sets


@dataclass
class HeldOut:
    """Set-level metrics against the speakers the generator never saw (NaN when it saw every speaker)."""

    tstr_uar: float = math.nan  # the classifier trained on the synthetic set alone, on held-out real utterances
    trtr_uar: float = math.nan  # the same classifier trained on the generator's speakers' real segments (the yardstick)
    two_sample_auc: float = math.nan  # real (generator's speakers) vs synthetic, cross-validated
    two_sample_auc_held: float = math.nan  # real (held-out speakers) vs synthetic (QualityJob.held_out_auc)
    two_sample_auc_floor: float = math.nan  # real (generator's speakers) vs real (held-out): speaker change alone
    speakers: list[str] = field(default_factory=list)

    def attrs(self) -> dict[str, float | str]:
        """The /quality group's attrs for these metrics; the held-out AUC and its floor only when measured, so
        that a set assessed without them keeps the layout it had before they existed."""
        out: dict[str, float | str] = {"tstr_uar": self.tstr_uar, "trtr_uar": self.trtr_uar,
                                       "two_sample_auc": self.two_sample_auc,
                                       "held_out_speakers": json.dumps(self.speakers)}
        if not (math.isnan(self.two_sample_auc_held) and math.isnan(self.two_sample_auc_floor)):
            out |= {"two_sample_auc_held": self.two_sample_auc_held, "two_sample_auc_floor": self.two_sample_auc_floor}
        return out


def segments(mel: np.ndarray, frames: np.ndarray, labels: np.ndarray) -> Segments:
    """Arrays as the classifier's Segments (mel [N, C, F], valid frames [N], labels [N])."""
    return Segments(torch.from_numpy(np.asarray(mel)), torch.from_numpy(np.asarray(frames, np.int64)),
                    torch.from_numpy(np.asarray(labels, np.int64)))


def real_segments(real: RealCorpus, rows: np.ndarray) -> Segments:
    """The real segments ``rows`` (indices) with their emotions."""
    return segments(real.mel[rows], real.frames[rows], real.emotion[rows])


def utterance_uar(model: CnnBlstm, real: RealCorpus, rows: np.ndarray, device: torch.device) -> float:
    """UAR over the utterances of the real segments ``rows``, each scored by pooling its segments."""
    utt = real.utt[rows] if real.utt is not None else rows
    ids, index = np.unique(utt, return_inverse=True)
    scores = utterance_scores(model, torch.from_numpy(real.mel[rows]), torch.from_numpy(real.frames[rows]),
                              index, len(ids), device)
    first = np.unique(index, return_index=True)[1]
    return uar(real.emotion[rows][first], scores.argmax(axis=1))


def held_out_metrics(pair: Pair, synthetic: Segments, yardstick: CnnBlstm, cfg: ClassifierConfig,
                     device: torch.device, floors: Floors | None = None) -> HeldOut:
    """The set-level metrics of the synthetic set against ``pair``'s real corpus; given ``floors`` (the cache of
    :func:`held_out_aucs`) also the two-sample AUC against the held-out speakers and its floor.

    The two-sample tests keep each real utterance in one fold (each real row its own group when the corpus
    records no utterances).
    """
    real = pair.real
    ref = np.flatnonzero(pair.ref)
    groups = real.utt if real.utt is not None else np.arange(len(real.speaker))
    out = HeldOut(two_sample_auc=two_sample_auc(cfg, real_segments(real, ref), synthetic, device, seed=cfg.seed,
                                                real_groups=groups[ref]))
    if pair.held.any():
        held = np.flatnonzero(pair.held)
        out.speakers = pair.held_speakers()
        out.trtr_uar = utterance_uar(yardstick, real, held, device)
        out.tstr_uar = utterance_uar(fit(cfg, synthetic, device).model, real, held, device)
        if floors is not None:
            out.two_sample_auc_held, out.two_sample_auc_floor = held_out_aucs(real, ref, held, groups, synthetic,
                                                                              cfg, device, floors)
    return out


def held_out_aucs(real: RealCorpus, ref: np.ndarray, held: np.ndarray, groups: np.ndarray, synthetic: Segments,
                  cfg: ClassifierConfig, device: torch.device, floors: Floors) -> tuple[float, float]:
    """(AUC of the synthetic set against the held-out speakers' real segments, AUC of the generator's speakers'
    real segments against the held-out speakers': the floor that the change of speaker alone sets).

    The held-out side has m = min(held-out segments, synthetic segments) in both tests (two_sample_auc subsamples
    its first side to its second's size; the floor's held-out side is m of them, drawn by the yardstick's seed),
    and each real utterance (``groups`` [N]) stays in one fold. ``ref`` and ``held`` are row indices into
    ``real``. The floor depends on the set only through m: ``floors`` keeps it for the next set of the same
    speakers and size (a study's diffusion and GAN sets of one fold).
    """
    auc_held = two_sample_auc(cfg, real_segments(real, held), synthetic, device, seed=cfg.seed,
                              real_groups=groups[held])
    m = min(len(held), len(synthetic.mel))
    key = (real.name, cfg, tuple(ref.tolist()), m)
    if key not in floors:
        shown = np.sort(np.random.default_rng(cfg.seed).choice(held, size=m, replace=False))
        floors[key] = two_sample_auc(cfg, real_segments(real, ref), real_segments(real, shown), device,
                                     seed=cfg.seed, real_groups=groups[ref], synthetic_groups=groups[shown])
    return auc_held, floors[key]
