"""The conditional GAN family: its objectives against hand computations, its networks' properties, exact
resume, conditioning on tiny data, and the harness (sample, leak guard, classify) taking its sets unchanged."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import stats
from torch.nn import functional as F
from toy import class_means, gan_recipe

from emodiff import store as st
from emodiff.checkpoint import load_checkpoint
from emodiff.classify import ClassifyJob, classify
from emodiff.errors import EmodiffError
from emodiff.gan.losses import _beta, d_hinge, d_wasserstein, g_adversarial, gradient_penalty, mix_reals
from emodiff.gan.networks import Discriminator, Generator
from emodiff.generators import family
from emodiff.generators.gan import GanConfig
from emodiff.sample import SampleJob, sample
from emodiff.ser.classifier import ClassifierConfig
from emodiff.train import TrainJob, train


def test_the_registry_line_is_the_family():
    gan = family("gan")
    assert gan.name == "gan" and gan is family("gan")  # emodiff/families.py's line points at it


def test_hinge_and_wasserstein_losses_match_a_hand_computation():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 1.5])
    # hinge: mean(max(0, 1 - r)) = (0 + 0.5 + 2) / 3; mean(max(0, 1 + f)) = (0 + 1 + 2.5) / 3
    assert d_hinge(real, fake).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert d_wasserstein(real, fake).item() == pytest.approx(-1.5 / 3 - 1.5 / 3)
    assert g_adversarial(fake).item() == pytest.approx(1.5 / 3)


def test_gradient_penalty_of_a_linear_critic_is_its_slope_minus_one_squared():
    w = torch.randn(1, 3, 5, generator=torch.Generator().manual_seed(0))
    real, fake = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    gp = gradient_penalty(lambda x: (x * w).sum((1, 2)), real, fake, torch.Generator().manual_seed(1))
    assert gp.item() == pytest.approx((w.norm().item() - 1.0) ** 2, rel=1e-5)  # the gradient is w everywhere


def test_mixup_lambdas_follow_beta():
    draws = _beta(0.2, 20000, torch.Generator().manual_seed(0)).numpy()
    assert ((draws >= 0) & (draws <= 1)).all()
    assert stats.kstest(draws, stats.beta(0.2, 0.2).cdf).pvalue > 0.01
    assert stats.kstest(_beta(2.0, 20000, torch.Generator().manual_seed(1)).numpy(), stats.beta(2, 2).cdf).pvalue > 0.01


def _disc(text: bool = False) -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(80, 8, 2, 16, 3, n_speakers=3, text_dim=384 if text else None).eval()


def _cond(b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"emotion": torch.randint(4, (b,), generator=gen), "speaker": torch.randint(4, (b,), generator=gen),
            "tokens": torch.randn(b, 6, 384, generator=gen), "mask": torch.ones(b, 6, dtype=torch.bool)}


def _onehot(cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"emotion_weights": F.one_hot(cond["emotion"], 4).float(),
            "speaker_weights": F.one_hot(cond["speaker"], 4).float(), "pooled": cond["tokens"].mean(1)}


def test_the_projection_discriminator_is_linear_in_mixed_conditions():
    """D(x, l y1 + (1 - l) y2) = l D(x, y1) + (1 - l) D(x, y2): the mixup GAN's mixed labels mean what they say."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 80, 32, generator=gen)
    one, other = _cond(6, gen), _cond(6, gen)
    lam = torch.rand(6, 1, generator=gen)
    d = _disc(text=True)
    with torch.no_grad():
        assert torch.allclose(d(x, one), d(x, {**one, **_onehot(one)}), atol=1e-5)  # one-hot weights = lookup
        blend = {k: lam * v + (1 - lam) * _onehot(other)[k] for k, v in _onehot(one).items()}
        expected = lam[:, 0] * d(x, one) + (1 - lam[:, 0]) * d(x, other)
        assert torch.allclose(d(x, {**one, **blend}), expected, atol=1e-4)


def test_mixed_reals_are_convex_combinations_of_two_examples_with_their_conditions_mixed_alike():
    gen = torch.Generator().manual_seed(3)
    x = torch.arange(4.0)[:, None, None].expand(4, 2, 8).clone()  # example i is all i
    cond = {"emotion": torch.arange(4), "speaker": torch.tensor([0, 1, 2, 3])}
    mixed, weights = mix_reals(x, cond, 0.4, 3, gen, text=False)
    for i in range(4):
        assert torch.allclose(mixed[i], torch.full((2, 8), mixed[i, 0, 0].item()))
        # example i's emotion is i: the mean emotion under the weights is the mixed mel's value
        assert (weights["emotion_weights"][i] @ torch.arange(4.0)).item() == pytest.approx(mixed[i, 0, 0].item())
        assert torch.allclose(weights["emotion_weights"][i], weights["speaker_weights"][i])
    assert torch.allclose(weights["emotion_weights"].sum(1), torch.ones(4)) and "pooled" not in weights


