"""The ``classifier`` section: which classifier (the CNN-BLSTM, or utterance statistics into a linear model) and
how it trains (emodiff/ser/)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import get_args

from emodiff.config.settings import ClassifierKind, LrSchedule, SettingError, integers, is_number, numbers

# classifier.l2's default: lambda from strongest to weakest (ties in validation UAR keep the earlier, stronger one).
# lambda is sklearn's 1 / (C N) for N training units: C ~ 0.00004..1.5 with the ~670-860 utterances of a RAVDESS or
# nEMO source. The lab probe's C range (0.0003..0.1, lambda 3..0.01 here) was too narrow: validation chose its
# strongest end in all 24 nEMO -> RAVDESS folds and its weakest in 5 of 12 RAVDESS folds (docs/classify.md).
DEFAULT_L2 = (30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


@dataclass(frozen=True)
class ClassifierConfig:
    """Sizes and training settings of the CNN-BLSTM (emodiff/ser/classifier.py); defaults are the paper's.

    ``channels`` is the width of all three conv layers (one int rather than a tuple, so that it
    reads plainly in YAML and passes :func:`build`).

    ``kind: stats`` is another classifier (emodiff/ser/stats.py): each utterance's per-bin mean and std,
    standardised per speaker, into multinomial logistic regression, fitted once per L2 strength of ``l2``. It
    reads ``mel_channels``, ``n_classes`` and ``seed`` (the controls' draws) of the rest; the CNN's sizes and
    training settings do nothing for it (docs/classify.md "A classifier that transfers").
    """

    mel_channels: int = 80
    channels: int = 128  # every one of the three Conv1d layers
    kernel_size: int = 5  # odd, so that "same" padding is symmetric
    lstm_hidden: int = 128  # per direction
    conv_dropout: float = 0.1
    lstm_dropout: float = 0.2
    n_classes: int = 4
    epochs: int = 100
    lr: float = 1e-5
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0
    # Not in the paper (its defaults leave them off); docs/classify.md "A baseline for RAVDESS" has what each gives.
    time_pool: int = 1  # max-pool the conv output over time by this factor before the BLSTM (1: none)
    normalize: bool = False  # standardise each mel bin by the training segments' mean and std (valid frames)
    # Standardise each mel bin of each segment over its own valid frames first (before `normalize`): a corpus's
    # recording channel and level, which do not carry to another corpus, leave the input (docs/classify.md).
    segment_norm: bool = False
    schedule: LrSchedule = "constant"  # lr per step: constant, or cosine from lr down to 0 over the training's steps
    patience: int = 0  # stop after this many validations without a better validation UAR (0: never)
    select_from: int = 1  # the first epoch (with `steps`: step) validated and eligible as the best (else the last)
    # A fixed budget of optimiser steps, whatever the data (0: `epochs` passes over the data instead), so that an
    # augmentation that adds segments does not also buy more updates (docs/classify.md "Equal training").
    steps: int = 0
    eval_every: int = 0  # with `steps`: validate every this many steps (0: once per pass over the training data)
    kind: ClassifierKind = "cnn-blstm"  # or stats: utterance statistics into a linear model (docs/classify.md)
    # kind stats: the L2 strengths lambda fitted, each fold keeping the one of best validation UAR; the loss is the
    # (weighted) mean cross-entropy + lambda / 2 ||W||^2, the bias unpenalised.
    l2: tuple[float, ...] = DEFAULT_L2

    def recorded(self) -> dict:
        """What a result records of this section (its ``config`` attr): every field, but ``steps`` and
        ``eval_every`` only when ``steps`` is set, ``segment_norm`` only when on, and ``kind`` and ``l2`` only
        when ``kind`` is not cnn-blstm, so results recorded before they existed keep their hash."""
        out = self.recipe_dict()
        if not self.segment_norm:
            del out["segment_norm"]
        if not self.steps:
            del out["steps"], out["eval_every"]
        return out

    def recipe_dict(self) -> dict:
        """What a recipe records of this section (Recipe.to_dict: checkpoints, /runs, runs/NAME/recipe.yaml): every
        field as a plain value, but ``kind`` and ``l2`` only when ``kind`` is not cnn-blstm, so recipes recorded
        before they existed keep their hash."""
        out = asdict(self)
        out["l2"] = list(self.l2)
        if self.kind == "cnn-blstm":
            del out["kind"], out["l2"]
        return out

    def __post_init__(self) -> None:
        integers(self, "classifier", 1, "mel_channels", "channels", "kernel_size", "lstm_hidden", "epochs",
                  "batch_size", "time_pool", "select_from")
        integers(self, "classifier", 2, "n_classes")
        integers(self, "classifier", 0, "seed", "patience", "steps", "eval_every")
        if self.eval_every and not self.steps:
            raise SettingError("classifier", "eval_every", self.eval_every,
                               "0 unless classifier.steps is set (epochs validate once per epoch)")
        for name in ("normalize", "segment_norm"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError("classifier", name, getattr(self, name), "true or false")
        if self.kind not in get_args(ClassifierKind):
            raise SettingError("classifier", "kind", self.kind, f"one of {', '.join(get_args(ClassifierKind))}")
        if (not isinstance(self.l2, tuple) or not self.l2
                or any(not is_number(v) or not math.isfinite(v) or v <= 0 for v in self.l2)):
            raise SettingError("classifier", "l2", self.l2, "a non-empty list of numbers > 0 (L2 strengths lambda)")
        if self.kind == "cnn-blstm" and self.l2 != DEFAULT_L2:
            raise SettingError("classifier", "l2", list(self.l2), "the default unless classifier.kind is stats (the "
                               "CNN-BLSTM has no L2 grid; its decay is weight_decay)")
        if self.schedule not in get_args(LrSchedule):
            raise SettingError("classifier", "schedule", self.schedule, f"one of {', '.join(get_args(LrSchedule))}")
        if self.kernel_size % 2 == 0:
            raise SettingError("classifier", "kernel_size", self.kernel_size,
                               "an odd integer (symmetric 'same' padding)")
        numbers(self, "classifier", lambda v: 0 <= v < 1, "a probability in [0, 1)", "conv_dropout",
                 "lstm_dropout")
        numbers(self, "classifier", lambda v: v > 0, "a number > 0", "lr")
        numbers(self, "classifier", lambda v: v >= 0, "a number >= 0", "weight_decay")


