"""The conditional GAN family (``generator: gan``): the GAN baselines of the paper's tables 2 and 3, in the
same harness as the diffusion model, so the two are compared on one store, one set of folds and one
classifier.

What it follows: a conditional GAN over emotional speech features (Sahu et al., Interspeech 2018),
with a 1-D convolutional generator over frames, a projection discriminator (Miyato & Koyama 2018) with
spectral normalisation (Miyato et al. 2018), the hinge loss or WGAN-GP (Gulrajani et al. 2017), Adam
(0, 0.9) at two learning rates (Heusel et al. 2017), an EMA of the generator's weights that draws
(Yazici et al. 2019), and, as an option, the mixup GAN of Latif et al. (Interspeech 2020), whose
discriminator also sees mixed real pairs (emodiff/gan/).

One training step (the loop of emodiff/train.py calls it) is ``gan.d_steps`` discriminator updates on
the batch's real mels against G(z) with the batch's conditions, then one generator update. Every
random draw (z, mixup, the penalty's interpolation) comes from the loop's seeded stream, so a
resumed run ends with the weights of an uninterrupted one. The GAN trains in float32 on any device
(``train.bf16`` is the diffusion family's), in one process.

Its recipe section is ``gan`` (:class:`GanConfig`); its ``sample`` section has only the settings every family
shares (:class:`GanSampleConfig`): it draws in one pass, with no sampling options of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from emodiff.batches import Batch
from emodiff.checkpoint import load_weights
from emodiff.config import Recipe, SampleConfig, SettingError, integers, mismatch, numbers, sample_with
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.ema import EMA
from emodiff.errors import EmodiffError
from emodiff.gan.losses import d_hinge, d_wasserstein, g_adversarial, gradient_penalty, mix_reals
from emodiff.gan.networks import Discriminator, Generator
from emodiff.generators.base import Conditions, TrainSetup

BETAS = (0.0, 0.9)  # Adam's for both networks (SAGAN, BigGAN)
GanLoss = Literal["hinge", "wgan-gp"]


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
        integers(self, "gan", 1, "mel_channels", "latent_dim", "channels", "emb_dim", "disc_channels",
                  "text_dim", "d_steps")
        integers(self, "gan", 0, "levels")
        if not (isinstance(self.kernel_size, int) and self.kernel_size % 2 == 1 and self.kernel_size >= 1):
            raise SettingError("gan", "kernel_size", self.kernel_size, "an odd integer >= 1")
        numbers(self, "gan", lambda v: v > 0, "a number > 0", "lr_d")
        numbers(self, "gan", lambda v: v >= 0, "a number >= 0", "gp_weight", "mixup")


@dataclass(frozen=True)
class GanSections:
    """The GAN family's own recipe section, by its YAML key."""

    gan: GanConfig = field(default_factory=GanConfig)


@dataclass(frozen=True)
class GanSampleConfig(SampleConfig):
    """The GAN's ``sample`` section: the settings every family shares, and no sampling options."""

    def recipe_dict(self) -> dict[str, Any]:
        """What a GAN recipe records of it. Until sampling options were each family's own, every recipe had the
        diffusion sampler's four; a GAN's did nothing, and recipes/gan.yaml set them as below. They are
        recorded still, so that the config hashes of stored GAN runs hold (a recipe reads them back and drops
        them: emodiff.config.build_recipe)."""
        return {"steps": 1, "sampler": "ddpm", "eta": 0.0, "batch_size": self.batch_size, "guidance": 0.0,
                "voices": self.voices}


