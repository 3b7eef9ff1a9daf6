"""Recipes: YAML files -> typed, frozen dataclasses, one per concern.

Precedence, lowest first: the dataclass defaults, the recipe file, then command-line flags
(each command passes its flags to :func:`override`). Unknown keys are errors, never ignored,
so a misspelt setting cannot silently fall back to a default.

Everything is checked when a recipe is loaded, before any command does work: each key's type
(:func:`build`), each section's ranges and the settings that must agree within it (each
dataclass's ``__post_init__``, raising :class:`SettingError`), the settings that must agree across
sections (:func:`check_recipe`), and, in a recipe file, that every section is there (a missing
section is an error, never the paper's 98 M-parameter defaults in silence). Flags go through the
same checks. Every failure is one EmodiffError line: the file, ``section.key``, the bad value and
what was expected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_type_hints

import yaml

from emodiff.errors import EmodiffError
from emodiff.experiments import Experiment

Schedule = Literal["cosine", "linear"]
TimestepSampler = Literal["uniform", "loss-second-moment"]
Sampler = Literal["ddpm", "ddim", "heun", "dpmpp-2m"]
Parameterization = Literal["eps", "v", "edm"]
Skip = Literal["scalar", "wiener"]
DenoiserKind = Literal["flat", "unet"]
Load = Literal["auto", "memory", "chunks"]
Normalize = Literal["center", "none"]
LrSchedule = Literal["constant", "cosine"]
GeneratorName = Literal["diffusion", "gan"]  # the generator families of emodiff/generators/
GanLoss = Literal["hinge", "wgan-gp"]


class SettingError(ValueError):
    """One bad setting of a section: ``section.key: expected ..., got value``.

    A ValueError, so that code building a config by hand gets the usual exception; :func:`build`
    turns it into one EmodiffError line that also names the recipe file.
    """

    def __init__(self, section: str, key: str, value: Any, expected: str) -> None:
        self.section, self.key, self.value, self.expected = section, key, value, expected
        super().__init__(f"{section}.{key}: expected {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integers(cfg: Any, section: str, minimum: int, *names: str) -> None:
    """Each of ``names`` an integer >= ``minimum``."""
    for name in names:
        value = getattr(cfg, name)
        if not _is_int(value) or value < minimum:
            raise SettingError(section, name, value, f"an integer >= {minimum}")


def _numbers(cfg: Any, section: str, ok: Callable[[float], bool], expected: str, *names: str) -> None:
    """Each of ``names`` a number for which ``ok(value)`` holds."""
    for name in names:
        value = getattr(cfg, name)
        if not _is_number(value) or not ok(value):
            raise SettingError(section, name, value, expected)


@dataclass(frozen=True)
class DiffusionConfig:
    """IDDPM: T steps of a cosine schedule, epsilon prediction with learned-range variance."""

    steps: int = 4000
    schedule: Schedule = "cosine"
    learn_sigma: bool = True
    lambda_vb: float = 0.001  # weight of L_vb in the hybrid loss L_simple + lambda L_vb
    timestep_sampler: TimestepSampler = "uniform"
    # Diffuse mels centred on their per-bin training-set mean: see diffusion/normalize.py.
    normalize: Normalize = "center"
    # What the network predicts. eps: IDDPM's discrete T-step process above (the paper's). v and edm:
    # a continuous noise level sigma with the network wrapped as D(x; sigma) = c_skip x + c_out F
    # (emodiff/diffusion/preconditioned.py): v-prediction (Salimans & Ho 2022; sigma_data = 1, cosine
    # noise levels) or EDM (Karras et al. 2022; the data's sigma, log-normal noise levels).
    parameterization: Parameterization = "eps"
    sigma_data: float = 0.0  # edm: std of the (centred) training mels; 0 measures it at the start of training
    p_mean: float = -1.2  # edm: ln(sigma) ~ N(p_mean, p_std^2) in training
    p_std: float = 1.2
    min_snr_gamma: float = 0.0  # v/edm: clamp the loss weight at SNR = gamma (Hang et al. 2023); 0 = off
    # v/edm: the denoiser's skip path. scalar: EDM's c_skip x. wiener: the data's best linear denoiser
    # (a Wiener filter over blocks of wiener_block frames, fitted at the start of training), with
    # c_out its expected error, so the network learns only what no linear model can
    # (emodiff/diffusion/wiener.py).
    skip: Skip = "scalar"
    wiener_block: int = 4
    sigma_min: float = 0.002  # v/edm sampling: the Karras et al. (rho = 7) noise levels from sigma_max down
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        _integers(self, "diffusion", 1, "steps", "wiener_block")
        _numbers(self, "diffusion", lambda v: v >= 0, "a number >= 0", "lambda_vb", "sigma_data", "min_snr_gamma")
        _numbers(self, "diffusion", lambda v: v > 0, "a number > 0", "p_std", "sigma_min", "rho")
        _numbers(self, "diffusion", lambda v: True, "a number", "p_mean")
        _numbers(self, "diffusion", lambda v: v > self.sigma_min, f"a number > sigma_min ({self.sigma_min!r})",
                 "sigma_max")
        if self.parameterization != "eps" and self.learn_sigma:
            raise SettingError("diffusion", "learn_sigma", self.learn_sigma, "false with parameterization "
                               f"{self.parameterization} (IDDPM's learned variance is for eps only)")


@dataclass(frozen=True)
class DenoiserConfig:
    """Sizes of the denoiser: the paper's flat res-block stack (emodiff/diffusion/denoiser.py) or a
    1-D U-Net over frames (emodiff/diffusion/unet.py)."""

    kind: DenoiserKind = "flat"
    mel_channels: int = 80
    channels: int = 1536
    blocks_before: int = 8  # residual blocks before the self-attention
    blocks_after: int = 3  # residual blocks after it
    kernel_size: int = 3
    heads: int = 8  # attention heads, over time frames and over text tokens
    time_dim: int = 512  # sinusoidal timestep embedding, after its MLP
    text_dim: int = 384  # width of the stored token vectors (all-MiniLM-L6-v2: 384, BERT-base: 768)
    text_hidden: int = 256  # text path: Linear + SiLU to this width, then self-attention
    cond_channels: int = 64  # pooled text vector projected to this many channels, concatenated to the mel
    norm_groups: int = 32
    dropout: float = 0.0
    # unet only: width multipliers per resolution (frames halve from one to the next), res-blocks per
    # resolution, the resolutions (0 = full) with self-attention over frames + text tokens, and the
    # width of the emotion / speaker / text / noise-level embedding that scales and shifts every block.
    channel_mult: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = (2,)
    emb_dim: int = 256

    def __post_init__(self) -> None:
        if self.kind == "unet":
            check_unet_denoiser(self)
        else:
            check_flat_denoiser(self)


def _check_denoiser_common(cfg: DenoiserConfig) -> None:
    _integers(cfg, "denoiser", 1, "mel_channels", "channels", "kernel_size", "heads", "text_dim", "text_hidden",
              "cond_channels", "norm_groups", "emb_dim", "blocks_per_level")
    _integers(cfg, "denoiser", 0, "blocks_before", "blocks_after")
    _integers(cfg, "denoiser", 2, "time_dim")  # one cos and one sin
    if cfg.kernel_size % 2 == 0:
        raise SettingError("denoiser", "kernel_size", cfg.kernel_size, "an odd integer (symmetric 'same' padding)")
    _numbers(cfg, "denoiser", lambda v: 0 <= v < 1, "a probability in [0, 1)", "dropout")


def check_flat_denoiser(cfg: DenoiserConfig) -> None:
    """Raise SettingError naming the first setting of ``cfg`` that cannot build the flat Denoiser."""
    _check_denoiser_common(cfg)
    if cfg.channels % cfg.heads or cfg.text_hidden % cfg.heads:
        raise SettingError("denoiser", "heads", cfg.heads, f"a divisor of channels ({cfg.channels}) and of "
                           f"text_hidden ({cfg.text_hidden})")
    if cfg.channels % cfg.norm_groups:
        raise SettingError("denoiser", "norm_groups", cfg.norm_groups, f"a divisor of channels ({cfg.channels})")


def check_unet_denoiser(cfg: DenoiserConfig) -> None:
    """Raise SettingError naming the first setting of ``cfg`` that cannot build a UNet1d."""
    _check_denoiser_common(cfg)
    mult, levels = cfg.channel_mult, cfg.attention_levels
    if not mult or any(not _is_int(m) or m < 1 for m in mult):
        raise SettingError("denoiser", "channel_mult", list(mult), "a non-empty list of integers >= 1")
    if any(not _is_int(level) or not 0 <= level < len(mult) for level in levels):
        raise SettingError("denoiser", "attention_levels", list(levels),
                           f"levels of channel_mult, each in 0..{len(mult) - 1}")
    widths = ", ".join(str(cfg.channels * m) for m in mult)
    for name in ("norm_groups", "heads"):
        value = getattr(cfg, name)
        if any(cfg.channels * m % value for m in mult):
            raise SettingError("denoiser", name, value, "a number that every level's width (channels x "
                               f"channel_mult: {widths}) is divisible by")


@dataclass(frozen=True)
class GanConfig:
    """The conditional GAN baseline (emodiff/gan/, ``generator: gan``): a 1-D convolutional generator over
    frames (mel bins as channels) and a projection discriminator with spectral normalisation.

    The generator is trained at ``train.lr``, the discriminator at ``lr_d`` (two time-scale rule,
    Heusel et al. 2017), both with Adam betas (0, 0.9) as in SAGAN (Zhang et al. 2019).
    """

    mel_channels: int = 80
    latent_dim: int = 64  # noise channels per latent position (one position per 2^levels frames)
    channels: int = 256  # generator width at the coarsest levels; halved per finer level, min 64
    levels: int = 4  # x2 upsamplings in the generator, /2 downsamplings in the discriminator
    emb_dim: int = 128  # emotion, speaker (and text) embeddings
    disc_channels: int = 64  # discriminator width at the finest level; doubled per level, at most 8x
    kernel_size: int = 5
    text: bool = False  # also condition on the utterance's text (its token vectors, mean-pooled)
    text_dim: int = 384
    loss: GanLoss = "hinge"  # hinge (Lim & Ye 2017; Miyato et al. 2018) or WGAN-GP (Gulrajani et al. 2017)
    gp_weight: float = 10.0  # wgan-gp: lambda of the gradient penalty
    spectral_norm: bool = True  # on every discriminator layer (Miyato et al. 2018)
    lr_d: float = 4.0e-4
    d_steps: int = 1  # discriminator updates per generator update
    # Latif et al. (2020)'s mixup GAN: the discriminator also sees real pairs mixed with
    # lambda ~ Beta(alpha, alpha), their conditions mixed alike; 0 = off.
    mixup: float = 0.0

    def __post_init__(self) -> None:
        _integers(self, "gan", 1, "mel_channels", "latent_dim", "channels", "emb_dim", "disc_channels",
                  "text_dim", "d_steps")
        _integers(self, "gan", 0, "levels")
        if not (isinstance(self.kernel_size, int) and self.kernel_size % 2 == 1 and self.kernel_size >= 1):
            raise SettingError("gan", "kernel_size", self.kernel_size, "an odd integer >= 1")
        _numbers(self, "gan", lambda v: v > 0, "a number > 0", "lr_d")
        _numbers(self, "gan", lambda v: v >= 0, "a number >= 0", "gp_weight", "mixup")


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

    def __post_init__(self) -> None:
        _integers(self, "train", 1, "batch_size", "steps", "val_every", "log_every", "checkpoint_every")
        _integers(self, "train", 0, "warmup_steps", "seed", "crop_frames")
        if self.schedule not in get_args(LrSchedule):
            raise SettingError("train", "schedule", self.schedule, f"one of {', '.join(get_args(LrSchedule))}")
        _numbers(self, "train", lambda v: v > 0, "a number > 0", "lr", "grad_clip")
        _numbers(self, "train", lambda v: v >= 0, "a number >= 0", "weight_decay")
        _numbers(self, "train", lambda v: 0 <= v < 1, "a fraction in [0, 1)", "ema_decay", "val_fraction",
                 "cond_dropout")


@dataclass(frozen=True)
class SampleConfig:
    """Defaults of ``emodiff sample``."""

    steps: int = 100  # respaced steps S
    sampler: Sampler = "ddpm"
    eta: float = 0.0  # DDIM only
    batch_size: int = 64
    guidance: float = 0.0  # classifier-free guidance W: D = D_cond + W (D_cond - D_uncond); 0 = none

    def __post_init__(self) -> None:  # the same ranges as `emodiff sample`'s flags
        _integers(self, "sample", 1, "steps", "batch_size")
        _numbers(self, "sample", lambda v: 0 <= v <= 1, "a number in [0, 1] (0: deterministic DDIM, 1: DDPM)",
                 "eta")
        _numbers(self, "sample", lambda v: 0 <= v <= 20, "a number in [0, 20]", "guidance")


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
    schedule: LrSchedule = "constant"  # lr per step: constant, or cosine from lr down to 0 over `epochs` epochs
    patience: int = 0  # stop after this many epochs without a better validation UAR (0: train every epoch)
    select_from: int = 1  # the first epoch validated and eligible as the best (the last one if epochs is fewer)

    def __post_init__(self) -> None:
        _integers(self, "classifier", 1, "mel_channels", "channels", "kernel_size", "lstm_hidden", "epochs",
                  "batch_size", "time_pool", "select_from")
        _integers(self, "classifier", 2, "n_classes")
        _integers(self, "classifier", 0, "seed", "patience")
        if not isinstance(self.normalize, bool):
            raise SettingError("classifier", "normalize", self.normalize, "true or false")
        if self.schedule not in get_args(LrSchedule):
            raise SettingError("classifier", "schedule", self.schedule, f"one of {', '.join(get_args(LrSchedule))}")
        if self.kernel_size % 2 == 0:
            raise SettingError("classifier", "kernel_size", self.kernel_size,
                               "an odd integer (symmetric 'same' padding)")
        _numbers(self, "classifier", lambda v: 0 <= v < 1, "a probability in [0, 1)", "conv_dropout",
                 "lstm_dropout")
        _numbers(self, "classifier", lambda v: v > 0, "a number > 0", "lr")
        _numbers(self, "classifier", lambda v: v >= 0, "a number >= 0", "weight_decay")


@dataclass(frozen=True)
class StudyConfig:
    """The whole study (``emodiff study``): which corpus and protocol, how many samples, which experiments."""

    corpus: str = "ravdess"
    root: str = ""  # the corpus folder; "" with ravdess: the bundled 6-actor sample
    folds: str = "loso"  # the classify protocol: loso | session | groups:K
    train_steps: int = 0  # steps of each per-fold generator of this recipe's family; 0: train.steps
    samples: int = 256  # segments drawn from each generator
    experiments: str = "real, synthetic, real+synthetic, real+synthetic+mixup"  # comma-separated classify runs
    repeats: int = 1
    workers: int = 1  # classify's (fold, seed) trainings at once, each in a process on --threads / workers threads
    # The recipes of the other generator families its experiments use, "family=recipe" comma-separated
    # (a recipe file or a shipped name): ``gan=gan`` trains the per-fold GANs of ``real+gan``, for that
    # recipe's train.steps. The study's own recipe trains its own family's (``synthetic``), for train_steps.
    recipes: str = ""
    cross_corpus: str = ""  # a second corpus to test on, trained on `corpus` (the paper's table 3); "": none
    cross_root: str = ""  # its folder
    adaptation: str = ""  # a corpus to adapt to (figure 4): `corpus` + a fraction of it, tested on its other half
    adaptation_root: str = ""  # its folder
    fractions: str = "0, 0.1, 0.2, 0.3, 0.4, 0.5"  # adaptation sweep
    adaptation_experiments: str = "real, real+synthetic"  # run at every fraction
    quality: bool = True
    report: str = "report"
    vocoder: str = "auto"  # of the report's audio: auto | hifigan | griffin-lim
    examples: int = 1  # vocoded clips per emotion and source in the report

    def __post_init__(self) -> None:
        _integers(self, "study", 0, "train_steps", "examples")
        _integers(self, "study", 1, "samples", "repeats", "workers")
        for name in ("corpus", "report"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise SettingError("study", name, getattr(self, name), "a non-empty string")
        kind, _, k = self.folds.partition(":")
        if not (self.folds in ("loso", "session") or kind == "groups" and k.isdigit() and int(k) >= 3):
            raise SettingError("study", "folds", self.folds, "loso, session or groups:K with an integer K >= 3")
        if self.vocoder not in VOCODERS:
            raise SettingError("study", "vocoder", self.vocoder, f"one of {', '.join(VOCODERS)}")
        for name in ("experiments", "adaptation_experiments"):
            texts = _items(getattr(self, name))
            if not texts and (name == "experiments" or self.adaptation):
                raise SettingError("study", name, getattr(self, name), "comma-separated experiments, e.g. "
                                   "real, synthetic, real+synthetic")
            for text in texts:
                try:
                    Experiment.parse(text, where="")
                except EmodiffError as err:  # its own words say what is wrong with the text
                    raise SettingError("study", name, text, f"an experiment ({str(err).lstrip(': ')})") from None
        for item in _items(self.recipes):
            family, _, recipe = item.partition("=")
            if family.strip() not in get_args(GeneratorName) or not recipe.strip():
                raise SettingError("study", "recipes", self.recipes, "family=recipe pairs, e.g. gan=gan (families: "
                                   f"{', '.join(get_args(GeneratorName))})")
        for text in _items(self.fractions):
            try:
                ok = 0 <= float(text) <= 1
            except ValueError:
                ok = False
            if not ok:
                raise SettingError("study", "fractions", self.fractions, "comma-separated fractions in [0, 1]")


VOCODERS = ("auto", "hifigan", "griffin-lim")  # emodiff.vocoder.VocoderKind, without importing torch here


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@dataclass(frozen=True)
class Recipe:
    """A whole recipe file: a name and one section per concern."""

    name: str = "custom"
    generator: GeneratorName = "diffusion"  # which generator family trains and samples (emodiff/generators/)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    study: StudyConfig = field(default_factory=StudyConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values (tuples become lists), with the sections of this recipe's family only."""
        other = {key for fam, keys in FAMILY_SECTIONS.items() if fam != self.generator for key in keys}
        return {k: v for k, v in _plain(dataclasses.asdict(self)).items() if k not in other}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T")
