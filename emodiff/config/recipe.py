"""A recipe: the sections every recipe has and the sections of one generator family, a tagged union whose
``generator`` says which family; built from YAML with every key type-checked, checked by its family, loaded
from a file or a shipped name, and overridden by flags.

What a family adds to a recipe it declares in its own module (:class:`RecipeFamily`; emodiff/generators/). The
functions that read a recipe take the families as an argument, so that config knows none of them and imports
no torch: steps and the CLI read recipes through :func:`emodiff.generators.load_recipe`, which passes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, get_args, get_type_hints

import yaml

from emodiff.config.classifier import ClassifierConfig
from emodiff.config.settings import GeneratorName, SettingError
from emodiff.config.study import StudyConfig
from emodiff.config.training import SampleSettings, TrainConfig
from emodiff.errors import EmodiffError
from emodiff.families import METHOD


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A whole recipe: a name, its generator family, the family's own sections and the common ones.

    ``sections`` is the family's dataclass with one field per section of its own, named by its YAML key
    (``diffusion`` and ``denoiser``, or ``gan``): a recipe holds its family's sections and no other's.
    ``recipe.gan`` reads that field (:meth:`__getattr__`). ``sample`` is the family's ``sample`` section: the
    settings every family shares (:class:`SampleConfig`) and the family's own sampling options.
    """

    name: str = "custom"
    generator: GeneratorName  # which family trains and samples (emodiff/families.py lists them)
    sections: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleSettings
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    study: StudyConfig = field(default_factory=StudyConfig)

    def __getattr__(self, key: str) -> Any:
        """A section of the recipe's family by its key (``recipe.diffusion``); AttributeError in a recipe of
        another family. Python asks only for names that are not fields."""
        sections = self.__dict__.get("sections")  # not self.sections: a copy or unpickling asks before it is set
        if not key.startswith("__") and dataclasses.is_dataclass(sections):
            if key in {f.name for f in fields(sections)}:
                return getattr(sections, key)
            raise AttributeError(f"a {self.__dict__.get('generator')} recipe has no {key} section")
        raise AttributeError(key)

    def with_sections(self, **sections: Any) -> Recipe:
        """A copy with some of its family's sections replaced: ``recipe.with_sections(denoiser=...)``."""
        return dataclasses.replace(self, sections=dataclasses.replace(self.sections, **sections))

    def to_dict(self) -> dict[str, Any]:
        """What a run records of its recipe (checkpoints, /runs, /synthetic, runs/NAME/recipe.yaml): plain
        YAML/JSON values in file order, its family's sections after ``generator``."""
        own = {f.name: recorded(getattr(self.sections, f.name)) for f in fields(self.sections)}
        return {"name": self.name, "generator": self.generator, **own, "train": recorded(self.train),
                "sample": recorded(self.sample), "classifier": recorded(self.classifier),
                "study": recorded(self.study)}


class RecipeFamily(Protocol):
    """What a generator family declares about its recipes (the rest of a family: emodiff/generators/base.py)."""

    name: str
    # A frozen dataclass: one field per section of its own, named by its YAML key, typed by that section's settings
    # (each a frozen dataclass with defaults that checks its ranges in __post_init__).
    sections: type
    sample: type  # its ``sample`` section: SampleConfig's shared settings and its own sampling options, checked

    def check(self, recipe: Recipe, where: str = "recipe") -> None:
        """Refuse a recipe whose sections do not agree; EmodiffError names ``where`` and the first bad key."""
        ...


def recorded(section: Any) -> dict[str, Any]:
    """A section as a recipe records it: its fields as plain values, or its ``recipe_dict()`` where it has one (a
    section that records keys it no longer has, so that runs stored before keep their config hashes)."""
    if hasattr(section, "recipe_dict"):
        return section.recipe_dict()
    return _plain(dataclasses.asdict(section))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T")
COMMON_SECTIONS = ("train", "sample", "classifier", "study")  # in every recipe; ``sample``'s type is the family's
_COMMON_TYPES: dict[str, type] = {"train": TrainConfig, "classifier": ClassifierConfig, "study": StudyConfig}


def own_sections(family: RecipeFamily) -> dict[str, type]:
    """The sections of ``family``'s own, in file order: YAML key -> settings dataclass."""
    hints = get_type_hints(family.sections)
    return {f.name: hints[f.name] for f in fields(family.sections)}


def section_types(family: RecipeFamily) -> dict[str, type]:
    """Every section of a recipe of ``family``, in file order: YAML key -> settings dataclass."""
    return {**own_sections(family), "train": TrainConfig, "sample": family.sample,
            "classifier": ClassifierConfig, "study": StudyConfig}


