"""The U-Net generator end to end on the toy store: it learns the emotion asked for, resumes exactly,
and its sets record guidance and valid frames; the IDDPM path refuses what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy import class_means, tiny_recipe, unet_recipe

from emodiff import store as st
from emodiff.checkpoint import load_checkpoint
from emodiff.errors import EmodiffError
from emodiff.sample import SampleJob, sample
from emodiff.train import TrainJob, train


@pytest.mark.parametrize("parameterization,steps", [("edm", 600), ("v", 40)])
def test_unet_samples_follow_their_emotion(store, tmp_path, parameterization, steps):
    """EDM learns the toy's subtle class marks in 600 steps. v-prediction (sigma_data = 1 on data of std 0.2,
    so most of its cosine noise levels hide the marks) does not in that budget, as on real mels
    (docs/generator.md); its run here checks the path end to end."""
    recipe = unet_recipe(steps, parameterization, log_every=steps // 2, val_every=steps, checkpoint_every=steps)
    train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "runs" / "u", device="cpu"))
    sample(SampleJob(store=store, n=32, seed=0, device="cpu", guidance=1.0))
    with st.open_store(store) as f:
        g = f["synthetic/u"]
        mel, asked = g["mel"][()].astype(np.float32), g["emotion"][()]
        assert g.attrs["guidance"] == 1.0 and g.attrs["sampler"] == "dpmpp-2m"
        assert g.attrs["parameterization"] == parameterization
        assert g["frames"].shape == (32,) and (g["frames"][()] == 32).all()  # no trailing silence in the toy
    assert np.isfinite(mel).all() and np.abs(mel).max() <= 1.0
    if parameterization == "edm":
        means = class_means()
        nearest = ((mel[:, None] - means[None]) ** 2).mean(axis=(2, 3)).argmin(axis=1)
        assert (nearest == asked).mean() >= 0.9, (nearest, asked)


def test_unet_resume_ends_with_the_same_weights(store, tmp_path):
    whole = train(TrainJob(store=store, recipe=unet_recipe(6), corpora=("toy",), out=tmp_path / "a", device="cpu"))
    train(TrainJob(store=store, recipe=unet_recipe(3), corpora=("toy",), out=tmp_path / "b", device="cpu"))
    resumed = train(TrainJob(store=store, recipe=unet_recipe(6), corpora=("toy",), out=tmp_path / "b",
                             resume=True, device="cpu"))
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in ("model", "ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), (key, name)
    assert a["sigma_data"] == b["sigma_data"] > 0


def test_sampling_options_are_checked(store, tmp_path):
    train(TrainJob(store=store, recipe=tiny_recipe(3), corpora=("toy",), out=tmp_path / "eps", device="cpu"))
    for job, match in ((dict(sampler="dpmpp-2m"), "samples with ddpm or ddim"),
                       (dict(steps=51), "at most that many"),
                       (dict(guidance=2.0), "no unconditional model"),
                       (dict(sigma_min=0.2), "--sigma-min is for v/edm models")):
        with pytest.raises(EmodiffError, match=match):
            sample(SampleJob(store=store, n=4, run=str(tmp_path / "eps"), device="cpu", **job))
    for job, match in ((dict(eta=-1.0), "--eta"), (dict(batch_size=0), "--batch-size"),
                       (dict(guidance=-1.0), "--guidance"), (dict(sampler="euler"), "--sampler"),
                       (dict(sigma_min=0.0), "--sigma-min must be > 0")):
        with pytest.raises(EmodiffError, match=match):
            SampleJob(store=store, n=4, **job)
    assert not st.has_group(store, "synthetic/eps")


def test_flat_denoiser_with_edm_is_refused(store, tmp_path):
    import dataclasses

    base = tiny_recipe(3)
    recipe = dataclasses.replace(base, diffusion=dataclasses.replace(base.diffusion, parameterization="edm",
                                                                     learn_sigma=False))
    with pytest.raises(EmodiffError, match=r"expected eps with denoiser.kind flat \(the paper.s IDDPM\), v or edm"):
        train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "x", device="cpu"))


def test_a_checkpoint_changed_after_training_is_refused_even_without_its_manifest(store, tmp_path):
    from emodiff.checkpoint import MANIFEST

    result = train(TrainJob(store=store, recipe=tiny_recipe(3), corpora=("toy",), out=tmp_path / "runs" / "t",
                            device="cpu"))
    (result.run / MANIFEST).unlink()  # the run folder's own record is gone
    with open(result.checkpoint, "ab") as f:
        f.write(b"\0")  # torch still loads it; only the hash tells
    with pytest.raises(EmodiffError, match="sha256 differs from the one .* recorded"):
        sample(SampleJob(store=store, n=4, device="cpu"))
    assert not st.has_group(store, "synthetic/t")


def test_sigma_min_stops_the_sampler_there_and_is_recorded(store, tmp_path):
    """--sigma-min sets the last noise level of the sampler's schedule (then D there is the sample); a set drawn
    at the recipe's own sigma_min keeps the config of one drawn without the flag; above sigma_max is refused."""
    from emodiff.generators import SampleRequest, family_for
    from emodiff.sample import find_checkpoint

    recipe = unet_recipe(3, "edm", log_every=3, val_every=3, checkpoint_every=3)
    train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "u", device="cpu"))
    ckpt, _ = find_checkpoint(store, str(tmp_path / "u"))
    state = load_checkpoint(ckpt)
    drawer = family_for(recipe).drawer(recipe, state, SampleRequest(sigma_min=0.3), torch.device("cpu"), ckpt)
    sigmas = drawer.diffusion.sigmas(5)
    assert sigmas[-2].item() == pytest.approx(0.3) and sigmas[0].item() == pytest.approx(recipe.diffusion.sigma_max)
    common = dict(store=store, n=8, seed=0, device="cpu", run=str(tmp_path / "u"))
    plain = sample(SampleJob(**common, name="plain"))
    same = sample(SampleJob(**common, name="plain", sigma_min=recipe.diffusion.sigma_min))
    assert same.already_there and not plain.already_there  # the recipe's own value: the same set
    sample(SampleJob(**common, name="stopped", sigma_min=0.3))
    with st.open_store(store) as f:
        a, b = f["synthetic/plain"], f["synthetic/stopped"]
        assert b.attrs["sigma_min"] == pytest.approx(0.3) and "sigma_min 0.3" in b.attrs["drawn_with"]
        assert "sigma_min" not in a.attrs["drawn_with"]
        assert not np.array_equal(a["mel"][()], b["mel"][()])
    with pytest.raises(EmodiffError, match="below the model's sigma_max"):
        sample(SampleJob(**common, name="too-high", sigma_min=1000.0))
