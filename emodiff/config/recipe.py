"""A recipe: its sections, built from YAML with every key type-checked, checked across sections,
loaded from a file or a shipped name, and overridden by flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_type_hints

import yaml

from emodiff.config.classifier import ClassifierConfig
from emodiff.config.generator import DenoiserConfig, DiffusionConfig, GanConfig
from emodiff.config.settings import GeneratorName, SettingError
from emodiff.config.study import StudyConfig
from emodiff.config.training import SampleConfig, TrainConfig
from emodiff.errors import EmodiffError


@dataclass(frozen=True)
class Recipe:
    """A whole recipe file: a name and one section per concern."""

    name: str = "custom"
    generator: GeneratorName = "diffusion"  # which generator family trains and samples (emodiff/generators/)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    study: StudyConfig = field(default_factory=StudyConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values (tuples become lists), with the sections of this recipe's family only."""
        other = {key for fam, keys in FAMILY_SECTIONS.items() if fam != self.generator for key in keys}
        return {k: v for k, v in _plain(dataclasses.asdict(self)).items() if k not in other}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


T = TypeVar("T")
SECTIONS: dict[str, type] = {
    "diffusion": DiffusionConfig, "denoiser": DenoiserConfig, "gan": GanConfig, "train": TrainConfig,
    "sample": SampleConfig, "classifier": ClassifierConfig, "study": StudyConfig,
}
# The sections of one generator family; a recipe states its own family's and the common ones.
FAMILY_SECTIONS: dict[str, tuple[str, ...]] = {"diffusion": ("diffusion", "denoiser"), "gan": ("gan",)}
COMMON_SECTIONS = ("train", "sample", "classifier", "study")


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
    if getattr(hint, "__origin__", None) is tuple:  # tuple[int, ...]: a YAML list of integers
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise EmodiffError(f"{where}: expected a list of integers, got {value!r}")
        return tuple(value)
    raise TypeError(f"{where}: no check for type {hint!r}")


def recipe_from_dict(data: dict[str, Any], where: str = "recipe", complete: bool = False) -> Recipe:
    """Build a Recipe from its YAML mapping; EmodiffError names the first bad key or value.

    ``complete``: every section must be there (a recipe file). A recipe stored by an older emodiff
    (in a checkpoint or the store) may lack a section added since; it gets that section's defaults.
    """
    if not isinstance(data, dict):
        raise EmodiffError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS) - {"name", "generator"})
    if unknown:
        raise EmodiffError(f"{where}: unknown section(s) {', '.join(unknown)}; "
                           f"known: name, generator, {', '.join(SECTIONS)}")
    generator = _check(data.get("generator", "diffusion"), GeneratorName, f"{where}:generator")
    own = (*FAMILY_SECTIONS[generator], *COMMON_SECTIONS)
    foreign = [key for key in SECTIONS if key not in own and data.get(key) is not None]
    if foreign:  # a section nothing reads would be a setting that silently does nothing
        raise EmodiffError(f"{where}: a {generator} recipe has no {', '.join(foreign)} section (that is the "
                           f"{'/'.join(f for f, keys in FAMILY_SECTIONS.items() if foreign[0] in keys)} family's); "
                           f"its sections are {', '.join(own)}")
    # Defaults for a whole section would be the paper's 98 M-parameter model and its 4000-step
    # process, whatever the rest of the file says: a file states every section of its family.
    missing = [key for key in own if data.get(key) is None]
    if complete and missing:
        raise EmodiffError(f"{where}: no {', '.join(missing)} section; a {generator} recipe states every section "
                           f"({', '.join(own)}): copy a shipped one, e.g. recipes/demo.yaml or recipes/gan.yaml")
    parts = {key: build(cls, data.get(key) or {}, f"{where}:{key}") for key, cls in SECTIONS.items()}
    name = data.get("name", "custom")
    if not isinstance(name, str):
        raise EmodiffError(f"{where}:name: expected a string, got {name!r}")
    recipe = Recipe(name=name, generator=generator, **parts)
    check_recipe(recipe, where)
    return recipe


def check_recipe(recipe: Recipe, where: str = "recipe") -> None:
    """The settings that must agree across sections; EmodiffError names the first that does not."""
    d, den, train, sample = recipe.diffusion, recipe.denoiser, recipe.train, recipe.sample

    def bad(key: str, value: Any, expected: str) -> EmodiffError:
        return EmodiffError(f"{where}:{key}: expected {expected}, got {value!r}")

    if recipe.generator == "gan":
        multiple = 2 ** recipe.gan.levels
        if train.crop_frames % multiple:
            raise bad("train.crop_frames", train.crop_frames, f"0 or a multiple of {multiple} (the GAN's "
                      f"{recipe.gan.levels} levels halve the frames {recipe.gan.levels} times)")
        if train.cond_dropout:
            raise bad("train.cond_dropout", train.cond_dropout, "0 with generator gan (it has no guidance to "
                      "train an unconditional model for)")
        return
    if (den.kind == "flat") != (d.parameterization == "eps"):
        raise bad("diffusion.parameterization", d.parameterization,
                  "eps with denoiser.kind flat (the paper's IDDPM), v or edm with denoiser.kind unet")
    if d.parameterization == "eps":
        if sample.sampler not in ("ddpm", "ddim"):
            raise bad("sample.sampler", sample.sampler, "ddpm or ddim with diffusion.parameterization eps")
        if sample.steps > d.steps:
            raise bad("sample.steps", sample.steps, f"at most diffusion.steps ({d.steps})")
        if sample.guidance:
            raise bad("sample.guidance", sample.guidance, "0 with diffusion.parameterization eps (trained without "
                      "condition dropout, it has no unconditional model)")
        if sample.voices != "training":
            raise bad("sample.voices", sample.voices, "training with diffusion.parameterization eps (its flat "
                      "denoiser has no speaker embedding)")
    multiple = 2 ** (len(den.channel_mult) - 1)  # the U-Net halves the frames between levels
    if den.kind == "unet" and train.crop_frames % multiple:
        raise bad("train.crop_frames", train.crop_frames, f"0 or a multiple of {multiple} (the U-Net halves "
                  f"the frames {multiple.bit_length() - 1} times)")
    if d.parameterization != "eps" and d.skip == "wiener" and train.crop_frames % d.wiener_block:
        raise bad("diffusion.wiener_block", d.wiener_block, f"a divisor of train.crop_frames ({train.crop_frames}), "
                  "the frames the Wiener skip is fitted on")


RECIPES = Path(__file__).resolve().parent.parent / "recipes"  # shipped with the package; ./recipes links here


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe YAML file, or a shipped recipe by name (``demo``, ``paper``)."""
    path = Path(path)
    if not path.is_file() and (RECIPES / f"{path.stem}.yaml").is_file() and path.parent == Path("."):
        path = RECIPES / f"{path.stem}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
        raise EmodiffError(f"{path}: no such recipe file (shipped recipes: {shipped})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise EmodiffError(f"{path}: not valid YAML ({first})") from None
    return recipe_from_dict(data or {}, str(path), complete=True)


def override(config: T, where: str = "flags", **values: Any) -> T:
    """A copy of ``config`` with the non-None ``values`` replaced (command-line flags win).

    The values go through the recipe's checks: EmodiffError reads ``--steps: train.steps: expected ...``.
    """
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return config
    merged = {**_plain(dataclasses.asdict(config)), **given}  # type: ignore[call-overload]
    section = next((key for key, cls in SECTIONS.items() if cls is type(config)), type(config).__name__)
    return build(type(config), merged, f"{where}: {section}")
