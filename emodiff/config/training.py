"""The ``train`` section (the loop every family shares) and what every family's ``sample`` section shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, get_args

from emodiff.config.settings import Load, LrSchedule, SettingError, Voices, integers, numbers
from emodiff.experiments import OFFLINE


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (emodiff/train.py)."""

    batch_size: int = 64  # per process; the global batch is batch_size x world size
    steps: int = 120_000
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 500
    # lr after the warm-up: constant (IDDPM), or cosine from lr down to 0 at train.steps; the ravdess
    # recipe decays because at a constant 1e-3 one of the study's six per-fold generators diverged.
    schedule: LrSchedule = "constant"
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    bf16: bool = True  # autocast on CUDA; ignored on CPU
    compile: bool = False  # torch.compile the denoiser (CUDA only)
    val_fraction: float = 0.05  # utterances held out for the validation loss
    load: Load = "auto"  # mels into memory, or read per batch from the store (auto: memory if they fit)
    val_every: int = 1000
    log_every: int = 100
    checkpoint_every: int = 5000
    seed: int = 0
    # Windows of this many frames cut at random from each utterance's valid frames (its segments
    # joined, padding dropped); 0 trains on whole stored segments, padding included (the paper).
    crop_frames: int = 0
    cond_dropout: float = 0.0  # share of examples trained without emotion, speaker and text (for guidance)
    ema_warmup: bool = False  # EMA decay min(ema_decay, (1 + step) / (10 + step)): useful from the first steps
    # Offline copies (/augmented/<corpus>/<kind>, made by `emodiff augment`) trained on beside the originals,
    # each copy an utterance of its original's speaker, emotion and text; e.g. [speed]. Empty: originals only.
    augmented: tuple[str, ...] = ()

    def recipe_dict(self) -> dict:
        """What a recipe records of this section: every field, but ``augmented`` only when set, so recipes recorded
        before it existed keep their hash."""
        out = asdict(self)
        out["augmented"] = list(self.augmented)
        if not self.augmented:
            del out["augmented"]
        return out

    def __post_init__(self) -> None:
        integers(self, "train", 1, "batch_size", "steps", "val_every", "log_every", "checkpoint_every")
        integers(self, "train", 0, "warmup_steps", "seed", "crop_frames")
        if self.schedule not in get_args(LrSchedule):
            raise SettingError("train", "schedule", self.schedule, f"one of {', '.join(get_args(LrSchedule))}")
        numbers(self, "train", lambda v: v > 0, "a number > 0", "lr", "grad_clip")
        numbers(self, "train", lambda v: v >= 0, "a number >= 0", "weight_decay")
        numbers(self, "train", lambda v: 0 <= v < 1, "a fraction in [0, 1)", "ema_decay", "val_fraction",
                 "cond_dropout")
        if any(kind not in OFFLINE for kind in self.augmented) or len(set(self.augmented)) < len(self.augmented):
            raise SettingError("train", "augmented", list(self.augmented),
                               f"a list of distinct offline copies, each one of {', '.join(OFFLINE)}")


@dataclass(frozen=True)
class SampleConfig:
    """The ``sample`` settings every family shares (emodiff/sample.py reads them): the section of a family that
    draws with no options of its own. A family with sampling options declares its own section, which carries
    these two fields too and checks them with :func:`check_shared_sample` (emodiff/generators/diffusion.py)."""

    batch_size: int = 64
    # training: each sample speaks as the training speaker whose transcript it borrows; mix: a convex mix
    # of two training speakers' embeddings; gaussian: a draw from a Gaussian fitted to them (emodiff/voices.py)
    voices: Voices = "training"

    def __post_init__(self) -> None:
        check_shared_sample(self)


class SampleSettings(Protocol):
    """What emodiff/sample.py reads of any family's ``sample`` section."""

    batch_size: int
    voices: Voices


def check_shared_sample(cfg: SampleSettings) -> None:
    """The shared settings of a ``sample`` section: ``batch_size`` >= 1, ``voices`` one of :data:`Voices`."""
    integers(cfg, "sample", 1, "batch_size")
    if cfg.voices not in get_args(Voices):
        raise SettingError("sample", "voices", cfg.voices, f"one of {', '.join(get_args(Voices))}")
