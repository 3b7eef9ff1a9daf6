"""Voices that are none of the training actors (``emodiff sample --voices``): the coefficients each mode
plans, both networks honouring them (and guidance's null row ignoring them), and the sets that record them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from cli_checks import one_line_error
from toy import gan_recipe, tiny_recipe, unet_recipe
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.cli import app
from emodiff.config import DenoiserConfig, SampleConfig
from emodiff.diffusion.unet import UNet1d
from emodiff.errors import EmodiffError
from emodiff.gan.networks import Generator
from emodiff.generators import family_for
from emodiff.records import Synthetic
from emodiff.sample import SampleJob, sample
from emodiff.train import TrainJob, train
from emodiff.voices import (
    MIX_WEIGHTS,
    gaussian_coefficients,
    mix_coefficients,
    plan_voices,
    speaker_genders,
    voice_embedding,
)

S = 3
A, B = np.array([0, 1, 2]), np.array([1, 2, 0])
CFG = DenoiserConfig(kind="unet", channels=16, channel_mult=(1, 2), blocks_per_level=1, attention_levels=(1,),
                     heads=2, norm_groups=4, emb_dim=32, text_dim=12)


def _voice(w: float) -> torch.Tensor:
    return torch.from_numpy(mix_coefficients(A, B, np.full(3, w), S))


def _unet() -> UNet1d:
    """A U-Net whose zero-initialised layers are made non-zero, as after training, so the speaker shows."""
    model = UNet1d(CFG, n_speakers=S).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    return model


def _unet_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(3, 80, 16, generator=g), "c_noise": torch.randn(3, generator=g),
            "tokens": torch.randn(3, 5, 12, generator=g), "mask": torch.ones(3, 5, dtype=torch.bool),
            "emotion": torch.tensor([0, 1, 3]), "speaker": torch.from_numpy(A)}


@torch.no_grad()
def test_the_unet_speaks_a_mix_of_two_speakers_and_guidance_keeps_the_null_row():
    model, x = _unet(), _unet_inputs()
    as_a, as_b = model(**x), model(**{**x, "speaker": torch.from_numpy(B)})
    assert torch.equal(model(**x, voice=_voice(0.0)), as_a)  # w = 0: the training speaker, bit for bit
    assert torch.equal(model(**x, voice=_voice(1.0)), as_b)
    mixed = model(**x, voice=_voice(0.4))
    assert (mixed - as_a).abs().max() > 1e-4 and (mixed - as_b).abs().max() > 1e-4
    uncond = torch.tensor([True, False, True])
    with_voice = model(**x, voice=_voice(0.4), uncond=uncond)
    plain = model(**x, uncond=uncond)
    assert torch.equal(with_voice[uncond], plain[uncond])  # D_u: the null speaker whatever the voice
    assert torch.equal(with_voice[~uncond], mixed[~uncond])


@torch.no_grad()
def test_the_gan_generator_speaks_a_mix_of_two_speakers():
    torch.manual_seed(0)
    g = Generator(80, 8, 32, 2, 16, 3, n_speakers=S, text_dim=None).eval()
    z = torch.randn(3, *g.latent_shape(32), generator=torch.Generator().manual_seed(0))
    cond = {"emotion": torch.tensor([0, 1, 3]), "speaker": torch.from_numpy(A)}
    as_a, as_b = g(z, cond), g(z, {**cond, "speaker": torch.from_numpy(B)})
    assert torch.equal(g(z, {**cond, "voice": _voice(0.0)}), as_a)
    assert torch.equal(g(z, {**cond, "voice": _voice(1.0)}), as_b)
    mixed = g(z, {**cond, "voice": _voice(0.6)})
    assert (mixed - as_a).abs().max() > 1e-4 and (mixed - as_b).abs().max() > 1e-4


def test_a_voice_is_mixed_in_float32_under_autocast():
    table = torch.randn(S, 8, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = voice_embedding(_voice(0.0), table)
    assert out.dtype == torch.float32 and torch.equal(out, table[torch.from_numpy(A)])
    with pytest.raises(ValueError, match=r"voice must be \[B, 3\]"):
        voice_embedding(torch.ones(2, 4), table)


@pytest.mark.parametrize("speakers", [2, 5])
def test_gaussian_voices_have_the_mean_and_covariance_of_the_training_rows(speakers):
    """S <= e: the fitted covariance is singular, and the draws must still have it (and stay in its span)."""
    rows = np.random.default_rng(1).normal(size=(speakers, 16)) * np.linspace(0.5, 2.0, 16)
    c = gaussian_coefficients(200_000, speakers, np.random.default_rng(2))
    draws = voice_embedding(torch.from_numpy(c), torch.from_numpy(rows).float()).double().numpy()
    mean, cov = rows.mean(0), np.cov(rows, rowvar=False)  # the S - 1 denominator of the unbiased estimate
    scale = np.abs(cov).max()
    assert np.abs(draws.mean(0) - mean).max() < 0.02 * np.sqrt(scale)
    assert np.abs(np.cov(draws[:50_000], rowvar=False) - cov).max() < 0.05 * scale
    assert np.allclose(c.sum(1), 1.0, atol=1e-5)  # an affine combination of the rows
    assert np.linalg.matrix_rank(draws[:100] - mean, tol=1e-3) == speakers - 1


def test_mix_partners_share_the_gender_when_known_and_the_plan_follows_the_seed():
    speaker = np.repeat(np.arange(4), 50)
    plan = plan_voices("mix", speaker, ["F", "M", "F", None], seed=3)
    assert plan.partner is not None and plan.weight is not None and plan.coefficients is not None
    assert (plan.partner != speaker).all()
    assert set(plan.partner[speaker == 0]) == {2} and set(plan.partner[speaker == 2]) == {0}
    assert set(plan.partner[speaker == 1]) == {0, 2, 3}  # alone in its gender: any other speaker
    assert set(plan.partner[speaker == 3]) == {0, 1, 2}  # gender unknown: any other speaker
    lo, hi = MIX_WEIGHTS
    assert lo <= plan.weight.min() and plan.weight.max() <= hi and plan.weight.std() > 0.1
    rows = np.arange(len(speaker))
    assert np.allclose(plan.coefficients[rows, speaker], 1 - plan.weight)
    assert np.allclose(plan.coefficients[rows, plan.partner], plan.weight)
    again = plan_voices("mix", speaker, ["F", "M", "F", None], seed=3)
    assert np.array_equal(again.coefficients, plan.coefficients)  # type: ignore[arg-type]
    other = plan_voices("mix", speaker, ["F", "M", "F", None], seed=4)
    assert not np.array_equal(other.weight, plan.weight)  # type: ignore[arg-type]
    assert plan_voices("training", speaker, ["F", "M", "F", None], seed=3).coefficients is None
    with pytest.raises(EmodiffError, match="--voices gaussian: the run has one training speaker"):
        plan_voices("gaussian", np.zeros(4, dtype=np.int64), ["F"], seed=0)


def test_genders_come_from_the_utterance_table():
    gender = np.array(["F", "F", "M", "F", "", "X"])
    speaker = np.array(["c:a", "c:a", "c:b", "c:b", "c:c", "c:d"])
    assert speaker_genders(gender, speaker, ["c:a", "c:b", "c:c", "c:d"]) == ["F", None, None, None]


def test_training_voices_draw_the_set_drawn_without_the_option(store, tmp_path):
    train(TrainJob(store=store, recipe=unet_recipe(3), corpora=("toy",), out=tmp_path / "runs" / "u", device="cpu"))
    sample(SampleJob(store=store, n=8, device="cpu", name="before"))
    again = sample(SampleJob(store=store, n=8, device="cpu", name="before", options={"voices": "training"}))
    assert again.already_there  # the same config: a set drawn before --voices existed is the same set
    sample(SampleJob(store=store, n=8, device="cpu", name="training", options={"voices": "training"}))
    sample(SampleJob(store=store, n=8, device="cpu", name="mix", options={"voices": "mix"}))
    with st.open_store(store) as f:
        before, training, mix = (f[f"synthetic/{n}"] for n in ("before", "training", "mix"))
        assert np.array_equal(before["mel"][()], training["mel"][()])
        assert before.attrs["config_hash"] == training.attrs["config_hash"] != mix.attrs["config_hash"]
        assert before.attrs["voices"] == "training" and "voice" not in before and "voice_partner" not in before
        assert np.array_equal(before["speaker"][()], mix["speaker"][()])  # the transcript's speaker, unchanged
        assert Synthetic.read(f, "mix").provenance.voices == "mix"


def test_sample_voices_mix_on_the_command_line_records_the_voices(store, tmp_path):
    train(TrainJob(store=store, recipe=unet_recipe(3), corpora=("toy",), out=tmp_path / "runs" / "u", device="cpu"))
    runner = CliRunner()
    assert "--voices" in runner.invoke(app, ["sample", "--help"]).output
    args = ["sample", "--voices", "mix", "--n", "8", "--store", str(store), "--device", "cpu", "--name", "mixed"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with st.open_store(store) as f:
        g = f["synthetic/mixed"]
        trained = list(Synthetic.read(f, "mixed").provenance.training_speakers)
        speaker, partner = g["speaker"].asstr()[()], g["voice_partner"].asstr()[()]
        weight, voice = g["voice_weight"][()], g["voice"][()]
        assert g.attrs["voices"] == "mix" and Synthetic.read(f, "mixed").meta.config["voices"] == "mix"
        mel = g["mel"][()]
    assert voice.shape == (8, len(trained)) and weight.shape == partner.shape == (8,)
    assert (speaker != partner).all() and set(partner) <= set(trained)
    assert ((MIX_WEIGHTS[0] <= weight) & (weight <= MIX_WEIGHTS[1])).all()
    for i in range(8):
        expected = np.zeros(len(trained), dtype=np.float32)
        expected[trained.index(speaker[i])], expected[trained.index(partner[i])] = 1 - weight[i], weight[i]
        assert np.allclose(voice[i], expected)
    assert runner.invoke(app, args).exit_code == 0  # the same seed: the same set, already there
    with st.open_store(store) as f:
        assert np.array_equal(f["synthetic/mixed"]["mel"][()], mel)
    one_line_error(runner.invoke(app, [*args[:2], "gaussian", *args[3:]]), "exists with other settings")
    one_line_error(runner.invoke(app, [*args[:2], "nobody", *args[3:]]), "--voices: sample.voices: 'nobody'",
                   "training, mix")


def test_the_gan_draws_gaussian_voices(store, tmp_path):
    train(TrainJob(store=store, recipe=gan_recipe(3), corpora=("toy",), out=tmp_path / "g", device="cpu"))
    sample(SampleJob(store=store, n=8, run="g", device="cpu", options={"voices": "gaussian"}))
    with st.open_store(store) as f:
        g = f["synthetic/g"]
        assert g.attrs["voices"] == "gaussian" and g["voice"].shape == (8, 3) and "voice_partner" not in g
        assert np.allclose(g["voice"][()].sum(1), 1.0, atol=1e-5)


def test_the_flat_denoiser_has_no_speaker_to_give_another_voice(store, tmp_path):
    train(TrainJob(store=store, recipe=tiny_recipe(3), corpora=("toy",), out=tmp_path / "eps", device="cpu"))
    with pytest.raises(EmodiffError, match="^--voices: .*sample.voices: expected training with diffusion.param"
                                           "eterization eps .*no speaker embedding.*, got 'mix'$"):
        sample(SampleJob(store=store, n=4, run=str(tmp_path / "eps"), device="cpu", options={"voices": "mix"}))
    assert not st.has_group(store, "synthetic/eps")
    recipe = tiny_recipe(3)
    with pytest.raises(EmodiffError, match="sample.voices: expected training with diffusion.parameterization eps"):
        family_for(recipe).check(dataclasses.replace(recipe, sample=dataclasses.replace(recipe.sample,
                                                                                       voices="gaussian")))
    with pytest.raises(ValueError, match="sample.voices: expected one of training, mix, gaussian"):
        SampleConfig(voices="nobody")  # type: ignore[arg-type]
