"""Recipes: every shipped recipe round-trips, and the generator settings are checked at load time."""

from __future__ import annotations

import pytest
import yaml

from emodiff.config import RECIPES, load_recipe, recipe_from_dict
from emodiff.errors import EmodiffError


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_round_trips(path):
    recipe = load_recipe(path)
    again = recipe_from_dict(yaml.safe_load(yaml.safe_dump(recipe.to_dict())), "round trip")
    assert again == recipe


def test_unet_lists_are_read_as_tuples():
    recipe = load_recipe("ravdess")
    assert recipe.denoiser.channel_mult == (1, 2, 2) and recipe.denoiser.attention_levels == (2,)
    assert recipe.to_dict()["denoiser"]["channel_mult"] == [1, 2, 2]  # plain YAML lists back


@pytest.mark.parametrize("section,values,match", [
    ("denoiser", {"kind": "transformer"}, "not one of flat, unet"),
    ("denoiser", {"channel_mult": [1, "2"]}, "list of integers"),
    ("denoiser", {"channel_mult": 2}, "list of integers"),
    ("diffusion", {"parameterization": "x0"}, "not one of eps, v, edm"),
    ("diffusion", {"parameterization": "edm", "learn_sigma": True}, "learn_sigma"),
    ("diffusion", {"parameterization": "edm", "learn_sigma": False, "sigma_min": 5.0, "sigma_max": 1.0},
     "sigma_min < sigma_max"),
    ("diffusion", {"steps": 0}, "steps must be a positive integer"),
    ("diffusion", {"skip": "linear"}, "not one of scalar, wiener"),
    ("sample", {"sampler": "euler"}, "not one of ddpm, ddim, heun, dpmpp-2m"),
])
def test_bad_generator_settings_name_themselves(section, values, match):
    with pytest.raises(EmodiffError, match=match):
        recipe_from_dict({section: values}, "r.yaml")
