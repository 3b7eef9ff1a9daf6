"""Recipes: YAML files -> typed, frozen dataclasses, one per concern (a module per concern:
``settings`` the types and range checks, ``generator``, ``training``, ``classifier``, ``study`` the
sections, ``recipe`` the whole recipe, its loading and its cross-section checks).

Precedence, lowest first: the dataclass defaults, the recipe file, then command-line flags
(each command passes its flags to :func:`override`). Unknown keys are errors, never ignored,
so a misspelt setting cannot silently fall back to a default.

Everything is checked when a recipe is loaded, before any command does work: each key's type
(:func:`build`), each section's ranges and the settings that must agree within it (each
dataclass's ``__post_init__``, raising :class:`SettingError`), the settings that must agree across
sections (:func:`check_recipe`), and, in a recipe file, that every section is there (a missing
section is an error, never the paper's 98 M-parameter defaults in silence). Flags go through the
same checks. Every failure is one EmodiffError line: the file, ``section.key``, the bad value and
what was expected.
"""

from __future__ import annotations

from emodiff.config.classifier import ClassifierConfig
from emodiff.config.generator import (
    DenoiserConfig,
    DiffusionConfig,
    GanConfig,
    check_flat_denoiser,
    check_unet_denoiser,
)
from emodiff.config.recipe import (
    COMMON_SECTIONS,
    FAMILY_SECTIONS,
    RECIPES,
    SECTIONS,
    Recipe,
    build,
    check_recipe,
    load_recipe,
    override,
    recipe_from_dict,
)
from emodiff.config.settings import (
    DenoiserKind,
    GanLoss,
    GeneratorName,
    Load,
    LrSchedule,
    Normalize,
    Parameterization,
    Sampler,
    Schedule,
    SettingError,
    Skip,
    TimestepSampler,
    Voices,
)
from emodiff.config.study import VOCODERS, StudyConfig
from emodiff.config.training import SampleConfig, TrainConfig

__all__ = [
    "COMMON_SECTIONS", "ClassifierConfig", "DenoiserConfig", "DenoiserKind", "DiffusionConfig",
    "FAMILY_SECTIONS", "GanConfig", "GanLoss", "GeneratorName", "Load", "LrSchedule", "Normalize",
    "Parameterization", "RECIPES", "Recipe", "SECTIONS", "SampleConfig", "Sampler", "Schedule",
    "SettingError", "Skip", "StudyConfig", "TimestepSampler", "TrainConfig", "VOCODERS", "Voices", "build",
    "check_flat_denoiser", "check_recipe", "check_unet_denoiser", "load_recipe", "override",
    "recipe_from_dict",
]
