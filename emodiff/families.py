"""The generator families by name: the one list of them (docs/architecture.md, "Adding a generator family").

A family is one module that declares everything about it: its name, its recipe sections, its sampling
options and their checks, its recipe checks, its trainer and drawer (emodiff/generators/base.py, ``Family``).
This table says where each module keeps its family, as ``module:object``. It is text, not the objects, so that
the building blocks that need only the names (a recipe's ``generator``, the family words of experiment texts
such as ``real+gan``) read it without importing torch; :func:`emodiff.generators.family` imports a family
the first time a step asks for it.
"""

from __future__ import annotations

FAMILIES: dict[str, str] = {
    "diffusion": "emodiff.generators.diffusion:DIFFUSION",
    "gan": "emodiff.generators.gan:GAN",
}

# The method's own family: a recipe without ``generator`` is one of its recipes (every recipe stored before there
# were two families), and its sets are plain ``synthetic`` in experiment texts.
METHOD = "diffusion"
