"""Recipes: YAML files -> typed, frozen dataclasses, one per concern.

Precedence, lowest first: the dataclass defaults, the recipe file, then command-line flags
(each command passes its flags to :func:`override`). Unknown keys are errors, never ignored,
so a misspelt setting cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_type_hints

import yaml

from emodiff.errors import EmodiffError
from emodiff.ser.classifier import ClassifierConfig

Schedule = Literal["cosine", "linear"]
TimestepSampler = Literal["uniform", "loss-second-moment"]
Sampler = Literal["ddpm", "ddim", "heun", "dpmpp-2m"]
Parameterization = Literal["eps", "v", "edm"]
Skip = Literal["scalar", "wiener"]
DenoiserKind = Literal["flat", "unet"]
Load = Literal["auto", "memory", "chunks"]
Normalize = Literal["center", "none"]


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
        if self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.lambda_vb < 0:
            raise ValueError(f"lambda_vb must be >= 0, got {self.lambda_vb!r}")
        if self.sigma_data < 0 or self.min_snr_gamma < 0 or self.p_std <= 0:
            raise ValueError("sigma_data >= 0, min_snr_gamma >= 0 and p_std > 0 expected, got "
                             f"{self.sigma_data!r}, {self.min_snr_gamma!r}, {self.p_std!r}")
        if not 0 < self.sigma_min < self.sigma_max or self.rho <= 0:
            raise ValueError(f"0 < sigma_min < sigma_max and rho > 0 expected, got {self.sigma_min!r}, "
                             f"{self.sigma_max!r}, {self.rho!r}")
        if self.wiener_block < 1:
            raise ValueError(f"wiener_block must be a positive integer, got {self.wiener_block!r}")
        if self.parameterization != "eps" and self.learn_sigma:
            raise ValueError(f"learn_sigma is IDDPM's learned variance, only for parameterization eps; set it "
                             f"false for {self.parameterization}")


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


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (emodiff/train.py)."""

    batch_size: int = 64  # per process; the global batch is batch_size x world size
    steps: int = 120_000
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 500
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


@dataclass(frozen=True)
class SampleConfig:
    """Defaults of ``emodiff sample``."""

    steps: int = 100  # respaced steps S
    sampler: Sampler = "ddpm"
    eta: float = 0.0  # DDIM only
    batch_size: int = 64
    guidance: float = 0.0  # classifier-free guidance W: D = D_cond + W (D_cond - D_uncond); 0 = none



@dataclass(frozen=True)
class StudyConfig:
    """The whole study (``emodiff study``): which corpus and protocol, how many samples, which experiments."""

    corpus: str = "ravdess"
    root: str = ""  # the corpus folder; "" with ravdess: the bundled 6-actor sample
    folds: str = "loso"  # the classify protocol: loso | session | groups:K
    train_steps: int = 0  # steps of each per-fold generator; 0: train.steps
    samples: int = 256  # segments drawn from each generator
    experiments: str = "real, synthetic, real+synthetic, real+synthetic+mixup"  # comma-separated classify runs
    repeats: int = 1
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
        if self.train_steps < 0 or self.samples < 1 or self.repeats < 1:
            raise ValueError("train_steps >= 0, samples >= 1 and repeats >= 1 expected, got "
                             f"{self.train_steps}, {self.samples}, {self.repeats}")

@dataclass(frozen=True)
class Recipe:
    """A whole recipe file: a name and one section per concern."""

    name: str = "custom"
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    study: StudyConfig = field(default_factory=StudyConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values: tuples become lists."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T")
SECTIONS: dict[str, type] = {
    "diffusion": DiffusionConfig, "denoiser": DenoiserConfig, "train": TrainConfig, "sample": SampleConfig,
    "classifier": ClassifierConfig, "study": StudyConfig,
}


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
    except ValueError as err:  # a dataclass's own range checks
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


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """Build a Recipe from its YAML mapping; EmodiffError names the first bad key or value."""
    if not isinstance(data, dict):
        raise EmodiffError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS) - {"name"})
    if unknown:
        raise EmodiffError(f"{where}: unknown section(s) {', '.join(unknown)}; known: name, {', '.join(SECTIONS)}")
    parts = {key: build(cls, data.get(key) or {}, f"{where}:{key}") for key, cls in SECTIONS.items()}
    name = data.get("name", "custom")
    if not isinstance(name, str):
        raise EmodiffError(f"{where}:name: expected a string, got {name!r}")
    return Recipe(name=name, **parts)


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
    return recipe_from_dict(data or {}, str(path))


def override(config: T, where: str = "flags", **values: Any) -> T:
    """A copy of ``config`` with the non-None ``values`` replaced (command-line flags win)."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    merged = {**_plain(dataclasses.asdict(config)), **given}  # type: ignore[call-overload]
    return build(type(config), merged, where)
