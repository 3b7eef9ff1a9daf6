"""The diffusion model's sections, ``diffusion`` and ``denoiser``, and the settings of its that must agree across
sections. They are here, below the families, because the building blocks of emodiff/diffusion/ take them; the
diffusion family (emodiff/generators/diffusion.py) declares them as its recipe sections."""

from __future__ import annotations

from dataclasses import dataclass

from emodiff.config.settings import (
    DenoiserKind,
    Normalize,
    Parameterization,
    Schedule,
    SettingError,
    Skip,
    TimestepSampler,
    integers,
    is_int,
    mismatch,
    numbers,
)
from emodiff.config.training import TrainConfig


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
        integers(self, "diffusion", 1, "steps", "wiener_block")
        numbers(self, "diffusion", lambda v: v >= 0, "a number >= 0", "lambda_vb", "sigma_data", "min_snr_gamma")
        numbers(self, "diffusion", lambda v: v > 0, "a number > 0", "p_std", "sigma_min", "rho")
        numbers(self, "diffusion", lambda v: True, "a number", "p_mean")
        numbers(self, "diffusion", lambda v: v > self.sigma_min, f"a number > sigma_min ({self.sigma_min!r})",
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
    integers(cfg, "denoiser", 1, "mel_channels", "channels", "kernel_size", "heads", "text_dim", "text_hidden",
              "cond_channels", "norm_groups", "emb_dim", "blocks_per_level")
    integers(cfg, "denoiser", 0, "blocks_before", "blocks_after")
    integers(cfg, "denoiser", 2, "time_dim")  # one cos and one sin
    if cfg.kernel_size % 2 == 0:
        raise SettingError("denoiser", "kernel_size", cfg.kernel_size, "an odd integer (symmetric 'same' padding)")
    numbers(cfg, "denoiser", lambda v: 0 <= v < 1, "a probability in [0, 1)", "dropout")


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
    if not mult or any(not is_int(m) or m < 1 for m in mult):
        raise SettingError("denoiser", "channel_mult", list(mult), "a non-empty list of integers >= 1")
    if any(not is_int(level) or not 0 <= level < len(mult) for level in levels):
        raise SettingError("denoiser", "attention_levels", list(levels),
                           f"levels of channel_mult, each in 0..{len(mult) - 1}")
    widths = ", ".join(str(cfg.channels * m) for m in mult)
    for name in ("norm_groups", "heads"):
        value = getattr(cfg, name)
        if any(cfg.channels * m % value for m in mult):
            raise SettingError("denoiser", name, value, "a number that every level's width (channels x "
                               f"channel_mult: {widths}) is divisible by")


def check_diffusion_model(d: DiffusionConfig, den: DenoiserConfig, train: TrainConfig, where: str = "recipe") -> None:
    """The model's settings that must agree across sections; EmodiffError names the first that does not. The
    denoiser is built only for a pair it can train (emodiff/diffusion/objectives.py asks this too)."""
    if (den.kind == "flat") != (d.parameterization == "eps"):
        raise mismatch(where, "diffusion.parameterization", d.parameterization,
                       "eps with denoiser.kind flat (the paper's IDDPM), v or edm with denoiser.kind unet")
    multiple = 2 ** (len(den.channel_mult) - 1)  # the U-Net halves the frames between levels
    if den.kind == "unet" and train.crop_frames % multiple:
        raise mismatch(where, "train.crop_frames", train.crop_frames, f"0 or a multiple of {multiple} (the U-Net "
                       f"halves the frames {multiple.bit_length() - 1} times)")
    if d.parameterization != "eps" and d.skip == "wiener" and train.crop_frames % d.wiener_block:
        raise mismatch(where, "diffusion.wiener_block", d.wiener_block, f"a divisor of train.crop_frames "
                       f"({train.crop_frames}), the frames the Wiener skip is fitted on")
