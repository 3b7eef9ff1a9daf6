"""The diffusion family: the paper's IDDPM (``eps``) and the preconditioned v/EDM process, one interface.

Training: the objective of emodiff/diffusion/objectives.py on the denoiser it builds, AdamW, gradient clipping,
EMA; for v/EDM, sigma_data and the Wiener skip's filter are measured on training examples first and
kept in the checkpoint. Sampling: the EMA denoiser with the recipe's (or the flags') sampler, steps,
DDIM eta and classifier-free guidance.

Its recipe sections are ``diffusion`` and ``denoiser`` (emodiff/config/generator.py holds them: the building
blocks of emodiff/diffusion/ take them), and its ``sample`` section holds its sampling options
(:class:`DiffusionSampleConfig`); :meth:`DiffusionFamily.check` is where they must agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch

from emodiff.batches import Batch, Batches
from emodiff.checkpoint import load_weights
from emodiff.config import (
    NOISY_SAMPLERS,
    DenoiserConfig,
    DiffusionConfig,
    Recipe,
    Sampler,
    SettingError,
    Voices,
    check_diffusion_model,
    check_shared_sample,
    integers,
    mismatch,
    numbers,
    override,
    sample_with,
)
from emodiff.devices import autocast_forward
from emodiff.diffusion import create_diffusion
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.diffusion.objectives import build_denoiser, load_wiener, make_objective
from emodiff.diffusion.preconditioned import PreconditionedDiffusion
from emodiff.diffusion.wiener import BlockWiener
from emodiff.ema import EMA
from emodiff.errors import EmodiffError
from emodiff.generators.base import Conditions, TrainSetup

WIENER_EXAMPLES = 2048  # training examples the Wiener filter's moments are estimated from
FLAT_KEYS = ("tokens", "mask")  # the paper's denoiser is conditioned on the text alone


@dataclass(frozen=True)
class DiffusionSections:
    """The diffusion family's own recipe sections, by their YAML keys."""

    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)


@dataclass(frozen=True)
class DiffusionSampleConfig:
    """The diffusion family's ``sample`` section: its sampling options and the settings every family shares
    (emodiff.config.SampleConfig), in the order recipes have always recorded them. Its ranges are the one check
    of each option, from a recipe or a flag of ``emodiff sample`` alike."""

    steps: int = 100  # respaced steps S
    sampler: Sampler = "ddpm"
    eta: float = 0.0  # ddim's noise (1: ddpm), or dpmpp-2m-sde's (0: dpmpp-2m)
    batch_size: int = 64
    guidance: float = 0.0  # classifier-free guidance W: D = D_cond + W (D_cond - D_uncond); 0 = none
    voices: Voices = "training"

    def __post_init__(self) -> None:
        integers(self, "sample", 1, "steps")
        if self.sampler not in get_args(Sampler):
            raise SettingError("sample", "sampler", self.sampler, f"one of {', '.join(get_args(Sampler))}")
        check_shared_sample(self)
        numbers(self, "sample", lambda v: 0 <= v <= 1, "a number in [0, 1] (the share of fresh noise ddim and "
                 "dpmpp-2m-sde inject at each step; 0: none)", "eta")
        numbers(self, "sample", lambda v: 0 <= v <= 20, "a number in [0, 20]", "guidance")


