"""Generator families behind one interface (emodiff/generators/base.py); a recipe's ``generator`` picks one.

A family is a module with the six methods of :class:`~emodiff.generators.base.Family`; add it to
:data:`FAMILIES` and to ``config.GeneratorName``, and ``train``, ``sample``, the study and every reader of
their output take it unchanged (docs/architecture.md).
"""

from __future__ import annotations

from emodiff.config import Recipe
from emodiff.errors import EmodiffError
from emodiff.generators.base import Conditions, Drawer, Family, SampleRequest, Trainer, TrainSetup
from emodiff.generators.diffusion import DIFFUSION
from emodiff.generators.gan import GAN

FAMILIES: dict[str, Family] = {DIFFUSION.name: DIFFUSION, GAN.name: GAN}

__all__ = ["FAMILIES", "Conditions", "Drawer", "Family", "SampleRequest", "TrainSetup", "Trainer", "family_for"]


def family_for(recipe: Recipe) -> Family:
    """The family a recipe's ``generator`` names."""
    if recipe.generator not in FAMILIES:
        raise EmodiffError(f"recipe generator {recipe.generator!r}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[recipe.generator]
