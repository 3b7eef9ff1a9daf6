"""Generator families behind one small interface, so that no step asks which family made a run or a set.

``train`` (emodiff/train.py) owns the loop every family shares: data, validation split, the mel
normaliser, random streams, learning-rate warm-up, logging, checkpoints (data, with sha256), exact
resume, ``/runs`` provenance and multi-GPU processes. ``sample`` (emodiff/sample.py) owns what every
set shares: balanced conditions, text encoding, resumable batches, ``/synthetic`` provenance. A family
supplies only what differs, all of it in its own module:

- ``name``, ``sections`` and ``sample``: its name, its recipe sections (a dataclass with one field per YAML
  section of its own) and its ``sample`` section (the shared settings and its sampling options, checked);
- ``check(recipe, where)``: refuse a recipe whose sections do not agree, at load and before any work;
- ``sampled(recipe, options, where)``: the recipe with ``emodiff sample``'s flags applied and checked;
- ``architecture(recipe)``: the settings a resumed run must share with its checkpoint;
- ``check_data(recipe, text_dim, where)``: refuse data the recipe's model cannot take (the text vectors' size);
- ``normalizer(recipe, mel, seed)``: the map from stored mels to what the model learns (kept in checkpoints);
- ``trainer(setup, state)``: a :class:`Trainer` (one optimisation step, validation, its checkpoint part);
- ``drawer(recipe, state, device, where)``: a :class:`Drawer` that turns conditions and a seed into mels,
  with the sampling settings it records.

The types live here; emodiff/families.py names the families and a recipe's ``generator`` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from emodiff.batches import Batch, Batches
from emodiff.config import Recipe, RecipeFamily
from emodiff.diffusion.normalize import MelNormalizer


@dataclass(frozen=True)
class TrainSetup:
    """What a family's trainer is given: the recipe, its training examples and where it runs."""

    recipe: Recipe
    batches: Batches  # the training examples (normalised mels and their conditions)
    n_speakers: int  # training speakers; conditions index them 0..S-1 (S: an unseen speaker)
    device: torch.device
    world: int = 1  # processes under torchrun
    rank: int = 0


@dataclass(frozen=True)
class Conditions:
    """The conditions of one batch to draw: token vectors [B, L, D] and lengths [B], emotion [B] (0..3),
    speaker index [B] (into the run's training speakers) and, for a voice that is none of them, ``voice``
    [B, S]: coefficients over the S training speakers' embedding rows that replace the speaker's row
    (emodiff/voices.py; None: each sample speaks as its ``speaker``)."""

    tokens: np.ndarray
    lengths: np.ndarray
    emotion: torch.Tensor
    speaker: torch.Tensor
    voice: torch.Tensor | None = None

    def tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The conditions as a network takes them: tokens [B, L, D], mask [B, L] (True: a token), emotion, speaker,
        and voice when there is one (absent, not None, so that networks and wrappers see what they saw before)."""
        tok = torch.from_numpy(self.tokens).float().to(device)
        lengths = torch.from_numpy(np.asarray(self.lengths))
        mask = (torch.arange(tok.shape[1])[None, :] < lengths[:, None]).to(device)
        out = {"tokens": tok, "mask": mask, "emotion": self.emotion.to(device), "speaker": self.speaker.to(device)}
        if self.voice is not None:
            out["voice"] = self.voice.to(device)
        return out


class Trainer(Protocol):
    """One family's model(s) and optimiser(s) during training."""

    def step(self, batch: Batch, gen: torch.Generator, lr: float) -> dict[str, torch.Tensor]:
        """One optimisation step on ``batch`` (random draws from ``gen``) at learning rate ``lr``; returns
        metrics as 0-d tensors ("loss" first), read only when logged (no device sync per step)."""
        ...

    def validate(self, batches: list[Batch], seed: int) -> dict[str, float]:
        """Held-out metrics ("val_loss", "val_loss_ema") at fixed, seeded noise."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The family's part of a checkpoint: "model" (what generates), "ema" (its average), the rest."""
        ...

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        """Restore :meth:`state_dict` from the checkpoint at ``path`` (its name is in the errors)."""
        ...


class Drawer(Protocol):
    """A trained generator, ready to draw."""

    shape: tuple[int, int]  # (mel bands, frames) of one drawn segment
    config: dict[str, Any]  # the sampling settings that define the set (part of its config hash)
    attrs: dict[str, Any]  # what the set's attrs record about how it was drawn, "drawn_with" (one line) included

    def draw(self, conditions: Conditions, seed: int, index: int) -> np.ndarray:
        """Mels [B, *shape] in [-1, 1] for batch ``index``, from noise seeded by (seed, index) alone."""
        ...


class Family(RecipeFamily, Protocol):
    """A generator family (the module docstring says what each member is for); ``name``, ``sections``,
    ``sample`` and ``check`` are what recipe loading reads (:class:`emodiff.config.RecipeFamily`)."""

    def sampled(self, recipe: Recipe, options: Mapping[str, Any], where: str) -> Recipe:
        """``recipe`` with ``emodiff sample``'s flags ``options`` (None: not given) applied and checked, for the run
        at ``where``: the one place a sampling option is checked (most families: :func:`emodiff.config.sample_with`)."""
        ...

    def architecture(self, recipe: Recipe) -> dict[str, Any]: ...

    def check_data(self, recipe: Recipe, text_dim: int, where: str) -> None: ...

    def normalizer(self, recipe: Recipe, mel: Any, seed: int) -> MelNormalizer: ...

    def trainer(self, setup: TrainSetup, state: dict[str, Any] | None) -> Trainer: ...

    def drawer(self, recipe: Recipe, state: dict[str, Any], device: torch.device, where: Path) -> Drawer:
        """The drawer of the run whose checkpoint ``state`` was loaded from ``where``; ``recipe`` is the run's recipe
        as :meth:`sampled` made it (``state["recipe"]`` is the recipe it was trained with)."""
        ...
