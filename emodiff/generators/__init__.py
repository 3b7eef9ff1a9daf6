"""Generator families behind one interface (emodiff/generators/base.py); a recipe's ``generator`` picks one.

A family is one module that declares all of it (:class:`~emodiff.generators.base.Family`), listed by name in
emodiff/families.py; ``train``, ``sample``, the study and every reader of their output take it unchanged
(docs/architecture.md, "Adding a generator family"). Recipes are read here, where the families are known:
:func:`load_recipe` and :func:`recipe_from_dict` give the readers of emodiff.config every family.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from emodiff.config import Recipe, build_recipe, read_recipe
from emodiff.errors import EmodiffError
from emodiff.families import FAMILIES
from emodiff.generators.base import Conditions, Drawer, Family, Trainer, TrainSetup

__all__ = ["FAMILIES", "Conditions", "Drawer", "Family", "TrainSetup", "Trainer", "families", "family",
           "family_for", "load_recipe", "recipe_from_dict"]


def family(name: str) -> Family:
    """The family registered as ``name`` (its module imported on first use)."""
    if name not in FAMILIES:
        raise EmodiffError(f"generator {name!r}: expected one of {', '.join(FAMILIES)}")
    module, _, attr = FAMILIES[name].partition(":")
    found: Family = getattr(importlib.import_module(module), attr)
    if found.name != name:  # a registry line that points at another family would mislabel every run it trains
        raise EmodiffError(f"emodiff/families.py: {name!r} points at {FAMILIES[name]}, whose name is {found.name!r}")
    return found


def families() -> dict[str, Family]:
    """Every registered family by name, in the registry's order."""
    return {name: family(name) for name in FAMILIES}


def family_for(recipe: Recipe) -> Family:
    """The family a recipe's ``generator`` names, which must hold that family's sections (a recipe built in code
    could hold another's)."""
    found = family(recipe.generator)
    if not isinstance(recipe.sections, found.sections) or not isinstance(recipe.sample, found.sample):
        raise EmodiffError(f"recipe: a {recipe.generator} recipe holds a {found.sections.__name__} and a "
                           f"{found.sample.__name__}, not a {type(recipe.sections).__name__} and a "
                           f"{type(recipe.sample).__name__}")
    return found


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe YAML file, or a shipped recipe by name (``demo``, ``paper``, ``gan``), checked in full."""
    return read_recipe(path, families())


def recipe_from_dict(data: Any, where: str = "recipe", complete: bool = False) -> Recipe:
    """A Recipe from its mapping (a checkpoint's or the store's; ``complete``: a file's, every section there)."""
    return build_recipe(data, where, families(), complete=complete)
