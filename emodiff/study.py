"""``emodiff study``: the whole method in one command, from audio to report, as a recipe describes it.

prepare -> embed -> train one generator per distinct held-out speaker set of the protocol (and per
generator family the experiments use: ``synthetic`` is the recipe's own, ``gan`` a GAN recipe's named
in ``study.recipes``) -> sample from each -> classify each experiment (real, synthetic,
real+synthetic, +mixup, real+gan, ...) -> quality -> compare -> report. Each step finds its finished
output in the store or the run folder and is skipped, so an interrupted study picks up where it stopped.

This module is the driver: it runs the corpus steps and, at the end, the comparisons and the report
itself. Train, sample, classify and quality are a graph of jobs (emodiff/study_graph.py plans it,
emodiff/jobs.py runs it) that an executor runs side by side on this machine or as Ray tasks
(emodiff/executors.py, docs/distributed.md), the driver being the store's one writer.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emodiff import store as st
from emodiff.augment import AugmentJob, augment
from emodiff.classify import ClassifyJob
from emodiff.compare import CompareJob, run_compare
from emodiff.config import Recipe
from emodiff.corpora import CORPORA, canonical_name
from emodiff.embed import EmbedJob, embed
from emodiff.errors import EmodiffError
from emodiff.executors import make_executor
from emodiff.experiments import Experiment
from emodiff.generators import load_recipe
from emodiff.jobs import Job, run_graph
from emodiff.parallel import terminate_interrupts
from emodiff.paths import checked_path
from emodiff.prepare import PrepareJob, prepare
from emodiff.progress import QUIET, Progress
from emodiff.study_graph import (
    GraphSettings,
    StudyGenerator,
    Target,
    experiment_job,
    graph,
    own_sets,
    plan_experiments,
    plan_generators,
)


@dataclass(frozen=True)
class StudyJob:
    store: Path
    recipe: Recipe
    runs: Path = Path("runs")  # generators go to runs/<recipe name>/<generator>
    root: Path | None = None  # overrides the recipe's study.root
    cross_root: Path | None = None  # overrides study.cross_root
    adaptation_root: Path | None = None  # overrides study.adaptation_root
    report: Path | None = None  # overrides the recipe's study.report
    device: str = "auto"
    executor: str = "local"  # where the jobs run: emodiff/executors.py
    address: str | None = None  # --executor ray: None starts Ray here; "auto" or ray://host:port joins a cluster
    threads: int = 1  # CPU threads of each job (a classify job takes study.workers if more)
    jobs: int | None = None  # --executor local: jobs at once (None: as many as fit the cores; 1: in this process)
    retries: int = 2  # tries after the first for a job whose process died

    def __post_init__(self) -> None:
        from emodiff.report import TMP_ROOM  # the report's own rule for its folder's name

        if self.threads < 1 or self.retries < 0 or (self.jobs is not None and self.jobs < 1):
            raise EmodiffError(f"--threads and --jobs must be at least 1 and --retries at least 0, got {self.threads}, "
                               f"{self.jobs} and {self.retries}")

        checked_path(self.runs, "--runs")
        checked_path(self.report or Path(self.recipe.study.report), "--out" if self.report else "study.report",
                     room=TMP_ROOM)


@dataclass
class StudyResult:
    report: Path
    generators: list[str]
    results: list[str]
    steps: list[tuple[str, float, bool]] = field(default_factory=list)  # (step, seconds, skipped)


@dataclass
class StudyPlan:
    """What a study would do (``--dry-run``): its steps in the driver, its jobs, and why the list may be short."""

    steps: list[tuple[str, bool | None]]  # (driver step, found done; None: not known before it runs)
    jobs: list[Job]
    note: str = ""


@dataclass(frozen=True)
class Step:
    """One step the driver runs itself: its name in the log, what runs it (returns True when found done), and the
    group it adds, when one tells that it is done (for ``--dry-run``)."""

    label: str
    run: Callable[[], bool]
    group: str = ""


def run_study(job: StudyJob, progress: Progress = QUIET) -> StudyResult:
    """Run every step of the study that is not done yet; see the module docstring.

    ``progress`` hears a note as each step starts and as it ends (its time, or that it was found
    done); the steps themselves report nothing.

    The plan is data, in three stages, each built once what it depends on is in the store: the corpora
    (prepare, embed), the generators (which speakers each must not see follows from the prepared
    corpus's folds), then the experiments, quality and the report.
    """
    from emodiff.report import check_out  # loads matplotlib: only when a study runs

    job = _absolute(job)
    corpus, targets = _check_settings(job)
    recipes = _family_recipes(job)
    report = job.report or Path(job.recipe.study.report)
    check_out(report)  # a folder the report could not replace is refused now, not after the study
    gpus = _gpus(job.device)
    executor = make_executor(job.executor, job.address, job.threads, job.jobs, gpus=gpus)
    done: list[tuple[str, float, bool]] = []
    try:
        _run(_data_steps(job, corpus, targets, recipes), done, progress)
        generators, experiments, jobs = _plan(job, corpus, targets, recipes, gpus)
        with terminate_interrupts():
            ran = run_graph(jobs, executor, job.store, progress, retries=job.retries)
    finally:
        executor.close()
    done += ran.done
    if ran.failed:
        raise ran.error()
    _run(_closing_steps(job, experiments, report), done, progress)
    return StudyResult(report / "index.html", [g.name for g in generators],
                       [f"/results/{e.name}" for e in experiments], done)


def plan_study(job: StudyJob) -> StudyPlan:
    """The study's plan without running anything (``emodiff study --dry-run``): its driver steps and every job
    with its needs and resources, each marked done or not. The jobs follow from the prepared corpus's speakers,
    so while the corpus is not in the store the plan lists only the driver's steps, and says so."""
    job = _absolute(job)
    corpus, targets = _check_settings(job)
    recipes = _family_recipes(job)
    steps: list[tuple[str, bool | None]] = [(s.label, st.has_group(job.store, s.group) if s.group else None)
                                            for s in _data_steps(job, corpus, targets, recipes)]
    if not st.has_group(job.store, f"corpora/{corpus}"):
        return StudyPlan(steps, [], note=f"the jobs follow from the speakers of the prepared {corpus}: run "
                                         f"`emodiff prepare {corpus} ROOT --store {job.store}` to see them")
    _, experiments, jobs = _plan(job, corpus, targets, recipes, _gpus(job.device))
    closing = [(s.label, None) for s in _closing_steps(job, experiments, job.report or Path(job.recipe.study.report))]
    return StudyPlan(steps + closing, jobs)


def _plan(job: StudyJob, corpus: str, targets: list[Target], recipes: dict[str, Recipe],
          gpus: int) -> tuple[list[StudyGenerator], list[ClassifyJob], list[Job]]:
    """The study's generators, experiments and job graph, once its corpora are in the store (emodiff/study_graph.py)."""
    settings = GraphSettings(job.store, job.recipe, job.runs, job.device, job.threads, gpus=1 if gpus else 0)
    experiments = plan_experiments(settings, corpus, targets)
    generators = plan_generators(settings, corpus, experiments, recipes)
    experiments = [own_sets(e, generators) for e in experiments]
    return generators, experiments, graph(settings, corpus, generators, experiments)


def _absolute(job: StudyJob) -> StudyJob:
    """``job`` with its store and runs folder absolute: a job may run in another process with another folder."""
    return dataclasses.replace(job, store=job.store.absolute(), runs=job.runs.absolute())


def _gpus(device: str) -> int:
    """The GPUs this machine offers the local executor: those torch sees when the device is CUDA (or auto)."""
    if device not in ("auto", "cuda") and not device.startswith("cuda"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _check_settings(job: StudyJob) -> tuple[str, list[Target]]:
    """The main corpus and the other corpora it is tested on, every folder known now, not after an hour."""
    study = job.recipe.study
    texts = study.experiment_texts()
    targets: list[Target] = []
    for target, folder, runs in (
            (study.cross_corpus, job.cross_root or study.cross_root, [(text, None) for text in texts]),
            (study.adaptation, job.adaptation_root or study.adaptation_root,
             [(text, x) for x in study.fraction_values() for text in study.experiment_texts(adaptation=True)])):
        if not target:
            continue
        if not folder:
            raise EmodiffError(f"study: the {target} folder is not given; pass --cross-root or --adaptation-root "
                               "(or set study.cross_root / study.adaptation_root in the recipe)")
        targets.append((canonical_name(target), Path(folder), runs))
    return canonical_name(study.corpus), targets


def _family_recipes(job: StudyJob) -> dict[str, Recipe]:
    """The recipe of every generator family the experiments use: the study's own for its family, the others
    from ``study.recipes``; every one loaded and checked now."""
    study = job.recipe.study
    named = study.family_recipes()
    texts = study.all_experiment_texts()
    recipes = {job.recipe.generator: job.recipe}
    for text in texts:
        experiment = Experiment.parse(text, "study.experiments")
        family = experiment.augment.generator
        if "synthetic" not in experiment.sources or family in recipes:
            continue
        if family not in named:
            raise EmodiffError(f"study.experiments: {text!r} needs {family} generators, and the study's recipe is a "
                               f"{job.recipe.generator} recipe; name one in study.recipes, e.g. {family}={family}")
        recipe = load_recipe(named[family])
        if recipe.generator != family:
            raise EmodiffError(f"study.recipes: {named[family]} is a {recipe.generator} recipe, not {family}")
        recipes[family] = recipe
    return recipes


def _data_steps(job: StudyJob, corpus: str, targets: list[Target], recipes: dict[str, Recipe]) -> list[Step]:
    """Prepare and embed the corpus, make the offline copies (speed, noise) its experiments and its generators
    (``train.augmented``) train on, and prepare the other corpora it is tested on."""
    study = job.recipe.study
    root = job.root or (Path(study.root) if study.root else _bundled(job.store, corpus))
    texts = study.all_experiment_texts()
    asked = [k for text in texts for k in Experiment.parse(text, "study.experiments").augment.offline]
    offline = dict.fromkeys([*asked, *(k for recipe in recipes.values() for k in recipe.train.augmented)])
    return [Step(f"prepare {corpus}", functools.partial(_prepare, job.store, corpus, root), f"corpora/{corpus}"),
            Step("embed", functools.partial(_embed, job.store, corpus)),
            *[Step(f"augment {kind}", functools.partial(_augment, job.store, corpus, kind),
                   f"augmented/{corpus}/{kind}") for kind in offline],
            *[Step(f"prepare {target}", functools.partial(_prepare, job.store, target, folder), f"corpora/{target}")
              for target, folder, _ in targets]]


def _closing_steps(job: StudyJob, experiments: list[ClassifyJob], report: Path) -> list[Step]:
    """What the driver does once every job is done: the study's paired comparisons, then the report."""
    study = job.recipe.study
    corpus = canonical_name(study.corpus)
    steps = []
    for a, b in study.comparison_pairs():
        names = [experiment_job(job.store, job.recipe, corpus, text, job.device).name for text in (a, b)]
        steps.append(Step(f"compare {a} vs {b}", functools.partial(_compare, job.store, *names)))
    steps.append(Step("report", functools.partial(_report, job, report)))
    return steps


def _run(steps: list[Step], done: list[tuple[str, float, bool]], progress: Progress) -> None:
    """Run the driver's ``steps`` in order, noting each, and append (label, seconds, found done) to ``done``."""
    for step in steps:
        start = time.perf_counter()
        progress.note(f"[study] {step.label} ...")
        skipped = step.run()
        seconds = time.perf_counter() - start
        done.append((step.label, seconds, skipped))
        progress.note(f"[study] {step.label}: {'already done' if skipped else f'{seconds:.0f} s'}")


def _bundled(store: Path, corpus: str) -> Path:
    """The folder of a corpus the recipe gives none for: RAVDESS's bundled sample, or none at all for a corpus the
    store already holds (prepare finds its group before it reads any folder: a corpus from a manifest)."""
    if corpus != "ravdess":
        if st.has_group(store, f"corpora/{corpus}"):
            return Path()
        how = "" if corpus in CORPORA else f", or prepare it first with `emodiff prepare manifest FILE --name {corpus}`"
        raise EmodiffError(f"study.root is empty; give the {corpus} folder with --root or in the recipe{how}")
    from emodiff.data import ravdess_sample

    return ravdess_sample()


def _embed(store: Path, corpus: str) -> bool:
    results = embed(EmbedJob(store, corpus=[corpus]))
    return all(r.already_there for r in results)


def _prepare(store: Path, corpus: str, root: Path) -> bool:
    return prepare(PrepareJob(store, corpus, root)).already_there


def _augment(store: Path, corpus: str, kind: str) -> bool:
    return augment(AugmentJob(store, corpus, kind)).already_there  # type: ignore[arg-type]


def _report(job: StudyJob, out: Path) -> bool:
    from emodiff.report import ReportJob, build_report

    study = job.recipe.study
    build_report(ReportJob(job.store, out, vocoder=study.vocoder, examples=study.examples, device=job.device))
    return False  # always rebuilt: it is cheap and reflects whatever the store now holds


def _compare(store: Path, experiment: str, baseline: str) -> bool:
    # A comparison is derived data: when either result was rerun since, it is made again (refresh).
    return run_compare(CompareJob(store, experiment, baseline, refresh=True)).already_there