def build(cls: type[T], values: dict[str, Any], where: str) -> T:
    """``cls(**values)`` with every key and value checked against the dataclass's annotations."""
    if not isinstance(values, dict):
        raise EmodiffError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise EmodiffError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    checked = {key: _check(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**checked)
    except SettingError as err:  # a dataclass's own range checks
        raise EmodiffError(f"{where}.{err.key}: expected {err.expected}, got {err.value!r}") from None
    except ValueError as err:
        raise EmodiffError(f"{where}: {err}") from None


def _check(value: Any, hint: Any, where: str) -> Any:
    choices = get_args(hint) if getattr(hint, "__origin__", None) is Literal else None
    if choices:
        if value not in choices:
            raise EmodiffError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise EmodiffError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EmodiffError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EmodiffError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise EmodiffError(f"{where}: expected a string, got {value!r}")
        return value
    if getattr(hint, "__origin__", None) is tuple and get_args(hint)[0] is str:  # tuple[str, ...]: a list of strings
        if not isinstance(value, (list, tuple)) or any(not isinstance(v, str) for v in value):
            raise EmodiffError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if getattr(hint, "__origin__", None) is tuple:  # tuple[int, ...] or tuple[float, ...]: a YAML list of them
        numbers = get_args(hint)[0] is float
        kinds, what = ((int, float), "numbers") if numbers else ((int,), "integers")
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, kinds) for v in value):
            raise EmodiffError(f"{where}: expected a list of {what}, got {value!r}")
        return tuple(float(v) for v in value) if numbers else tuple(value)
    raise TypeError(f"{where}: no check for type {hint!r}")


def build_recipe(data: Any, where: str, families: Mapping[str, RecipeFamily], complete: bool = False) -> Recipe:
    """Build a Recipe from its YAML mapping; EmodiffError names the first bad key or value.

    ``families``: the generator families by name (:func:`emodiff.generators.families`). ``complete``: every
    section must be there (a recipe file). A recipe stored by an older emodiff (in a checkpoint or the store)
    may lack a section added since; it gets that section's defaults.
    """
    known = list(dict.fromkeys([key for family in families.values() for key in own_sections(family)]
                               + list(COMMON_SECTIONS)))
    if not isinstance(data, dict):
        raise EmodiffError(f"{where}: expected a mapping with sections {', '.join(known)}")
    generator = data.get("generator", METHOD)
    if not isinstance(generator, str) or generator not in families:
        raise EmodiffError(f"{where}:generator: {generator!r} is not one of {', '.join(families)}")
    unknown = sorted(set(data) - set(known) - {"name", "generator"})
    if unknown:
        raise EmodiffError(f"{where}: unknown section(s) {', '.join(unknown)}; "
                           f"known: name, generator, {', '.join(known)}")
    family = families[generator]
    types = section_types(family)
    foreign = [key for key in known if key not in types and data.get(key) is not None]
    if foreign:  # a section nothing reads would be a setting that silently does nothing
        owners = "/".join(name for name, other in families.items() if foreign[0] in own_sections(other))
        raise EmodiffError(f"{where}: a {generator} recipe has no {', '.join(foreign)} section (that is the "
                           f"{owners} family's); its sections are {', '.join(types)}")
    # Defaults for a whole section would be the paper's 98 M-parameter model and its 4000-step
    # process, whatever the rest of the file says: a file states every section of its family.
    missing = [key for key in types if data.get(key) is None]
    if complete and missing:
        raise EmodiffError(f"{where}: no {', '.join(missing)} section; a {generator} recipe states every section "
                           f"({', '.join(types)}): copy a shipped one, e.g. recipes/demo.yaml or recipes/gan.yaml")
    parts = {key: _section(key, cls, data.get(key) or {}, where, generator, families, complete)
             for key, cls in types.items()}
    name = data.get("name", "custom")
    if not isinstance(name, str):
        raise EmodiffError(f"{where}:name: expected a string, got {name!r}")
    own = family.sections(**{key: parts.pop(key) for key in own_sections(family)})
    recipe = Recipe(name=name, generator=generator, sections=own, **parts)
    family.check(recipe, where)
    return recipe


def _section(key: str, cls: type[T], values: Any, where: str, generator: str, families: Mapping[str, RecipeFamily],
             complete: bool) -> T:
    """:func:`build` of section ``key``; a setting of another family's section of that key (``sample.guidance``
    in a GAN recipe) is named as that family's."""
    if isinstance(values, dict):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        # Keys the section records without having them (see ``recorded``) are read back and dropped: from a
        # stored recipe whatever they are, from a file only at the value recorded (runs/NAME/recipe.yaml).
        legacy = {k: v for k, v in recorded(cls()).items() if k not in names}
        values = {k: v for k, v in values.items() if k not in legacy or (complete and v != legacy[k])}
        for setting in sorted(set(values) - names):
            owners = [name for name, other in families.items() if name != generator and key in section_types(other)
                      and setting in {f.name for f in fields(section_types(other)[key])}]
            if owners:
                raise EmodiffError(f"{where}:{key}.{setting}: a {generator} recipe has no {key}.{setting} (that is "
                                   f"the {'/'.join(owners)} family's); its {key} settings are "
                                   f"{', '.join(f.name for f in fields(cls))}")  # type: ignore[arg-type]
    return build(cls, values, f"{where}:{key}")


