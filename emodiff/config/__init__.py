"""Recipes: YAML files -> typed, frozen dataclasses, one per concern (a module per concern:
``settings`` the types and range checks, ``generator`` the diffusion model's sections, ``training``,
``classifier``, ``study`` the common sections, ``recipe`` the whole recipe and its loading). A generator
family declares its own sections, sampling options and cross-section checks in its module
(emodiff/generators/); loading takes the families as an argument (:func:`emodiff.generators.load_recipe`).

Precedence, lowest first: the dataclass defaults, the recipe file, then command-line flags
(each command passes its flags to :func:`override`). Unknown keys are errors, never ignored,
so a misspelt setting cannot silently fall back to a default.

Everything is checked when a recipe is loaded, before any command does work: each key's type
(:func:`build`), each section's ranges and the settings that must agree within it (each
dataclass's ``__post_init__``, raising :class:`SettingError`), the settings that must agree across
sections (the family's ``check``), and, in a recipe file, that every section is there (a missing
section is an error, never the paper's 98 M-parameter defaults in silence). Flags go through the
same checks. Every failure is one EmodiffError line: the file, ``section.key``, the bad value and
what was expected.
"""

from __future__ import annotations

from emodiff.config.classifier import ClassifierConfig
from emodiff.config.generator import (
    DenoiserConfig,
    DiffusionConfig,
    check_diffusion_model,
    check_flat_denoiser,
    check_unet_denoiser,
)
from emodiff.config.recipe import (
    COMMON_SECTIONS,
    RECIPES,
    Recipe,
    RecipeFamily,
    build,
    build_recipe,
    override,
    own_sections,
    parse_options,
    read_recipe,
    recorded,
    sample_with,
    section_types,
)
from emodiff.config.settings import (
    NOISY_SAMPLERS,
    ClassifierKind,
    DenoiserKind,
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
    integers,
    mismatch,
    numbers,
)
from emodiff.config.study import VOCODERS, StudyConfig
from emodiff.config.training import SampleConfig, SampleSettings, TrainConfig, check_shared_sample

__all__ = [
    "COMMON_SECTIONS", "ClassifierConfig", "ClassifierKind", "DenoiserConfig", "DenoiserKind", "DiffusionConfig",
    "GeneratorName", "Load", "LrSchedule", "NOISY_SAMPLERS", "Normalize", "Parameterization", "RECIPES", "Recipe",
    "RecipeFamily", "SampleConfig", "SampleSettings", "Sampler", "Schedule", "SettingError", "Skip", "StudyConfig",
    "TimestepSampler",
    "TrainConfig", "VOCODERS", "Voices", "build", "build_recipe", "check_diffusion_model", "check_flat_denoiser",
    "check_shared_sample", "check_unet_denoiser", "integers", "mismatch", "numbers", "override", "own_sections",
    "parse_options", "read_recipe", "recorded", "sample_with", "section_types",
]
