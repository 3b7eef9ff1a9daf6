"""A toy store whose four emotion classes have distinct mel patterns, and a tiny recipe.

Every segment has a floor of -0.8 and a shared band at mel bins 60-79 (+0.6); class k adds a
thin band of 4 bins at 10 k + 5 (-0.4). The class marks are subtle on purpose, like emotion in
speech: once noise hides them (roughly the noisier 30 % of the process) only the condition
tells the classes apart, so a generator that draws the right mark for the class asked for has
learnt to use its text condition. (Classes that differ in bold features are readable from x_t
at almost every noise level, and a model then learns to ignore the condition except in the
last few steps, where an eps-predicting model learns slowest.) Segments are 32 frames long to
keep tests fast; nothing in train or sample depends on 256. Texts are embedded with the real
shipped MiniLM through ``emodiff.embed``, the path a user's data takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emodiff import store as st
from emodiff.config import DenoiserConfig, DiffusionConfig, Recipe, TrainConfig
from emodiff.embed import EmbedJob, embed
from emodiff.generators.diffusion import DiffusionSampleConfig, DiffusionSections
from emodiff.generators.gan import GanConfig, GanSampleConfig, GanSections

SPEAKERS = ("s1", "s2", "s3")


FRAMES = 32


def class_means(frames: int = FRAMES) -> np.ndarray:
    """The four class patterns [4, 80, frames]."""
    mel = np.full((4, 80, frames), -0.8, dtype=np.float32)
    mel[:, 60:80] = 0.6
    for k in range(4):
        mel[k, 10 * k + 5 : 10 * k + 9] = -0.4
    return mel


def make_toy_store(path: Path, per_class: int = 6) -> Path:
    """/corpora/toy (4 x per_class utterances, one segment each, 3 speakers) + its MiniLM embeddings."""
    emotion = np.repeat(np.arange(4), per_class).astype(np.int8)
    n = len(emotion)
    with st.write_group(path, "corpora/toy", config={"toy": per_class}) as g:
        st.write_table(g.create_group("utterances"), {
            "id": [f"u{i:03d}" for i in range(n)],
            "speaker": [SPEAKERS[i % len(SPEAKERS)] for i in range(n)],
            "gender": ["F" if i % 2 else "M" for i in range(n)],
            "session": [""] * n,
            "emotion": emotion,
            "text": [f"toy sentence number {i % 5}" for i in range(n)],
            "duration_s": np.full(n, 2.97, np.float32),
            "source_rate": np.full(n, 22050, np.int32),
            "path": [f"/toy/u{i:03d}.wav" for i in range(n)],
        })
        segs = g.create_group("segments")
        segs.create_dataset("mel", data=class_means()[emotion].astype(np.float16), chunks=(1, 80, FRAMES))
        segs.create_dataset("utt", data=np.arange(n, dtype=np.int32))
        segs.create_dataset("frames", data=np.full(n, FRAMES, np.int32))
        g.attrs["corpus"] = "toy"
    embed(EmbedJob(path, corpus=["toy"]))
    return path


def tiny_recipe(steps: int = 6, **train: object) -> Recipe:
    """A denoiser of a few thousand parameters on a 50-step process: seconds on a CPU."""
    return Recipe(
        name="tiny",
        generator="diffusion",
        sections=DiffusionSections(
            diffusion=DiffusionConfig(steps=50),
            denoiser=DenoiserConfig(channels=16, blocks_before=1, blocks_after=1, heads=2, time_dim=16,
                                    text_dim=384, text_hidden=16, cond_channels=8, norm_groups=4)),
        train=TrainConfig(**{"batch_size": 4, "steps": steps, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.9,
                             "val_fraction": 0.2, "val_every": 3, "log_every": 3, "checkpoint_every": 3,
                             **train}),  # type: ignore[arg-type]
        sample=DiffusionSampleConfig(steps=10, batch_size=4),
    )


def unet_recipe(steps: int = 6, parameterization: str = "edm", **train: object) -> Recipe:
    """A U-Net of about 100 k parameters with v or EDM preconditioning on 32-frame windows: seconds on a CPU."""
    return Recipe(
        name="unet",
        generator="diffusion",
        sections=DiffusionSections(
            diffusion=DiffusionConfig(parameterization=parameterization, learn_sigma=False),  # type: ignore[arg-type]
            denoiser=DenoiserConfig(kind="unet", channels=16, channel_mult=(1, 2), blocks_per_level=1,
                                    attention_levels=(1,), heads=2, norm_groups=4, emb_dim=32, text_dim=384)),
        train=TrainConfig(**{"batch_size": 8, "steps": steps, "lr": 2e-3, "warmup_steps": 2, "ema_decay": 0.99,
                             "ema_warmup": True, "cond_dropout": 0.15, "crop_frames": FRAMES,
                             "val_fraction": 0.2, "val_every": 3, "log_every": 3, "checkpoint_every": 3,
                             **train}),  # type: ignore[arg-type]
        sample=DiffusionSampleConfig(steps=12, sampler="dpmpp-2m", batch_size=8, guidance=1.0),
    )


def gan_recipe(steps: int = 6, gan: dict | None = None, **train: object) -> Recipe:
    """A conditional GAN of about 60 k parameters (two levels over 32-frame segments): seconds on a CPU."""
    return Recipe(
        name="gan",
        generator="gan",
        sections=GanSections(gan=GanConfig(**{"latent_dim": 8, "channels": 32, "levels": 2, "emb_dim": 16,
                                              "disc_channels": 16, "kernel_size": 3, "lr_d": 2e-3,
                                              **(gan or {})})),  # type: ignore[arg-type]
        train=TrainConfig(**{"batch_size": 8, "steps": steps, "lr": 1e-3, "warmup_steps": 0, "ema_decay": 0.9,
                             "ema_warmup": True, "val_fraction": 0.2, "val_every": 3, "log_every": 3,
                             "checkpoint_every": 3, **train}),  # type: ignore[arg-type]
        sample=GanSampleConfig(batch_size=8),
    )