def test_the_generator_draws_any_multiple_of_its_stride_and_ignores_batch_company():
    torch.manual_seed(0)
    g = Generator(80, 8, 32, 2, 16, 3, n_speakers=3, text_dim=None).eval()
    gen = torch.Generator().manual_seed(0)
    cond = _cond(5, gen)
    for frames in (32, 64):
        z = torch.randn(5, *g.latent_shape(frames), generator=gen)
        with torch.no_grad():
            out = g(z, cond)
            one = g(z[:1], {k: v[:1] for k, v in cond.items()})
        assert out.shape == (5, 80, frames)
        assert torch.allclose(out[:1], one, atol=1e-5)  # no batch statistics: a sample does not depend on its batch


@pytest.mark.parametrize("gan", [{}, {"loss": "wgan-gp", "mixup": 0.2}], ids=["hinge", "wgan-gp-mixup"])
def test_training_resumes_exactly(store, tmp_path, gan):
    def job(steps: int, out: str, resume: bool = False) -> TrainJob:
        return TrainJob(store=store, recipe=gan_recipe(steps, gan=gan), corpora=("toy",), out=tmp_path / out,
                        device="cpu", exclude_speakers=("toy:s3",), resume=resume)

    whole = train(job(6, "whole"))
    train(job(3, "split"))
    resumed = train(job(6, "split", resume=True))
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    for part in ("model", "ema", "discriminator"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert not torch.equal(a["model"]["out.weight"], a["ema"]["out.weight"])  # the EMA is its own average
    metrics = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "g_loss", "d_real", "d_fake", "val_loss", "val_loss_ema", "val_d_real"} <= set(metrics[-1])


def test_a_trained_gan_draws_the_emotion_asked_for(store, tmp_path):
    """On the toy store (each emotion a thin band of 4 mel bins) the EMA generator draws the band of the emotion
    asked for. WGAN-GP here: on data this degenerate (every example of a class identical) the hinge loss's
    discriminator separates real from fake with margin, its gradient vanishes, and at 1,000 steps the samples
    match their emotion in half the cases; WGAN-GP's critic keeps learning and matches all of them by 300."""
    recipe = gan_recipe(300, gan={"loss": "wgan-gp", "lr_d": 1e-3}, grad_clip=1000.0, log_every=100,
                        val_every=300, checkpoint_every=300)
    train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "gan", device="cpu"))
    out = sample(SampleJob(store=store, n=32, run="gan", device="cpu"))
    assert out.n == 32
    with st.open_store(store) as f:
        g = f["synthetic/gan"]
        assert g.attrs["generator"] == "gan" and g.attrs["drawn_with"].startswith("gan (wgan-gp)")
        mel, emotion = g["mel"][()].astype(np.float32), g["emotion"][()]
    dist = ((mel[:, None] - class_means()[None]) ** 2).mean((2, 3))
    assert (dist.argmin(1) == emotion).mean() >= 0.9
    assert dist.min(1).mean() < 0.02  # and near the class pattern, not just nearer it than the others


def test_gan_sets_go_through_the_leak_guard_and_classify(store, tmp_path):
    train(TrainJob(store=store, recipe=gan_recipe(3), corpora=("toy",), out=tmp_path / "g", device="cpu",
                   exclude_speakers=("toy:s3",)))
    sample(SampleJob(store=store, n=16, run="g", device="cpu"))
    with pytest.raises(EmodiffError, match="^--steps: not a sampling option of the gan model of .*; its options are "
                                           "--batch-size, --voices$"):
        sample(SampleJob(store=store, n=16, run="g", name="again", options={"steps": 8}, device="cpu"))
    cfg = ClassifierConfig(channels=8, lstm_hidden=8, epochs=1, batch_size=8)
    job = ClassifyJob(store=store, corpus="toy", train_on="real", augment=_gan(), classifier=cfg, device="cpu")
    with pytest.raises(EmodiffError, match="trained on toy:s1"):
        classify(job)
    result = classify(dataclasses.replace(job, allow_leak=True))
    assert result.leaky and len(result.folds) == 3 and {r.synthetic for r in result.folds} == {"g"}
    # the diffusion model's sets are asked for with plain `synthetic`: there are none
    with pytest.raises(EmodiffError, match="no synthetic set drawn by a diffusion generator .*from: gan"):
        classify(dataclasses.replace(job, augment=_gan("synthetic"), allow_leak=True))


def _gan(text: str = "gan"):
    from emodiff.experiments import Augment

    return Augment.parse(text)


def test_gan_settings_are_checked():
    with pytest.raises(ValueError, match="kernel_size: expected an odd integer"):
        GanConfig(kernel_size=4)
    with pytest.raises(ValueError, match="lr_d: expected a number > 0"):
        GanConfig(lr_d=0)
    with pytest.raises(EmodiffError, match="crop_frames: expected 0 or a multiple of 4"):
        family("gan").check(gan_recipe(3, crop_frames=30))
    with pytest.raises(EmodiffError, match="cond_dropout: expected 0 with generator gan"):
        family("gan").check(gan_recipe(3, cond_dropout=0.1))