class GanFamily:
    name = "gan"
    sections = GanSections
    sample = GanSampleConfig

    def check(self, recipe: Recipe, where: str = "recipe") -> None:
        """Whole segments fit the levels, and no condition dropout (the GAN has no guidance to train an
        unconditional model for)."""
        multiple, train = 2 ** recipe.gan.levels, recipe.train
        if train.crop_frames % multiple:
            raise mismatch(where, "train.crop_frames", train.crop_frames, f"0 or a multiple of {multiple} (the "
                           f"GAN's {recipe.gan.levels} levels halve the frames {recipe.gan.levels} times)")
        if train.cond_dropout:
            raise mismatch(where, "train.cond_dropout", train.cond_dropout, "0 with generator gan (it has no "
                           "guidance to train an unconditional model for)")

    def sampled(self, recipe: Recipe, options: Mapping[str, Any], where: str) -> Recipe:
        """Only the shared flags (--batch-size, --voices): any other is refused by name."""
        return sample_with(recipe, options, where, self.check)

    def architecture(self, recipe: Recipe) -> dict[str, Any]:
        return {"gan": dataclasses.asdict(recipe.gan)}

    def check_data(self, recipe: Recipe, text_dim: int, where: str) -> None:
        if recipe.gan.text and text_dim != recipe.gan.text_dim:
            raise EmodiffError(f"recipe gan.text_dim is {recipe.gan.text_dim} but {where} are {text_dim}-dimensional; "
                               "set text_dim in the recipe")

    def normalizer(self, recipe: Recipe, mel: Any, seed: int) -> MelNormalizer:
        """Per-bin centring and scaling fitted on the training mels: both networks see unit-scale inputs."""
        return MelNormalizer.fit(mel, seed=seed)

    def trainer(self, setup: TrainSetup, state: dict[str, Any] | None) -> GanTrainer:
        return GanTrainer(setup)

    def drawer(self, recipe: Recipe, state: dict[str, Any], device: torch.device, where: Path) -> GanDrawer:
        return GanDrawer(recipe, state, device, where)


GAN = GanFamily()


def build_generator(recipe: Recipe, n_speakers: int) -> Generator:
    g = recipe.gan
    return Generator(g.mel_channels, g.latent_dim, g.channels, g.levels, g.emb_dim, g.kernel_size, n_speakers,
                     g.text_dim if g.text else None)


def build_discriminator(recipe: Recipe, n_speakers: int) -> Discriminator:
    g = recipe.gan
    return Discriminator(g.mel_channels, g.disc_channels, g.levels, g.emb_dim, g.kernel_size, n_speakers,
                         g.text_dim if g.text else None, sn=g.spectral_norm)


def _frames_fit(frames: int, recipe: Recipe, where: str) -> None:
    multiple = 2 ** recipe.gan.levels
    if frames % multiple:
        raise EmodiffError(f"{where}: {frames}-frame segments, but the GAN's {recipe.gan.levels} levels need a "
                           f"multiple of {multiple} frames (set train.crop_frames or gan.levels)")


