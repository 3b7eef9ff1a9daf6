"""The ``study`` section: which corpus and protocol, which experiments, which generators."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import get_args

from emodiff.config.settings import SettingError, VocoderKind, integers
from emodiff.errors import EmodiffError
from emodiff.experiments import Experiment
from emodiff.families import FAMILIES
from emodiff.ser.protocols import MAX_PARTITIONS, TargetSplit, WithinCorpus


@dataclass(frozen=True)
class StudyConfig:
    """The whole study (``emodiff study``): which corpus and protocol, how many samples, which experiments."""

    corpus: str = "ravdess"
    root: str = ""  # the corpus folder; "" with ravdess: the bundled 6-actor sample
    folds: str = "loso"  # the classify protocol: loso | session | groups:K | groups:KxR (R partitions)
    train_steps: int = 0  # steps of each per-fold generator of this recipe's family; 0: train.steps
    samples: int = 256  # segments drawn from each generator
    experiments: str = "real, synthetic, real+synthetic, real+synthetic+mixup"  # comma-separated classify runs
    repeats: int = 1
    workers: int = 1  # classify's (fold, seed) trainings at once, each in a process on --threads / workers threads
    # The recipes of the other generator families its experiments use, "family=recipe" comma-separated
    # (a recipe file or a shipped name): ``gan=gan`` trains the per-fold GANs of ``real+gan``, for that
    # recipe's train.steps. The study's own recipe trains its own family's (``synthetic``), for train_steps.
    recipes: str = ""
    # Direct comparisons between two of the experiments, "A vs B" comma-separated (A's gain over B, e.g.
    # "real+speed+synthetic vs real+speed"): each one a /comparisons group, Holm-adjusted in the report together
    # with every experiment's comparison against real.
    comparisons: str = ""
    cross_corpus: str = ""  # a second corpus to test on, trained on `corpus` (the paper's table 3); "": none
    cross_root: str = ""  # its folder
    # How cross_corpus splits into development and test: speakers | random | groups:K | loso (TargetSplit).
    cross_split: str = "speakers"
    adaptation: str = ""  # a corpus to adapt to (figure 4): `corpus` + a fraction of it, tested on its other half
    adaptation_root: str = ""  # its folder
    fractions: str = "0, 0.1, 0.2, 0.3, 0.4, 0.5"  # adaptation sweep
    adaptation_experiments: str = "real, real+synthetic"  # run at every fraction
    quality: bool = True
    # Quality also against the held-out speakers, beside the floor that the change of speaker alone sets
    # (QualityJob.held_out_auc, docs/quality.md): six more classifier fits a set. A set assessed without it is
    # assessed again.
    held_out_auc: bool = False
    report: str = "report"
    vocoder: str = "auto"  # of the report's audio: auto | hifigan | griffin-lim
    examples: int = 1  # vocoded clips per emotion and source in the report

    def __post_init__(self) -> None:
        integers(self, "study", 0, "train_steps", "examples")
        integers(self, "study", 1, "samples", "repeats", "workers")
        for name in ("corpus", "report"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise SettingError("study", name, getattr(self, name), "a non-empty string")
        try:
            WithinCorpus.parse(self.folds, where="study.folds")
        except EmodiffError:
            raise SettingError("study", "folds", self.folds, "loso, session or groups:K with an integer K >= 3, or "
                               f"groups:KxR with R in 1..{MAX_PARTITIONS}") from None
        try:
            TargetSplit.parse(self.cross_split, where="study.cross_split")
        except EmodiffError:
            raise SettingError("study", "cross_split", self.cross_split, "speakers, random, loso or groups:K with "
                               "K >= 2") from None
        if self.vocoder not in VOCODERS:
            raise SettingError("study", "vocoder", self.vocoder, f"one of {', '.join(VOCODERS)}")
        for name in ("experiments", "adaptation_experiments"):
            texts = _items(getattr(self, name))
            if not texts and (name == "experiments" or self.adaptation):
                raise SettingError("study", name, getattr(self, name), "comma-separated experiments, e.g. "
                                   "real, synthetic, real+synthetic")
            for text in texts:
                try:
                    Experiment.parse(text, where="")
                except EmodiffError as err:  # its own words say what is wrong with the text
                    raise SettingError("study", name, text, f"an experiment ({str(err).lstrip(': ')})") from None
        self.comparison_pairs()  # raises SettingError for a malformed or unknown side
        for item in _items(self.recipes):
            family, _, recipe = item.partition("=")
            if family.strip() not in FAMILIES or not recipe.strip():
                raise SettingError("study", "recipes", self.recipes, "family=recipe pairs, e.g. gan=gan (families: "
                                   f"{', '.join(FAMILIES)})")
        for text in _items(self.fractions):
            try:
                ok = 0 <= float(text) <= 1
            except ValueError:
                ok = False
            if not ok:
                raise SettingError("study", "fractions", self.fractions, "comma-separated fractions in [0, 1]")

    def recipe_dict(self) -> dict:
        """What a recipe records of this section (Recipe.to_dict: checkpoints, /runs, runs/NAME/recipe.yaml): every
        field, but ``held_out_auc`` only when on, so recipes recorded before it existed keep their hash."""
        out = asdict(self)
        if not self.held_out_auc:
            del out["held_out_auc"]
        return out

    # The lists the texts above hold, read once here (and checked in __post_init__) for emodiff/study.py.

    def experiment_texts(self, adaptation: bool = False) -> list[str]:
        """``experiments`` (or ``adaptation_experiments``), one text per experiment: a text that means what an
        earlier one means (``synthetic+real`` after ``real+synthetic``) is the same experiment, run once under the
        earlier spelling."""
        seen: set[Experiment] = set()
        texts = []
        for text in _items(self.adaptation_experiments if adaptation else self.experiments):
            try:
                meaning = Experiment.parse(text, where="")
            except EmodiffError:  # __post_init__ reports it; here only the list is read
                texts.append(text)
                continue
            if meaning not in seen:
                seen.add(meaning)
                texts.append(text)
        return texts

    def all_experiment_texts(self) -> list[str]:
        """Every experiment the study runs: ``experiments``, then ``adaptation_experiments`` with an adaptation."""
        return [*self.experiment_texts(), *(self.experiment_texts(adaptation=True) if self.adaptation else [])]

    def fraction_values(self) -> list[float]:
        """``fractions`` as numbers."""
        return [float(x) for x in _items(self.fractions)]

    def comparison_pairs(self) -> list[tuple[str, str]]:
        """``comparisons`` as (experiment, baseline) texts, each as spelled in ``experiments``."""
        known = {Experiment.parse(text, where=""): text for text in self.experiment_texts()}
        pairs = []
        for item in _items(self.comparisons):
            sides = item.split(" vs ")
            if len(sides) != 2:
                raise SettingError("study", "comparisons", item, "'A vs B' with A and B two of study.experiments, "
                                   "e.g. real+speed+synthetic vs real+speed")
            texts = []
            for side in (s.strip() for s in sides):
                try:
                    texts.append(known.get(Experiment.parse(side, where="")))
                except EmodiffError:
                    texts.append(None)
                if texts[-1] is None:
                    raise SettingError("study", "comparisons", item, f"two of study.experiments ({side!r} is not "
                                       f"one of: {', '.join(known.values())})")
            if texts[0] == texts[1]:
                raise SettingError("study", "comparisons", item, "two different experiments")
            pairs.append((texts[0], texts[1]))
        return pairs

    def family_recipes(self) -> dict[str, str]:
        """``recipes`` as {family: recipe file or shipped name}."""
        return {f.strip(): r.strip() for f, _, r in (i.partition("=") for i in _items(self.recipes))}


VOCODERS: tuple[str, ...] = get_args(VocoderKind)


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


