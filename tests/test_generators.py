"""The generator interface: a third family is one module plus one registry line, and plugs into train, resume,
sample and classify unchanged.

The family here is deliberately trivial (a learnt mel per emotion plus seeded noise) and all of it is in this
module: its name, its recipe section ``toy``, its sampling option ``spread`` and their checks, its trainer and
drawer. The fixture adds its line to emodiff/families.py's registry and nothing else; what is tested is that
recipe loading, sampling flags, every step and the experiment texts take it from there, and that the loop's
guarantees (checkpoints as data, exact resume, provenance in /runs and /synthetic) hold for any family.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from toy import tiny_recipe

from emodiff import generators
from emodiff import store as st
from emodiff.checkpoint import load_checkpoint
from emodiff.classify import ClassifyJob, classify
from emodiff.config import Recipe, SampleConfig, mismatch, numbers, sample_with
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.ema import EMA
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment, Experiment
from emodiff.families import FAMILIES
from emodiff.generators import Conditions, TrainSetup
from emodiff.sample import SampleJob, sample
from emodiff.ser.classifier import ClassifierConfig
from emodiff.train import TrainJob, train


@dataclass(frozen=True)
class MeanConfig:
    """The toy family's section ``toy``: the noise its training step adds to the targets."""

    jitter: float = 0.01

    def __post_init__(self) -> None:
        numbers(self, "toy", lambda v: v >= 0, "a number >= 0", "jitter")


@dataclass(frozen=True)
class MeanSections:
    toy: MeanConfig = field(default_factory=MeanConfig)


@dataclass(frozen=True)
class MeanSample(SampleConfig):
    """The shared sample settings and the toy's one sampling option."""

    spread: float = 0.05  # the noise added to each drawn mean

    def __post_init__(self) -> None:
        super().__post_init__()
        numbers(self, "sample", lambda v: 0 <= v <= 1, "a number in [0, 1]", "spread")