class DiffusionFamily:
    name = "diffusion"
    sections = DiffusionSections
    sample = DiffusionSampleConfig

    def check(self, recipe: Recipe, where: str = "recipe") -> None:
        """The sections must agree (the flat denoiser predicts eps, the U-Net v or edm, ...), and the sample
        section must ask only what the model can draw (:func:`check_sampling`)."""
        check_diffusion_model(recipe.diffusion, recipe.denoiser, recipe.train, where)
        check_sampling(recipe, where)

    def sampled(self, recipe: Recipe, options: Mapping[str, Any], where: str) -> Recipe:
        """The sample section's flags, and ``sigma_min`` (a v/edm model's ``diffusion.sigma_min``: the last noise
        level its sampler visits, returning D there)."""
        options = dict(options)
        sigma_min = options.pop("sigma_min", None)
        if sigma_min is not None:
            if recipe.diffusion.parameterization == "eps":
                raise EmodiffError(f"--sigma-min {sigma_min}: the IDDPM (eps) model of {where} samples over its "
                                   "discrete timesteps; --sigma-min is for v/edm models")
            # The last noise levels (sigma < ~0.2) add frame-to-frame jitter no real mel has (docs/generator.md,
            # "Where the jitter comes from"): stopping there and returning D(x; sigma_min) leaves it out.
            recipe = override(recipe, "--sigma-min", section="diffusion", sigma_min=sigma_min)
        out = sample_with(recipe, options, where, self.check)
        eta, sampler = options.get("eta"), out.sample.sampler
        if eta and sampler not in NOISY_SAMPLERS:  # else a set would record an eta that drew nothing
            raise EmodiffError(f"--eta {eta:g}: the {sampler} sampler injects no noise for eta to scale; eta is for "
                               f"{' and '.join(NOISY_SAMPLERS)} (pass --sampler with it)")
        return out

    def architecture(self, recipe: Recipe) -> dict[str, Any]:
        return {"diffusion": dataclasses.asdict(recipe.diffusion), "denoiser": dataclasses.asdict(recipe.denoiser)}

    def check_data(self, recipe: Recipe, text_dim: int, where: str) -> None:
        if text_dim != recipe.denoiser.text_dim:
            raise EmodiffError(f"recipe denoiser.text_dim is {recipe.denoiser.text_dim} but {where} are "
                               f"{text_dim}-dimensional; set text_dim in the recipe")

    def normalizer(self, recipe: Recipe, mel: Any, seed: int) -> MelNormalizer:
        """Per-bin centring and scaling fitted on the training mels (``diffusion.normalize: center``), or none."""
        if recipe.diffusion.normalize == "center":
            return MelNormalizer.fit(mel, seed=seed)
        return MelNormalizer.identity(recipe.denoiser.mel_channels)

    def trainer(self, setup: TrainSetup, state: dict[str, Any] | None) -> DiffusionTrainer:
        return DiffusionTrainer(setup, state)

    def drawer(self, recipe: Recipe, state: dict[str, Any], device: torch.device, where: Path) -> DiffusionDrawer:
        return DiffusionDrawer(recipe, state, device, where)


def check_sampling(recipe: Recipe, where: str = "recipe") -> None:
    """The IDDPM (eps) model draws with ddpm or ddim, in at most its diffusion steps, unguided (trained without
    condition dropout) and in the training voices (its flat denoiser has no speaker embedding)."""
    d, s = recipe.diffusion, recipe.sample
    if d.parameterization != "eps":
        return
    if s.sampler not in ("ddpm", "ddim"):
        raise mismatch(where, "sample.sampler", s.sampler, "ddpm or ddim with diffusion.parameterization eps")
    if s.steps > d.steps:
        raise mismatch(where, "sample.steps", s.steps, f"at most diffusion.steps ({d.steps})")
    if s.guidance:
        raise mismatch(where, "sample.guidance", s.guidance, "0 with diffusion.parameterization eps (trained "
                       "without condition dropout, it has no unconditional model)")
    if s.voices != "training":
        raise mismatch(where, "sample.voices", s.voices, "training with diffusion.parameterization eps (its flat "
                       "denoiser has no speaker embedding)")


DIFFUSION = DiffusionFamily()


def _conditioned(net: Callable[..., torch.Tensor], recipe: Recipe) -> Callable[..., torch.Tensor]:
    """``net`` given only the conditions its denoiser takes."""
    if recipe.denoiser.kind != "flat":
        return net
    return lambda x, t, **kw: net(x, t, **{k: kw[k] for k in FLAT_KEYS})


