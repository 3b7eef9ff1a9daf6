"""The generator interface: a second family plugs into train, resume, sample and classify unchanged.

The family here is deliberately trivial (a learnt mel per emotion plus seeded noise): what is tested is
that no step asks which family made a run or a set, and that the loop's guarantees (checkpoints as
data, exact resume, provenance in /runs and /synthetic) hold for any family.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from toy import tiny_recipe

from emodiff import generators
from emodiff import store as st
from emodiff.checkpoint import load_checkpoint
from emodiff.classify import ClassifyJob, classify
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.ema import EMA
from emodiff.generators import Conditions, SampleRequest, TrainSetup
from emodiff.sample import SampleJob, sample
from emodiff.ser.classifier import ClassifierConfig
from emodiff.train import TrainJob, train


class _MeanTrainer:
    def __init__(self, setup: TrainSetup, state: dict[str, Any] | None) -> None:
        x0, _ = setup.batches.draw(1, torch.Generator().manual_seed(0), 0.0)
        self.model = torch.nn.Embedding(4, x0[0].numel())
        self.ema = EMA(self.model, 0.5)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=setup.recipe.train.lr)

    def step(self, batch, gen, lr):  # type: ignore[no-untyped-def]
        x0, cond = batch
        for group in self.opt.param_groups:
            group["lr"] = lr
        noise = 0.01 * torch.randn(x0.shape, generator=gen)  # draws from the loop's stream, as a family may
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
    def __init__(self, state: dict[str, Any], request: SampleRequest) -> None:
        self.weights = state["ema"]["weight"]
        self.shape = (80, int(state["segment_frames"]))
        self.config = {"spread": 0.05}
        self.attrs = {"spread": 0.05, "drawn_with": "mean + noise 0.05"}
        self.norm = MelNormalizer.from_state(state["normalizer"])

    def draw(self, conditions: Conditions, seed: int, index: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
        x = self.weights[conditions.emotion].view(-1, *self.shape)
        x = x + 0.05 * torch.randn(x.shape, generator=gen)
        return self.norm.inverse(x).clamp(-1, 1).numpy()


class MeanFamily:
    name = "diffusion"  # stands in for the recipe's family: the steps see only the interface

    def check(self, recipe):  # type: ignore[no-untyped-def]
        pass

    def architecture(self, recipe):  # type: ignore[no-untyped-def]
        return {}

    def check_data(self, recipe, text_dim, where):  # type: ignore[no-untyped-def]
        pass

    def normalizer(self, recipe, mel, seed):  # type: ignore[no-untyped-def]
        return MelNormalizer.identity(int(mel.shape[1]))

    def trainer(self, setup, state):  # type: ignore[no-untyped-def]
        return _MeanTrainer(setup, state)

    def drawer(self, recipe, state, request, device, where):  # type: ignore[no-untyped-def]
        return _MeanDrawer(state, request)


@pytest.fixture()
def mean_family(monkeypatch):
    monkeypatch.setitem(generators.FAMILIES, "diffusion", MeanFamily())


def test_another_family_trains_resumes_samples_and_classifies_unchanged(mean_family, store, tmp_path):
    recipe = tiny_recipe(6, lr=0.5)
    whole = train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "whole", device="cpu",
                           exclude_speakers=("toy:s3",)))
    train(TrainJob(store=store, recipe=tiny_recipe(3, lr=0.5), corpora=("toy",), out=tmp_path / "split",
                   device="cpu", exclude_speakers=("toy:s3",)))
    resumed = train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "split", device="cpu",
                             exclude_speakers=("toy:s3",), resume=True))
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    assert torch.equal(a["ema"]["weight"], b["ema"]["weight"])  # exact resume, for any family
    assert not torch.equal(a["ema"]["weight"], torch.zeros_like(a["ema"]["weight"]))

    out = sample(SampleJob(store=store, n=16, run="whole", device="cpu"))
    assert out.n == 16 and not out.already_there
    with st.open_store(store) as f:
        g = f["synthetic/whole"]
        assert g.attrs["drawn_with"] == "mean + noise 0.05" and g.attrs["generator"] == "diffusion"
        assert json.loads(g.attrs["training_speakers"]) == ["toy:s1", "toy:s2"]
        assert g.attrs["checkpoint_sha256"] == f["runs/whole"].attrs["checkpoint_sha256"]
        mel, emotion = g["mel"][()].astype(np.float32), g["emotion"][()]
    # the learnt means are the classes' own patterns: emotion k's samples are nearest class k's mean
    means = np.stack([mel[emotion == k].mean(0) for k in range(4)])
    assert np.all(np.argmin(((means[:, None] - means[None]) ** 2).sum((2, 3)), 1) == np.arange(4))
    assert sample(SampleJob(store=store, n=16, run="whole", device="cpu")).already_there

    # the leak guard and classify read the set as they read any: s3 never trained the generator
    cfg = ClassifierConfig(channels=8, lstm_hidden=8, epochs=1, batch_size=8)
    job = ClassifyJob(store=store, corpus="toy", train_on="real+synthetic", classifier=cfg, device="cpu")
    with pytest.raises(Exception, match="trained on toy:s1"):
        classify(job)
    result = classify(dataclasses.replace(job, allow_leak=True))
    assert result.leaky and len(result.folds) == 3
