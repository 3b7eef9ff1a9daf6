"""What ``emodiff classify`` is asked to do: :class:`ClassifyRequest` (the command's flags as given, checked
as they combine) expands into :class:`ClassifyJob` (one run of one protocol, the config its result
records); emodiff/classify.py runs a job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emodiff.corpora import canonical_name
from emodiff.errors import EmodiffError
from emodiff.experiments import Augment, Experiment, TrainOn
from emodiff.inspect import chosen_corpus
from emodiff.records import check_name
from emodiff.ser.classifier import ClassifierConfig
from emodiff.ser.folds import FoldSpec
from emodiff.ser.protocols import TargetSplit, WithinCorpus


@dataclass(frozen=True)
class ClassifyJob:
    store: Path
    corpus: str  # the corpus tested on (within-corpus: the only one)
    train_corpus: str | None = None  # cross-corpus and adaptation: the source corpus
    folds: str = "loso"  # within-corpus protocol: loso | session | groups:K | groups:KxR (WithinCorpus.parse)
    target_fraction: float | None = None  # adaptation: share of the target's non-test utterances trained on
    dev_fraction: float = 0.3  # cross-corpus: share of target utterances (by speaker) for model selection
    split_seed: int = 0  # seeds the cross-corpus and adaptation speaker splits
    target_split: str = "speakers"  # cross-corpus: speakers | random | groups:K | loso (TargetSplit.parse)
    # The experiment as given (--train-on, --augment): the result records these two as they were spelled (its
    # config hash); ``experiment`` is what they mean, and what the folds train on.
    train_on: TrainOn = "real"
    augment: Augment = field(default_factory=Augment)
    allow_leak: bool = False
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    repeats: int = 1  # seeds classifier.seed, +1, ...
    name: str | None = None
    device: str = "auto"
    overwrite: bool = False
    baseline: str | None = None  # a /results name run on the same folds and seeds: paired statistics against it
    workers: int = 1  # (fold, seed) trainings at once, each in its own process; 1: one after another, in this one
    # The synthetic sets each fold may choose from, when a caller (a study) names its own; empty: every set
    # --augment selects. A study's store can hold other sets (a sweep's), which must not stand in for its own.
    sets: tuple[str, ...] = ()
    experiment: Experiment = field(init=False, repr=False, compare=False)  # train_on and augment as one, checked

    def __post_init__(self) -> None:
        # RAVDESS, MSP_IMPROV: the store's spelling, as `emodiff prepare` wrote it
        object.__setattr__(self, "corpus", canonical_name(self.corpus, "--corpus" if self.train_corpus is None
                                                          else "--test"))
        if self.train_corpus is not None:
            object.__setattr__(self, "train_corpus", canonical_name(self.train_corpus, "--train"))
        # checks --train-on, and that what --augment adds fits the data (emodiff/experiments.py)
        object.__setattr__(self, "experiment", Experiment(self.train_on, self.augment))
        WithinCorpus.parse(self.folds)  # a bad --folds stops here, before the store is read
        if self.name is not None:
            check_name(self.name)
        if self.baseline is not None:
            _check_baseline(self.baseline, self.name or self.default_name())
        if self.repeats < 1:
            raise EmodiffError(f"--repeats must be at least 1, got {self.repeats}")
        if self.workers < 1:
            raise EmodiffError(f"--workers must be at least 1, got {self.workers}")
        _needs_source(self.target_fraction, self.train_corpus)
        if self.target_fraction is not None and not 0.0 <= self.target_fraction <= 1.0:
            raise EmodiffError(f"--target-fraction {self.target_fraction:g}: expected a fraction in [0, 1] "
                               "(30 % is 0.3)")
        TargetSplit.parse(self.target_split)
        if self.target_split != "speakers" and (self.train_corpus is None or self.target_fraction is not None):
            raise EmodiffError(f"--target-split {self.target_split}: only cross-corpus (--train/--test without "
                               "--target-fraction) splits a target")
        # mixup and SpecAugment act on a network's batches of mel segments; the stats classifier has neither.
        on_batches = "mixup" if self.augment.mixup is not None else "specaugment" if self.augment.specaugment else ""
        if self.classifier.kind == "stats" and on_batches:
            raise EmodiffError(f"--augment {on_batches}: classifier.kind stats fits a linear model to utterance "
                               f"statistics, which {on_batches} does not apply to; drop it, or use classifier.kind "
                               "cnn-blstm")
        if self.train_corpus is not None and self.train_corpus == self.corpus:
            raise EmodiffError(f"--train and --test are both {self.corpus}; for one corpus use --corpus with --loso "
                               "or --folds")

    @property
    def protocol(self) -> str:
        if self.target_fraction is not None:
            return "adaptation"
        return "cross-corpus" if self.train_corpus is not None else self.folds

    @property
    def effective_train_on(self) -> TrainOn:
        """``--augment synthetic`` adds synthetic data to the real training set."""
        return self.experiment.train_on

    def config(self) -> dict:
        """What /results/<name> was made with (its ``config`` attr and hash); not ``workers`` or ``device``,
        which change how fast, not what."""
        return {"corpus": self.corpus, "train_corpus": self.train_corpus, "protocol": self.protocol,
                "folds": self.folds, "target_fraction": self.target_fraction, "dev_fraction": self.dev_fraction,
                "split_seed": self.split_seed, "train_on": self.effective_train_on, "augment": self.augment.config(),
                "classifier": self.classifier.recorded(), "repeats": self.repeats, "allow_leak": self.allow_leak,
                **({"baseline": self.baseline} if self.baseline else {}),
                **({"target_split": self.target_split} if self.target_split != "speakers" else {}),
                **({"sets": list(self.sets)} if self.sets else {})}

    @property
    def corpora(self) -> list[str]:
        """The corpora read, source first."""
        return [self.corpus] if self.train_corpus is None else [self.train_corpus, self.corpus]

    def fold_spec(self) -> FoldSpec:
        """What each (fold, seed) training of this job shares (emodiff/ser/folds.py)."""
        return FoldSpec(store=self.store, corpora=tuple(self.corpora), classifier=self.classifier,
                        experiment=self.experiment, device=self.device, workers=self.workers)

    def default_name(self) -> str:
        if self.protocol == "adaptation":
            where = f"{self.train_corpus}-to-{self.corpus}-adapt{self.target_fraction:g}"
        elif self.protocol == "cross-corpus":
            where = f"{self.train_corpus}-to-{self.corpus}"
            if self.target_split != "speakers":
                where += "-" + self.target_split.replace(":", "")
        else:
            where = f"{self.corpus}-{self.folds.replace(':', '')}"
        return "-".join([where, *self.experiment.name_parts])


@dataclass(frozen=True)
class ClassifyRequest:
    """``emodiff classify``'s flags as given; construction checks how they combine, :meth:`jobs` expands them.

    The protocol is one of: within one corpus (``corpus`` with ``folds``; ``loso`` is ``folds="loso"``),
    cross-corpus (``train`` and ``test``), adaptation (those and ``target_fraction``, a comma list
    of fractions that sweeps, one job each).
    """

    store: Path
    corpus: str | None = None
    loso: bool = False
    folds: str = "loso"
    train: str | None = None
    test: str | None = None
    target_fraction: str | None = None  # "0.3" or "0,0.1,0.3"
    target_split: str = "speakers"  # cross-corpus: how the target splits into development and test
    train_on: str = "real"
    augment: str = ""
    allow_leak: bool = False
    repeats: int = 1
    split_seed: int = 0
    name: str | None = None
    device: str = "auto"
    overwrite: bool = False
    compare_with: str | None = None  # a /results name: the paired baseline of every job
    workers: int = 1

    def __post_init__(self) -> None:
        if self.loso and self.folds != "loso":
            raise EmodiffError(f"--loso and --folds {self.folds} disagree; give one of them")
        if (self.train is None) != (self.test is None):
            raise EmodiffError("cross-corpus needs both --train SOURCE and --test TARGET")
        if self.train is not None and (self.corpus is not None or self.loso or self.folds != "loso"):
            raise EmodiffError("--train/--test is its own protocol; drop --corpus, --loso and --folds")
        WithinCorpus.parse(self.folds)
        _fractions(self.target_fraction)  # a bad number stops here, before the store is read
        if self.name is not None:
            check_name(self.name)
        _check_baseline(self.compare_with, self.name if len(_fractions(self.target_fraction)) == 1 else None)
        _needs_source(self.target_fraction, self.train)

    def jobs(self, classifier: ClassifierConfig, prepared: Callable[[], list[str]]) -> list[ClassifyJob]:
        """One :class:`ClassifyJob` per target fraction, every one checked before any runs.

        ``prepared()`` lists the store's corpora; within one corpus it picks ``--corpus`` when the
        store holds only one.
        """
        corpus = self.test if self.train is not None else chosen_corpus(self.store, self.corpus, prepared())
        augment = Augment.parse(self.augment)
        fractions = _fractions(self.target_fraction)
        return [ClassifyJob(store=self.store, corpus=corpus, train_corpus=self.train,  # type: ignore[arg-type]
                            folds=self.folds, target_fraction=fraction, split_seed=self.split_seed,
                            target_split=self.target_split,
                            train_on=self.train_on, augment=augment, allow_leak=self.allow_leak,  # type: ignore[arg-type]
                            classifier=classifier, repeats=self.repeats,
                            name=f"{self.name}-{fraction:g}" if self.name and len(fractions) > 1 else self.name,
                            device=self.device, overwrite=self.overwrite, baseline=self.compare_with,
                            workers=self.workers)
                for fraction in fractions]


def _needs_source(target_fraction: object, source: str | None) -> None:
    """``--target-fraction`` (a number, or the flag's text) adapts a source corpus's training to a target."""
    if target_fraction is not None and source is None:
        raise EmodiffError("--target-fraction needs --train SOURCE and --test TARGET")


def _check_baseline(baseline: str | None, name: str | None) -> None:
    """``--compare-with``: a name, and not the result this run writes (``name``, when known)."""
    if baseline is None:
        return
    if not baseline.strip():
        raise EmodiffError(f"--compare-with {baseline!r}: expected the name of a /results group run on the same "
                           "folds and seeds (e.g. the real-only run's)")
    if baseline == name:
        raise EmodiffError(f"--compare-with {baseline}: that is the result this run writes (/results/{name}); "
                           "compare with another result, e.g. the real-only run's")


def _fractions(text: str | None) -> list[float | None]:
    """``--target-fraction`` as the fractions to run, one job each; ``[None]`` without it."""
    if text is None:
        return [None]
    try:
        out: list[float | None] = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out:
        raise EmodiffError(f"--target-fraction {text}: expected comma-separated numbers")
    return out