class DiffusionTrainer:
    """The denoiser, its EMA and optimiser, and the objective's state (IDDPM's timestep sampler)."""

    def __init__(self, setup: TrainSetup, state: dict[str, Any] | None) -> None:
        recipe, cfg, device = setup.recipe, setup.recipe.train, setup.device
        self.recipe, self.world, self.grad_clip = recipe, setup.world, cfg.grad_clip
        self.sigma_data, self.wiener = data_moments(recipe, state, setup.batches, cfg.seed)
        self.objective = make_objective(recipe, self.sigma_data, self.wiener)
        self.model = build_denoiser(recipe, setup.n_speakers).to(device)
        self.ema = EMA(self.model, cfg.ema_decay, warmup=cfg.ema_warmup)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        net: torch.nn.Module = self.model
        if setup.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile and device.type == "cuda":
            net = torch.compile(net)
        self.forward = _conditioned(autocast_forward(net, device, cfg.bf16), recipe)
        self.ema_forward = _conditioned(autocast_forward(self.ema.model, device, cfg.bf16), recipe)
        self.device = device

    def step(self, batch: Batch, gen: torch.Generator, lr: float) -> dict[str, torch.Tensor]:
        for group in self.opt.param_groups:
            group["lr"] = lr
        x0, kwargs = batch
        loss, losses = self.objective.losses(self.forward, x0, kwargs, gen, self.device)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.opt.step()
        self.ema.update(self.model)
        self.objective.after_step(losses, self.world)
        return {"loss": loss.detach(), "mse": losses["mse"].detach().mean(),
                **({"vb": losses["vb"].detach().mean()} if "vb" in losses else {}), "grad_norm": grad_norm}

    def validate(self, batches: list[Batch], seed: int) -> dict[str, float]:
        return {"val_loss": self.objective.val_loss(self.forward, batches, seed),
                "val_loss_ema": self.objective.val_loss(self.ema_forward, batches, seed)}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
                "optimizer": self.opt.state_dict(), "sampler": self.objective.state_dict(),
                "sigma_data": float(self.sigma_data),
                "wiener": self.wiener.state_dict() if self.wiener is not None else None}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        load_weights(self.model, state["model"], path)
        load_weights(self.ema.model, state["ema"], path)
        self.opt.load_state_dict(state["optimizer"])
        self.objective.load_state_dict(state.get("sampler"))
        self.ema.updates = int(state["step"])  # one EMA update per step: the warm-up resumes where it was


def data_moments(recipe: Recipe, state: dict[str, Any] | None, batches: Batches,
                 seed: int) -> tuple[float, BlockWiener | None]:
    """EDM's sigma_data and the Wiener skip's filter: the checkpoint's on resume; else sigma_data from the
    recipe when set, and what is needed measured on (normalised) training examples."""
    if state is not None:
        return float(state.get("sigma_data") or 1.0), load_wiener(state)
    d = recipe.diffusion
    need_sigma = d.parameterization == "edm" and d.sigma_data == 0
    need_wiener = d.parameterization != "eps" and d.skip == "wiener"
    x0 = torch.cat([x for x, _ in batches.fixed(WIENER_EXAMPLES, seed)]) if need_sigma or need_wiener else None
    sigma_data = float(x0.double().std()) if need_sigma and x0 is not None else (d.sigma_data or 1.0)
    if need_wiener and x0 is not None:
        if x0.shape[2] % d.wiener_block:
            raise EmodiffError(f"diffusion.wiener_block {d.wiener_block} does not divide the {x0.shape[2]} training "
                               "frames (train.crop_frames or the segment length)")
        return sigma_data, BlockWiener.fit(x0.cpu(), d.wiener_block)
    return sigma_data, None