class _MeanTrainer:
    def __init__(self, setup: TrainSetup, state: dict[str, Any] | None) -> None:
        x0, _ = setup.batches.draw(1, torch.Generator().manual_seed(0), 0.0)
        self.model = torch.nn.Embedding(4, x0[0].numel())
        self.ema = EMA(self.model, 0.5)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=setup.recipe.train.lr)
        self.jitter = setup.recipe.toy.jitter

    def step(self, batch, gen, lr):  # type: ignore[no-untyped-def]
        x0, cond = batch
        for group in self.opt.param_groups:
            group["lr"] = lr
        noise = self.jitter * torch.randn(x0.shape, generator=gen)  # from the loop's stream, as a family may
        loss = ((self.model(cond["emotion"]).view_as(x0) - x0 - noise) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.ema.update(self.model)
        return {"loss": loss.detach()}

    def validate(self, batches, seed):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            errs = [((self.ema.model(c["emotion"]).view_as(x) - x) ** 2).mean().item() for x, c in batches]
        return {"val_loss": float(np.mean(errs))}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
                "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])


class _MeanDrawer:
    def __init__(self, recipe: Recipe, state: dict[str, Any]) -> None:
        self.weights = state["ema"]["weight"]
        self.shape = (80, int(state["segment_frames"]))
        self.spread = recipe.sample.spread
        self.config = {"spread": self.spread}
        self.attrs = {"spread": self.spread, "drawn_with": f"mean + noise {self.spread:g}"}
        self.norm = MelNormalizer.from_state(state["normalizer"])

    def draw(self, conditions: Conditions, seed: int, index: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
        x = self.weights[conditions.emotion].view(-1, *self.shape)
        x = x + self.spread * torch.randn(x.shape, generator=gen)
        return self.norm.inverse(x).clamp(-1, 1).numpy()


class MeanFamily:
    name = "toy"
    sections = MeanSections
    sample = MeanSample

    def check(self, recipe, where="recipe"):  # type: ignore[no-untyped-def]
        if recipe.train.crop_frames:
            raise mismatch(where, "train.crop_frames", recipe.train.crop_frames, "0 with generator toy (one mean per "
                           "whole segment)")

    def sampled(self, recipe: Recipe, options: Mapping[str, Any], where: str) -> Recipe:
        return sample_with(recipe, options, where, self.check)

    def architecture(self, recipe):  # type: ignore[no-untyped-def]
        return {"toy": dataclasses.asdict(recipe.toy)}

    def check_data(self, recipe, text_dim, where):  # type: ignore[no-untyped-def]
        pass

    def normalizer(self, recipe, mel, seed):  # type: ignore[no-untyped-def]
        return MelNormalizer.identity(int(mel.shape[1]))

    def trainer(self, setup, state):  # type: ignore[no-untyped-def]
        return _MeanTrainer(setup, state)

    def drawer(self, recipe, state, device, where):  # type: ignore[no-untyped-def]
        return _MeanDrawer(recipe, state)


TOY = MeanFamily()


@pytest.fixture()
def toy_family(monkeypatch):
    """The toy's registry line, for one test: the one place besides this module that names it."""
    monkeypatch.setitem(FAMILIES, "toy", f"{__name__}:TOY")
    return TOY


def _toy_recipe_file(path: Path, steps: int, **sections: Any) -> Path:
    """A recipe file of the toy family: its own section and the common ones, as a user would write it."""
    tiny = tiny_recipe(steps, lr=0.5).to_dict()
    data = {"name": "tiny", "generator": "toy", "toy": {"jitter": 0.01}, "train": tiny["train"],
            "sample": {"batch_size": 4, "spread": 0.05}, "classifier": tiny["classifier"], "study": tiny["study"],
            **sections}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_third_family_is_one_module_and_one_registry_line(toy_family, store, tmp_path):
    """The toy trains, resumes, samples and classifies through the public steps; recipe loading, the sampling
    flags and the experiment texts take it from the registry (only FAMILIES was patched)."""
    assert generators.family("toy") is TOY and list(generators.families()) == ["diffusion", "gan", "toy"]
    recipe = generators.load_recipe(_toy_recipe_file(tmp_path / "toy6.yaml", 6))
    assert recipe.generator == "toy" and recipe.toy == MeanConfig() and recipe.sample == MeanSample(batch_size=4)
    assert generators.family_for(recipe) is TOY
    whole = train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "whole", device="cpu",
                           exclude_speakers=("toy:s3",)))
    three = generators.load_recipe(_toy_recipe_file(tmp_path / "toy3.yaml", 3))
    train(TrainJob(store=store, recipe=three, corpora=("toy",), out=tmp_path / "split", device="cpu",
                   exclude_speakers=("toy:s3",)))
    resumed = train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "split", device="cpu",
                             exclude_speakers=("toy:s3",), resume=True))
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    assert torch.equal(a["ema"]["weight"], b["ema"]["weight"])  # exact resume, for any family
    assert not torch.equal(a["ema"]["weight"], torch.zeros_like(a["ema"]["weight"]))
    assert a["recipe"] == recipe.to_dict() and "diffusion" not in a["recipe"] and "gan" not in a["recipe"]

    out = sample(SampleJob(store=store, n=16, run="whole", device="cpu"))
    assert out.n == 16 and not out.already_there
    with st.open_store(store) as f:
        g = f["synthetic/whole"]
        assert g.attrs["drawn_with"] == "mean + noise 0.05" and g.attrs["generator"] == "toy"
        assert json.loads(g.attrs["training_speakers"]) == ["toy:s1", "toy:s2"]
        assert g.attrs["checkpoint_sha256"] == f["runs/whole"].attrs["checkpoint_sha256"]
        assert f["runs/whole"].attrs["generator"] == "toy"
        mel, emotion = g["mel"][()].astype(np.float32), g["emotion"][()]
    # the learnt means are the classes' own patterns: emotion k's samples are nearest class k's mean
    means = np.stack([mel[emotion == k].mean(0) for k in range(4)])
    assert np.all(np.argmin(((means[:, None] - means[None]) ** 2).sum((2, 3)), 1) == np.arange(4))
    assert sample(SampleJob(store=store, n=16, run="whole", device="cpu")).already_there

    # its sampling option is a flag like any other, checked once, by its section
    sample(SampleJob(store=store, n=8, run="whole", name="wide", device="cpu", options={"spread": 0.2}))
    with st.open_store(store) as f:
        assert f["synthetic/wide"].attrs["drawn_with"] == "mean + noise 0.2"
    with pytest.raises(EmodiffError, match=r"^--spread: sample.spread: expected a number in \[0, 1\], got 2.0$"):
        sample(SampleJob(store=store, n=8, run="whole", name="bad", device="cpu", options={"spread": 2.0}))
    with pytest.raises(EmodiffError, match="^--guidance: not a sampling option of the toy model of .*; its options "
                                           "are --batch-size, --voices, --spread$"):
        sample(SampleJob(store=store, n=8, run="whole", name="bad", device="cpu", options={"guidance": 1.0}))

    # the leak guard and classify read the set as they read any; its sets are `toy` in an experiment's text
    assert Experiment.parse("real+toy").augment.generator == "toy"
    cfg = ClassifierConfig(channels=8, lstm_hidden=8, epochs=1, batch_size=8)
    job = ClassifyJob(store=store, corpus="toy", train_on="real", augment=Augment.parse("toy"), classifier=cfg,
                      device="cpu", sets=("whole",))
    with pytest.raises(Exception, match="trained on toy:s1"):
        classify(job)
    result = classify(dataclasses.replace(job, allow_leak=True))
    assert result.leaky and len(result.folds) == 3 and {r.synthetic for r in result.folds} == {"whole"}


def test_a_toy_recipe_is_checked_by_its_family_at_load(toy_family, tmp_path):
    message = r"a toy recipe has no {} section \(that is the {} family's\); its sections are toy, train, sample"
    for foreign, owner in (("gan", "gan"), ("denoiser", "diffusion")):
        with pytest.raises(EmodiffError, match=message.format(foreign, owner)):
            generators.load_recipe(_toy_recipe_file(tmp_path / "bad.yaml", 3, **{foreign: {}}))
    with pytest.raises(EmodiffError, match=r"bad.yaml:sample.guidance: a toy recipe has no sample.guidance \(that is "
                                           r"the diffusion family's\); its sample settings are batch_size, voices, "
                                           "spread"):
        generators.load_recipe(_toy_recipe_file(tmp_path / "bad.yaml", 3, sample={"guidance": 1.0}))
    with pytest.raises(EmodiffError, match=r"bad.yaml:toy.jitter: expected a number >= 0, got -1"):
        generators.load_recipe(_toy_recipe_file(tmp_path / "bad.yaml", 3, toy={"jitter": -1}))
    train_section = {**tiny_recipe(3).to_dict()["train"], "crop_frames": 16}
    with pytest.raises(EmodiffError, match="bad.yaml:train.crop_frames: expected 0 with generator toy"):
        generators.load_recipe(_toy_recipe_file(tmp_path / "bad.yaml", 3, train=train_section))


def test_the_toy_is_registered_only_while_its_fixture_lasts(tmp_path):
    assert "toy" not in FAMILIES and sys.modules[__name__].TOY.name == "toy"
    with pytest.raises(EmodiffError, match=r"generator: 'toy' is not one of diffusion, gan"):
        generators.load_recipe(_toy_recipe_file(tmp_path / "toy.yaml", 3))
    with pytest.raises(EmodiffError, match="expected synthetic"):
        Augment.parse("toy")