RECIPES = Path(__file__).resolve().parent.parent / "recipes"  # shipped with the package; ./recipes links here


def read_recipe(path: str | Path, families: Mapping[str, RecipeFamily]) -> Recipe:
    """Read a recipe YAML file, or a shipped recipe by name (``demo``, ``paper``), with ``families`` known."""
    path = Path(path)
    if not path.is_file() and (RECIPES / f"{path.stem}.yaml").is_file() and path.parent == Path("."):
        path = RECIPES / f"{path.stem}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
        what = "a directory" if path.is_dir() else "not a regular file" if path.exists() else "no such recipe file"
        raise EmodiffError(f"{path}: {what} (expected a recipe YAML file; shipped recipes: {shipped})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EmodiffError(f"{path}: not UTF-8 text (expected a recipe YAML file)") from None
    except OSError as err:
        raise EmodiffError(f"{path}: cannot be read ({err.strerror or err}); expected a recipe YAML file") from None
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise EmodiffError(f"{path}: not valid YAML ({first})") from None
    return build_recipe(data or {}, str(path), families, complete=True)


def override(config: T, where: str = "flags", *, section: str | None = None, **values: Any) -> T:
    """A copy of ``config`` with the non-None ``values`` replaced: how a command's flags reach a recipe (recipe
    file first, flags last; None is a flag not given).

    ``config`` is a whole :class:`Recipe`, whose ``section`` (its YAML key: ``train``, ``classifier``, ``sample``,
    ``diffusion``, ...) takes the values, or one section's settings (``section``: its YAML key for the message;
    default: the common section of its type). The values go through that section's own checks, as the recipe
    file's did: EmodiffError reads ``--steps: train.steps: expected ...``. The family's checks across sections
    are not run again here: :func:`sample_with` runs them for ``emodiff sample``'s flags, and ``train`` before it
    trains.
    """
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    if isinstance(config, Recipe):
        if section is None:
            raise TypeError("override of a recipe: name the section the values are for (section='train', ...)")
        merged_section = override(getattr(config, section), where, section=section, **given)
        if section in COMMON_SECTIONS:
            return dataclasses.replace(config, **{section: merged_section})  # type: ignore[return-value]
        return config.with_sections(**{section: merged_section})  # type: ignore[return-value]
    merged = {**_plain(dataclasses.asdict(config)), **given}  # type: ignore[call-overload]
    key = section or next((k for k, cls in _COMMON_TYPES.items() if cls is type(config)), type(config).__name__)
    return build(type(config), merged, f"{where}: {key}")


def _flags(keys: Sequence[str]) -> str:
    return ", ".join(f"--{key.replace('_', '-')}" for key in keys)


def sample_with(recipe: Recipe, options: Mapping[str, Any], where: str,
                check: Callable[[Recipe, str], None]) -> Recipe:
    """``recipe`` with ``emodiff sample``'s flags ``options`` (by key of its ``sample`` section; None: not given)
    over its sample section: the section's own checks, then the family's ``check``. EmodiffError names the
    flags, the run ``where`` and, for an option the family has not, the options it has."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return recipe
    known = [f.name for f in fields(recipe.sample)]  # type: ignore[arg-type]
    unknown = [k for k in given if k not in known]
    if unknown:
        raise EmodiffError(f"{_flags(unknown)}: not a sampling option of the {recipe.generator} model of {where}; "
                           f"its options are {_flags(known)}")
    out = override(recipe, _flags(list(given)), section="sample", **given)
    try:
        check(out, f"{where}:recipe")
    except EmodiffError as err:
        raise EmodiffError(f"{_flags(list(given))}: {err}") from None
    return out


def parse_options(texts: Sequence[str], flags: Mapping[str, Any] | None = None,
                  where: str = "--option") -> dict[str, Any]:
    """``KEY=VALUE`` texts -> {KEY: VALUE}, each value read as a YAML scalar (``1.5``, ``ddim``, ``true``), with
    the named ``flags`` that were given (not None); a key given both ways is an error."""
    out: dict[str, Any] = {}
    for text in texts:
        key, eq, value = text.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key.isidentifier():
            raise EmodiffError(f"{where} {text!r}: expected KEY=VALUE, e.g. guidance=1.5")
        if key in out:
            raise EmodiffError(f"{where} {key}: given twice")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise EmodiffError(f"{where} {text!r}: {value!r} is not a YAML value") from None
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key in out:
            raise EmodiffError(f"{where} {key}: given twice (also as {_flags([key])})")
        out[key] = value
    return out
