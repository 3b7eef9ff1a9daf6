"""The ``classifier`` section: the CNN-BLSTM and how it trains (emodiff/ser/)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import get_args

from emodiff.config.settings import LrSchedule, SettingError, integers, numbers


@dataclass(frozen=True)
class ClassifierConfig:
    """Sizes and training settings of the CNN-BLSTM (emodiff/ser/classifier.py); defaults are the paper's.

    ``channels`` is the width of all three conv layers (one int rather than a tuple, so that it
    reads plainly in YAML and passes :func:`build`).
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

    def recorded(self) -> dict:
        """What a result records of this section (its ``config`` attr): every field, but ``steps`` and
        ``eval_every`` only when ``steps`` is set and ``segment_norm`` only when on, so results recorded before
        they existed keep their hash."""
        out = asdict(self)
        if not self.segment_norm:
            del out["segment_norm"]
        if not self.steps:
            del out["steps"], out["eval_every"]
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
        if self.schedule not in get_args(LrSchedule):
            raise SettingError("classifier", "schedule", self.schedule, f"one of {', '.join(get_args(LrSchedule))}")
        if self.kernel_size % 2 == 0:
            raise SettingError("classifier", "kernel_size", self.kernel_size,
                               "an odd integer (symmetric 'same' padding)")
        numbers(self, "classifier", lambda v: 0 <= v < 1, "a probability in [0, 1)", "conv_dropout",
                 "lstm_dropout")
        numbers(self, "classifier", lambda v: v > 0, "a number > 0", "lr")
        numbers(self, "classifier", lambda v: v >= 0, "a number >= 0", "weight_decay")


