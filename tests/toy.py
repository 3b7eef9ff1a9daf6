"""A toy store whose four emotion classes have distinct mel patterns, and a tiny recipe.

Class k's segments are -0.8 everywhere except a band of 20 mel bins starting at 20 k, at +0.6,
plus a little noise: a generator that heeds its condition draws the band of the class asked
for. Texts are embedded with the real shipped MiniLM through ``emodiff.embed``, so training and
sampling run on exactly the path a user's data takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emodiff import store as st
from emodiff.config import DenoiserConfig, DiffusionConfig, Recipe, SampleConfig, TrainConfig
from emodiff.embed import EmbedConfig, embed

SPEAKERS = ("s1", "s2", "s3")


def band(k: int) -> slice:
    return slice(20 * k, 20 * k + 20)


def toy_mels(emotion: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mel = np.full((len(emotion), 80, 256), -0.8, dtype=np.float32)
    for i, k in enumerate(emotion):
        mel[i, band(int(k))] = 0.6
    mel += 0.02 * rng.standard_normal(mel.shape).astype(np.float32)
    return mel.clip(-1, 1)


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
        segs.create_dataset("mel", data=toy_mels(emotion).astype(np.float16), chunks=(1, 80, 256))
        segs.create_dataset("utt", data=np.arange(n, dtype=np.int32))
        segs.create_dataset("frames", data=np.full(n, 256, np.int32))
        g.attrs["corpus"] = "toy"
    embed(path, EmbedConfig(corpus=["toy"]))
    return path


def tiny_recipe(steps: int = 6, **train: object) -> Recipe:
    """A denoiser of a few thousand parameters on a 50-step process: seconds on a CPU."""
    return Recipe(
        name="tiny",
        diffusion=DiffusionConfig(steps=50),
        denoiser=DenoiserConfig(channels=16, blocks_before=1, blocks_after=1, heads=2, time_dim=16,
                                text_dim=384, text_hidden=16, cond_channels=8, norm_groups=4),
        train=TrainConfig(**{"batch_size": 4, "steps": steps, "lr": 1e-3, "warmup_steps": 2, "ema_decay": 0.9,
                             "val_fraction": 0.2, "val_every": 3, "log_every": 3, "checkpoint_every": 3,
                             **train}),  # type: ignore[arg-type]
        sample=SampleConfig(steps=10, batch_size=4),
    )