class DiffusionDrawer:
    """The EMA denoiser and the sampler the recipe asks for (with the flags, checked: DiffusionFamily.sampled)."""

    def __init__(self, recipe: Recipe, state: dict[str, Any], device: torch.device, where: Path) -> None:
        s, param = recipe.sample, recipe.diffusion.parameterization
        self.sampler, self.steps, self.eta, self.guidance = s.sampler, s.steps, s.eta, s.guidance
        self.sigma_min = recipe.diffusion.sigma_min  # the recipe's, or --sigma-min's (DiffusionFamily.sampled)
        self.shape = (recipe.denoiser.mel_channels, int(state.get("segment_frames", 256)))
        self.config: dict[str, Any] = {"steps": self.steps, "sampler": self.sampler, "eta": self.eta,
                                       **({"guidance": self.guidance} if param != "eps" else {})}
        trained = state["recipe"].get("diffusion", {}).get("sigma_min", DiffusionConfig.sigma_min)
        moved = self.sigma_min != trained  # only then in the config: older sets keep their hash
        if moved:
            self.config["sigma_min"] = self.sigma_min
        noisy = self.sampler in NOISY_SAMPLERS
        said = [self.sampler, f"{self.steps} steps"] + ([f"eta {self.eta:g}"] if noisy else []) + (
            [f"guidance {self.guidance:g}"] if self.guidance else []) + (
            [f"sigma_min {self.sigma_min:g}"] if moved else [])
        self.attrs: dict[str, Any] = {"sampler": self.sampler, "steps": self.steps, "eta": self.eta,
                                      "guidance": self.guidance, "sigma_min": self.sigma_min,
                                      "parameterization": param,
                                      "drawn_with": f"{param} " + ", ".join(said)}
        model = build_denoiser(recipe, len(state["training_speakers"]))
        load_weights(model, state["ema"], where)
        self.forward = _conditioned(autocast_forward(model.to(device).eval(), device, recipe.train.bf16), recipe)
        self.norm = (MelNormalizer.from_state(state["normalizer"]) if state.get("normalizer") is not None
                     else MelNormalizer.identity(recipe.denoiser.mel_channels))
        if param == "eps":
            self.diffusion: Any = create_diffusion(recipe.diffusion, respace=self.steps,
                                                   clip_bounds=self.norm.bounds())
        else:
            sigma_data = float(state.get("sigma_data") or 1.0)
            self.diffusion = PreconditionedDiffusion.from_config(recipe.diffusion, sigma_data, load_wiener(state))
        self.device = device

    @torch.no_grad()
    def draw(self, conditions: Conditions, seed: int, index: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
        kwargs = conditions.tensors(self.device)
        noise = torch.randn((len(conditions.lengths), *self.shape), generator=gen).to(self.device)
        if isinstance(self.diffusion, PreconditionedDiffusion):
            denoise = guided_denoiser(self.forward, self.diffusion, kwargs, self.guidance, self.norm)
            x = self.diffusion.sample_loop(denoise, noise, self.steps, sampler=self.sampler, eta=self.eta,
                                           generator=gen)
        elif self.sampler == "ddim":
            x = self.diffusion.ddim_sample_loop(self.forward, noise.shape, model_kwargs=kwargs, eta=self.eta,
                                                noise=noise, generator=gen)
        else:
            x = self.diffusion.p_sample_loop(self.forward, noise.shape, model_kwargs=kwargs, noise=noise,
                                             generator=gen)
        return self.norm.inverse(x.float()).clamp(-1, 1).cpu().numpy()


def guided_denoiser(model: Callable[..., torch.Tensor], diffusion: PreconditionedDiffusion,
                    kwargs: dict[str, torch.Tensor], guidance: float, norm: MelNormalizer
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """D(x; sigma) with classifier-free guidance D_c + W (D_c - D_u), the two in one batch of 2B, and the
    estimate clamped to the data's range (per bin, after centring) so that guidance cannot push it out."""
    lo, hi = norm.bounds()

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if guidance == 0:
            d = diffusion.denoise(model, x, sigma, **kwargs)
        else:
            both = {k: torch.cat([v, v]) for k, v in kwargs.items()}
            both["uncond"] = torch.cat([torch.zeros(len(x), dtype=torch.bool),
                                        torch.ones(len(x), dtype=torch.bool)]).to(x.device)
            d_c, d_u = diffusion.denoise(model, torch.cat([x, x]), torch.cat([sigma, sigma]), **both).chunk(2)
            d = d_c + guidance * (d_c - d_u)
        return torch.maximum(torch.minimum(d, hi.to(d)), lo.to(d))

    return denoise
