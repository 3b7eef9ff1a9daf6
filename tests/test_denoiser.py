"""The denoiser's contract: shapes, zero start, text masking, timestep use, sizes, config checks."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from emodiff.config import DenoiserConfig
from emodiff.diffusion.denoiser import Denoiser, count_parameters, timestep_embedding
from emodiff.generators import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY = DenoiserConfig(channels=32, blocks_before=1, blocks_after=1, heads=4, time_dim=16, text_dim=24,
                      text_hidden=16, cond_channels=8, norm_groups=8)


def _inputs(batch: int = 3, frames: int = 40, length: int = 6, cfg: DenoiserConfig = TINY, seed: int = 0):
    """x [B, 80, F], t [B], tokens [B, L, D], mask [B, L] with row i holding length - i real tokens."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.mel_channels, frames, generator=g)
    t = torch.randint(0, 4000, (batch,), generator=g)
    tokens = torch.randn(batch, length, cfg.text_dim, generator=g)
    lengths = torch.tensor([max(length - i, 1) for i in range(batch)])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return x, t, tokens, mask


def _model(cfg: DenoiserConfig = TINY, learn_sigma: bool = True, seed: int = 0) -> Denoiser:
    """An eval-mode model whose output conv is perturbed, so that outputs are not identically zero."""
    torch.manual_seed(seed)
    model = Denoiser(cfg, learn_sigma).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.out.weight, std=0.05)
        torch.nn.init.normal_(model.out.bias, std=0.05)
    return model


@pytest.mark.parametrize("learn_sigma", [True, False])
@pytest.mark.parametrize("frames", [256, 100])
def test_output_shape(learn_sigma, frames):
    model = Denoiser(TINY, learn_sigma)
    out = model(*_inputs(batch=2, frames=frames))
    assert out.shape == (2, 160 if learn_sigma else 80, frames)
    assert out.dtype == torch.float32


def test_untrained_model_predicts_exactly_zero():
    model = Denoiser(TINY, learn_sigma=True)
    assert torch.equal(model(*_inputs()), torch.zeros(3, 160, 40))


@pytest.mark.parametrize("name", ["demo", "ravdess"])
def test_shipped_unet_sizes_run_forward_and_backward(name):
    # Speed is measured in benchmarks/diffusion.py, not asserted here.
    from emodiff.diffusion.objectives import build_denoiser

    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.denoiser.kind == "unet" and recipe.diffusion.parameterization == "edm"
    model = build_denoiser(recipe, n_speakers=4)
    b = 4
    x, t, tokens, mask = _inputs(batch=b, frames=256, length=20, cfg=recipe.denoiser)
    out = model(x, t.float() / 1000, tokens, mask, torch.arange(b) % 4, torch.arange(b) % 4, torch.zeros(b).bool())
    out.square().mean().backward()
    assert out.shape == (b, 80, 256)
    assert all(p.grad is not None for p in model.parameters())


def test_paper_size_is_about_95_million_parameters():
    recipe = load_recipe(RECIPES / "paper.yaml")
    with torch.device("meta"):  # no memory, no init cost
        model = Denoiser(recipe.denoiser, recipe.diffusion.learn_sigma)
    assert 90e6 <= count_parameters(model) <= 100e6
    assert model.out.out_channels == 160


def test_padding_tokens_do_not_matter_and_real_ones_do():
    model = _model()
    x, t, tokens, mask = _inputs()
    base = model(x, t, tokens, mask)
    padded = tokens.clone()
    padded[~mask] = 1e4 * torch.randn(int((~mask).sum()))[:, None]
    torch.testing.assert_close(model(x, t, padded, mask), base, rtol=0, atol=1e-6)
    changed = tokens.clone()
    changed[:, 0] += 1.0
    assert (model(x, t, changed, mask) - base).abs().amax(dim=(1, 2)).min() > 1e-4


def test_row_without_real_tokens_is_finite_and_unconditional():
    model = _model()
    x, t, tokens, mask = _inputs()
    mask[1] = False
    out = model(x, t, tokens, mask)
    assert torch.isfinite(out).all()
    other = model(x, t, torch.randn_like(tokens), mask)
    torch.testing.assert_close(other[1], out[1], rtol=0, atol=1e-6)
    model.train()
    model(x, t, tokens, mask).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_timestep_matters():
    model = _model()
    x, t, tokens, mask = _inputs()
    base = model(x, t, tokens, mask)
    for other in (t + 1, torch.full_like(t, 3999), t.float() + 0.5):
        assert (model(x, other, tokens, mask) - base).abs().amax(dim=(1, 2)).min() > 1e-5


def test_rows_are_independent():
    model = _model()
    x, t, tokens, mask = _inputs(batch=4)
    batched = model(x, t, tokens, mask)
    for i in range(4):
        # Alone, a row keeps only its own real tokens: padding to the batch's length must not matter.
        n = int(mask[i].sum())
        alone = model(x[i:i + 1], t[i:i + 1], tokens[i:i + 1, :n], mask[i:i + 1, :n])
        torch.testing.assert_close(alone[0], batched[i], rtol=1e-4, atol=1e-5)


def test_float16_tokens_and_float_timesteps_are_accepted():
    model = _model()
    x, t, tokens, mask = _inputs()
    torch.testing.assert_close(model(x, t.float(), tokens.half(), mask), model(x, t, tokens.half().float(), mask))


def test_timestep_embedding_matches_the_formula():
    t = torch.tensor([0, 7, 3999])
    emb = timestep_embedding(t, 9)
    assert emb.shape == (3, 9) and emb.dtype == torch.float32
    for row, step in enumerate(t.tolist()):
        for i in range(4):
            freq = math.exp(-math.log(10_000) * i / 4)
            assert emb[row, i].item() == pytest.approx(math.cos(step * freq), abs=1e-4)
            assert emb[row, 4 + i].item() == pytest.approx(math.sin(step * freq), abs=1e-4)
    assert torch.equal(emb[:, 8], torch.zeros(3))


def test_count_parameters():
    assert count_parameters(torch.nn.Linear(3, 5)) == 20


@pytest.mark.parametrize(("change", "named"), [
    ({"channels": 30}, "heads"),  # 30 % 4
    ({"channels": 36}, "norm_groups"),  # 36 % 4 == 0, 36 % 8
    ({"text_hidden": 18}, "text_hidden"),
    ({"kernel_size": 4}, "kernel_size"),
    ({"heads": 0}, "heads"),
    ({"blocks_before": -1}, "blocks_before"),
    ({"time_dim": 1}, "time_dim"),
    ({"dropout": 1.0}, "dropout"),
    ({"cond_channels": 0}, "cond_channels"),
])
def test_bad_config_raises_value_error_naming_it(change, named):
    with pytest.raises(ValueError, match=named):
        Denoiser(dataclasses.replace(TINY, **change), learn_sigma=True)


def test_wrong_input_shapes_are_named():
    model = Denoiser(TINY, learn_sigma=False)
    x, t, tokens, mask = _inputs()
    with pytest.raises(ValueError, match="x must be"):
        model(x[:, :40], t, tokens, mask)
    with pytest.raises(ValueError, match="tokens must be"):
        model(x, t, tokens[..., :10], mask)