SECTIONS: dict[str, type] = {
    "diffusion": DiffusionConfig, "denoiser": DenoiserConfig, "gan": GanConfig, "train": TrainConfig,
    "sample": SampleConfig, "classifier": ClassifierConfig, "study": StudyConfig,
}
# The sections of one generator family; a recipe states its own family's and the common ones.
FAMILY_SECTIONS: dict[str, tuple[str, ...]] = {"diffusion": ("diffusion", "denoiser"), "gan": ("gan",)}
COMMON_SECTIONS = ("train", "sample", "classifier", "study")


def build(cls: type[T], values: dict[str, Any], where: str) -> T:
    """``cls(**values)`` with every key and value checked against the dataclass's annotations."""
    if not isinstance(values, dict):
        raise EmodiffError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise EmodiffError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    checked = {key: _check(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**checked)
    except SettingError as err:  # a dataclass's own range checks
        raise EmodiffError(f"{where}.{err.key}: expected {err.expected}, got {err.value!r}") from None
    except ValueError as err:
        raise EmodiffError(f"{where}: {err}") from None


def _check(value: Any, hint: Any, where: str) -> Any:
    choices = get_args(hint) if getattr(hint, "__origin__", None) is Literal else None
    if choices:
        if value not in choices:
            raise EmodiffError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise EmodiffError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EmodiffError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EmodiffError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise EmodiffError(f"{where}: expected a string, got {value!r}")
        return value
    if getattr(hint, "__origin__", None) is tuple:  # tuple[int, ...]: a YAML list of integers
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise EmodiffError(f"{where}: expected a list of integers, got {value!r}")
        return tuple(value)
    raise TypeError(f"{where}: no check for type {hint!r}")


def recipe_from_dict(data: dict[str, Any], where: str = "recipe", complete: bool = False) -> Recipe:
    """Build a Recipe from its YAML mapping; EmodiffError names the first bad key or value.

    ``complete``: every section must be there (a recipe file). A recipe stored by an older emodiff
    (in a checkpoint or the store) may lack a section added since; it gets that section's defaults.
    """
    if not isinstance(data, dict):
        raise EmodiffError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS) - {"name", "generator"})
    if unknown:
        raise EmodiffError(f"{where}: unknown section(s) {', '.join(unknown)}; "
                           f"known: name, generator, {', '.join(SECTIONS)}")
    generator = _check(data.get("generator", "diffusion"), GeneratorName, f"{where}:generator")
    own = (*FAMILY_SECTIONS[generator], *COMMON_SECTIONS)
    foreign = [key for key in SECTIONS if key not in own and data.get(key) is not None]
    if foreign:  # a section nothing reads would be a setting that silently does nothing
        raise EmodiffError(f"{where}: a {generator} recipe has no {', '.join(foreign)} section (that is the "
                           f"{'/'.join(f for f, keys in FAMILY_SECTIONS.items() if foreign[0] in keys)} family's); "
                           f"its sections are {', '.join(own)}")
    # Defaults for a whole section would be the paper's 98 M-parameter model and its 4000-step
    # process, whatever the rest of the file says: a file states every section of its family.
    missing = [key for key in own if data.get(key) is None]
    if complete and missing:
        raise EmodiffError(f"{where}: no {', '.join(missing)} section; a {generator} recipe states every section "
                           f"({', '.join(own)}): copy a shipped one, e.g. recipes/demo.yaml or recipes/gan.yaml")
    parts = {key: build(cls, data.get(key) or {}, f"{where}:{key}") for key, cls in SECTIONS.items()}
    name = data.get("name", "custom")
    if not isinstance(name, str):
        raise EmodiffError(f"{where}:name: expected a string, got {name!r}")
    recipe = Recipe(name=name, generator=generator, **parts)
    check_recipe(recipe, where)
    return recipe


