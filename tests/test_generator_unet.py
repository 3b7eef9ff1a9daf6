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
    sample(SampleJob(store=store, n=32, seed=0, device="cpu", options={"guidance": 1.0}))
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
        # the stochastic solver draws other segments that carry their emotion as well
        sample(SampleJob(store=store, n=32, seed=0, device="cpu", name="u-sde",
                         options={"guidance": 1.0, "sampler": "dpmpp-2m-sde", "eta": 1.0}))
        with st.open_store(store) as f:
            g = f["synthetic/u-sde"]
            sde, asked = g["mel"][()].astype(np.float32), g["emotion"][()]
            assert g.attrs["sampler"] == "dpmpp-2m-sde" and g.attrs["eta"] == 1.0
            assert g.attrs["drawn_with"] == "edm dpmpp-2m-sde, 12 steps, eta 1, guidance 1"
        nearest = ((sde[:, None] - means[None]) ** 2).mean(axis=(2, 3)).argmin(axis=1)
        assert (nearest == asked).mean() >= 0.9 and np.abs(sde - mel).mean() > 0.01, (nearest, asked)


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
    """Every sampling flag is checked once, by the run's family (its sample section's ranges, then the recipe's
    rules for its model), before anything is written."""
    train(TrainJob(store=store, recipe=tiny_recipe(3), corpora=("toy",), out=tmp_path / "eps", device="cpu"))
    for options, match in ((dict(sampler="dpmpp-2m"), "--sampler: .*sample.sampler: expected ddpm or ddim with "
                            "diffusion.parameterization eps, got 'dpmpp-2m'"),
                           (dict(steps=51), r"--steps: .*sample.steps: expected at most diffusion.steps \(50\)"),
                           (dict(guidance=2.0), "sample.guidance: expected 0 .* no unconditional model"),
                           (dict(sigma_min=0.2), "--sigma-min is for v/edm models"),
                           (dict(eta=-1.0), r"^--eta: sample.eta: expected a number in \[0, 1\]"),
                           (dict(eta=0.5), r"^--eta 0.5: the ddpm sampler injects no noise for eta to scale; eta "
                            "is for ddim and dpmpp-2m-sde"),
                           (dict(batch_size=0), r"^--batch-size: sample.batch_size: expected an integer >= 1"),
                           (dict(guidance=-1.0), r"^--guidance: sample.guidance: expected a number in \[0, 20\]"),
                           (dict(sampler="euler"), r"^--sampler: sample.sampler: 'euler' is not one of ddpm"),
                           (dict(spread=0.1), "^--spread: not a sampling option of the diffusion model of .*; its "
                            "options are --steps, --sampler, --eta, --batch-size, --guidance, --voices")):
        with pytest.raises(EmodiffError, match=match):
            sample(SampleJob(store=store, n=4, run=str(tmp_path / "eps"), device="cpu", options=options))
    assert not st.has_group(store, "synthetic/eps")


def test_flat_denoiser_with_edm_is_refused(store, tmp_path):
    import dataclasses

    base = tiny_recipe(3)
    recipe = base.with_sections(diffusion=dataclasses.replace(base.diffusion, parameterization="edm",
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
    from emodiff.generators import family_for
    from emodiff.sample import find_checkpoint

    recipe = unet_recipe(3, "edm", log_every=3, val_every=3, checkpoint_every=3)
    train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "u", device="cpu"))
    ckpt, _ = find_checkpoint(store, str(tmp_path / "u"))
    state = load_checkpoint(ckpt)
    family = family_for(recipe)
    drawer = family.drawer(family.sampled(recipe, {"sigma_min": 0.3}, str(ckpt)), state, torch.device("cpu"), ckpt)
    sigmas = drawer.diffusion.sigmas(5)
    assert sigmas[-2].item() == pytest.approx(0.3) and sigmas[0].item() == pytest.approx(recipe.diffusion.sigma_max)
    common = dict(store=store, n=8, seed=0, device="cpu", run=str(tmp_path / "u"))
    plain = sample(SampleJob(**common, name="plain"))
    same = sample(SampleJob(**common, name="plain", options={"sigma_min": recipe.diffusion.sigma_min}))
    assert same.already_there and not plain.already_there  # the recipe's own value: the same set
    sample(SampleJob(**common, name="stopped", options={"sigma_min": 0.3}))
    with st.open_store(store) as f:
        a, b = f["synthetic/plain"], f["synthetic/stopped"]
        assert b.attrs["sigma_min"] == pytest.approx(0.3) and "sigma_min 0.3" in b.attrs["drawn_with"]
        assert "sigma_min" not in a.attrs["drawn_with"]
        assert not np.array_equal(a["mel"][()], b["mel"][()])
    with pytest.raises(EmodiffError, match=r"^--sigma-min: diffusion.sigma_max: expected a number > sigma_min "
                                           r"\(1000.0\), got 80.0"):
        sample(SampleJob(**common, name="too-high", options={"sigma_min": 1000.0}))