class GanTrainer:
    """Generator, its EMA, discriminator, their two Adam optimisers."""

    def __init__(self, setup: TrainSetup) -> None:
        if setup.world > 1:
            raise EmodiffError("the GAN family trains in one process; run `emodiff train --recipe gan` without "
                               "torchrun")
        recipe, cfg, device = setup.recipe, setup.recipe.train, setup.device
        self.recipe, self.device, self.n_speakers = recipe, device, setup.n_speakers
        self.model = build_generator(recipe, setup.n_speakers).to(device)
        self.disc = build_discriminator(recipe, setup.n_speakers).to(device)
        self.ema = EMA(self.model, cfg.ema_decay, warmup=cfg.ema_warmup)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=recipe.gan.lr_d, betas=BETAS)
        self.frames = int(setup.batches.draw(1, torch.Generator().manual_seed(0), 0.0)[0].shape[-1])
        _frames_fit(self.frames, recipe, "train")

    def _z(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn((n, *self.model.latent_shape(self.frames)), generator=gen).to(self.device)

    def _d_loss(self, x: torch.Tensor, cond: dict[str, torch.Tensor], gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The discriminator's loss on reals ``x`` (and, in the mixup GAN, mixed reals) against G(z)."""
        g = self.recipe.gan
        with torch.no_grad():
            fake = self.model(self._z(len(x), gen), cond)
        real_scores = self.disc(x, cond)
        if g.mixup > 0:
            mixed, mixed_cond = mix_reals(x, cond, g.mixup, self.n_speakers, gen, g.text)
            real_scores = torch.cat([real_scores, self.disc(mixed, {**cond, **mixed_cond})])
        fake_scores = self.disc(fake, cond)
        if g.loss == "hinge":
            loss = d_hinge(real_scores, fake_scores)
        else:
            loss = d_wasserstein(real_scores, fake_scores) + g.gp_weight * gradient_penalty(
                lambda xh: self.disc(xh, cond), x, fake, gen)
        return loss, real_scores.detach().mean(), fake_scores.detach().mean()

    def step(self, batch: Batch, gen: torch.Generator, lr: float) -> dict[str, torch.Tensor]:
        """``gan.d_steps`` discriminator updates, then one generator update; ``lr`` (the warmed-up train.lr)
        scales both learning rates alike."""
        x, cond = batch
        scale = lr / self.recipe.train.lr
        for group in self.opt.param_groups:
            group["lr"] = lr
        for group in self.opt_d.param_groups:
            group["lr"] = self.recipe.gan.lr_d * scale
        clip = self.recipe.train.grad_clip
        for _ in range(self.recipe.gan.d_steps):
            d_loss, d_real, d_fake = self._d_loss(x, cond, gen)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), clip)
            self.opt_d.step()
        g_loss = g_adversarial(self.disc(self.model(self._z(len(x), gen), cond), cond))
        self.opt.zero_grad(set_to_none=True)
        g_loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self.ema.update(self.model)
        return {"loss": d_loss.detach(), "g_loss": g_loss.detach(), "d_real": d_real, "d_fake": d_fake,
                "grad_norm": grad_norm}

    @torch.no_grad()
    def validate(self, batches: list[Batch], seed: int) -> dict[str, float]:
        """On held-out examples, with noise seeded by ``seed``: "val_loss" ("val_loss_ema") is the mean absolute
        gap between the per-bin means and standard deviations of the generator's (its EMA's) mels and the real
        ones, in normalised units (0: the same first two moments; a cheap check, not a quality metric);
        "val_d_real" and "val_d_fake" are the discriminator's mean scores on the held-out reals and the EMA's
        mels (a widening gap is the discriminator memorising its training set)."""
        gen = torch.Generator().manual_seed(seed + 777)
        real = torch.cat([x for x, _ in batches])
        out: dict[str, float] = {}
        self.disc.eval()  # spectral norm's power iteration runs in training mode only: validation changes nothing
        for key, net in (("val_loss", self.model), ("val_loss_ema", self.ema.model)):
            was = net.training
            net.eval()
            fake = torch.cat([net(self._z(len(x), gen), c) for x, c in batches])
            net.train(was)
            out[key] = _moment_gap(real, fake)
            if key == "val_loss_ema":
                out["val_d_real"] = float(torch.cat([self.disc(x, c) for x, c in batches]).mean())
                fakes = fake.split([len(x) for x, _ in batches])
                out["val_d_fake"] = float(torch.cat([self.disc(f, c) for f, (_, c) in zip(fakes, batches,
                                                                                          strict=True)]).mean())
        self.disc.train()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
                "discriminator": self.disc.state_dict(), "optimizer": self.opt.state_dict(),
                "optimizer_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        load_weights(self.model, state["model"], path)
        load_weights(self.ema.model, state["ema"], path)
        load_weights(self.disc, state["discriminator"], path)
        self.opt.load_state_dict(state["optimizer"])
        self.opt_d.load_state_dict(state["optimizer_d"])
        self.ema.updates = int(state["step"])


def _moment_gap(real: torch.Tensor, fake: torch.Tensor) -> float:
    """mean_m |mu_fake,m - mu_real,m| + |sd_fake,m - sd_real,m| over mel bins m; x [N, M, F]."""
    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        return flat.mean(1), flat.std(1)

    (mr, sr), (mf, sf) = moments(real.float()), moments(fake.float())
    return float((mf - mr).abs().mean() + (sf - sr).abs().mean())


class GanDrawer:
    """The EMA generator: one pass from noise z, seeded by (seed, batch index), to mels."""

    def __init__(self, recipe: Recipe, state: dict[str, Any], device: torch.device, where: Path) -> None:
        frames = int(state.get("segment_frames", 256))
        _frames_fit(frames, recipe, str(where))
        self.shape = (recipe.gan.mel_channels, frames)
        self.config: dict[str, Any] = {"weights": "ema", "latent": "standard normal"}
        g = recipe.gan
        self.attrs: dict[str, Any] = {
            "weights": "ema", "loss": g.loss, "mixup": g.mixup,
            "drawn_with": f"gan ({g.loss}{f', mixup {g.mixup:g}' if g.mixup else ''}), EMA generator, one pass"}
        self.model = build_generator(recipe, len(state["training_speakers"]))
        load_weights(self.model, state["ema"], where)
        self.model.to(device).eval()
        self.norm = MelNormalizer.from_state(state["normalizer"])
        self.device = device

    @torch.no_grad()
    def draw(self, conditions: Conditions, seed: int, index: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
        n = len(conditions.lengths)
        z = torch.randn((n, *self.model.latent_shape(self.shape[1])), generator=gen).to(self.device)
        return self.norm.inverse(self.model(z, conditions.tensors(self.device)).float()).clamp(-1, 1).cpu().numpy()