def check_recipe(recipe: Recipe, where: str = "recipe") -> None:
    """The settings that must agree across sections; EmodiffError names the first that does not."""
    d, den, train, sample = recipe.diffusion, recipe.denoiser, recipe.train, recipe.sample

    def bad(key: str, value: Any, expected: str) -> EmodiffError:
        return EmodiffError(f"{where}:{key}: expected {expected}, got {value!r}")

    if recipe.generator == "gan":
        multiple = 2 ** recipe.gan.levels
        if train.crop_frames % multiple:
            raise bad("train.crop_frames", train.crop_frames, f"0 or a multiple of {multiple} (the GAN's "
                      f"{recipe.gan.levels} levels halve the frames {recipe.gan.levels} times)")
        if train.cond_dropout:
            raise bad("train.cond_dropout", train.cond_dropout, "0 with generator gan (it has no guidance to "
                      "train an unconditional model for)")
        return
    if (den.kind == "flat") != (d.parameterization == "eps"):
        raise bad("diffusion.parameterization", d.parameterization,
                  "eps with denoiser.kind flat (the paper's IDDPM), v or edm with denoiser.kind unet")
    if d.parameterization == "eps":
        if sample.sampler not in ("ddpm", "ddim"):
            raise bad("sample.sampler", sample.sampler, "ddpm or ddim with diffusion.parameterization eps")
        if sample.steps > d.steps:
            raise bad("sample.steps", sample.steps, f"at most diffusion.steps ({d.steps})")
        if sample.guidance:
            raise bad("sample.guidance", sample.guidance, "0 with diffusion.parameterization eps (trained without "
                      "condition dropout, it has no unconditional model)")
    multiple = 2 ** (len(den.channel_mult) - 1)  # the U-Net halves the frames between levels
    if den.kind == "unet" and train.crop_frames % multiple:
        raise bad("train.crop_frames", train.crop_frames, f"0 or a multiple of {multiple} (the U-Net halves "
                  f"the frames {multiple.bit_length() - 1} times)")
    if d.parameterization != "eps" and d.skip == "wiener" and train.crop_frames % d.wiener_block:
        raise bad("diffusion.wiener_block", d.wiener_block, f"a divisor of train.crop_frames ({train.crop_frames}), "
                  "the frames the Wiener skip is fitted on")


RECIPES = Path(__file__).resolve().parent / "recipes"  # shipped with the package; ./recipes links here


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe YAML file, or a shipped recipe by name (``demo``, ``paper``)."""
    path = Path(path)
    if not path.is_file() and (RECIPES / f"{path.stem}.yaml").is_file() and path.parent == Path("."):
        path = RECIPES / f"{path.stem}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
        raise EmodiffError(f"{path}: no such recipe file (shipped recipes: {shipped})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise EmodiffError(f"{path}: not valid YAML ({first})") from None
    return recipe_from_dict(data or {}, str(path), complete=True)


def override(config: T, where: str = "flags", **values: Any) -> T:
    """A copy of ``config`` with the non-None ``values`` replaced (command-line flags win).

    The values go through the recipe's checks: EmodiffError reads ``--steps: train.steps: expected ...``.
    """
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    merged = {**_plain(dataclasses.asdict(config)), **given}  # type: ignore[call-overload]
    section = next((key for key, cls in SECTIONS.items() if cls is type(config)), type(config).__name__)
    return build(type(config), merged, f"{where}: {section}")
