"""``emodiff study``: the whole method in one command, from audio to report, as a recipe describes it.

prepare -> embed -> train one generator per distinct held-out speaker set of the protocol (and per
generator family the experiments use: ``synthetic`` is the recipe's own, ``gan`` a GAN recipe's named
in ``study.recipes``) -> sample from each -> classify each experiment (real, synthetic,
real+synthetic, +mixup, real+gan, ...) -> quality -> report. Every synthetic sample a fold trains on
comes from a generator that never saw that fold's test or validation speakers: folds that hold out
the same speakers (IEMOCAP's two LOSO folds per session) share a generator, the others get their
own, and ``classify`` picks for each fold the set it may use. Each step finds its finished output in
the store or the run folder and is skipped, so an interrupted study picks up where it stopped.

The driver (this module) runs the corpus steps and, at the end, the comparisons and the report itself;
train, sample, classify and quality are a graph of jobs (emodiff/jobs.py) that an executor runs side by
side on this machine or as Ray tasks (emodiff/executors.py, docs/distributed.md), the driver being the
store's one writer.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emodiff import store as st
from emodiff.augment import AugmentJob, augment
from emodiff.checkpoint import latest_checkpoint, load_checkpoint
from emodiff.classify import ClassifyJob, classify, plan_held_out
from emodiff.compare import CompareJob, run_compare
from emodiff.config import Recipe, override
from emodiff.corpora import CORPORA, canonical_name
from emodiff.embed import EmbedJob, embed
from emodiff.errors import EmodiffError
from emodiff.executors import make_executor
from emodiff.experiments import Experiment, name_safe
from emodiff.generators import load_recipe
from emodiff.jobs import Job, job_folder, run_graph
from emodiff.parallel import terminate_interrupts
from emodiff.paths import checked_path
from emodiff.prepare import PrepareJob, prepare
from emodiff.progress import QUIET, Progress
from emodiff.records import Different, Results, Same, check_name, existing
from emodiff.sample import SampleJob, sample
from emodiff.train import TrainJob, train


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


def experiment_job(store: Path, recipe: Recipe, corpus: str, text: str, device: str, source: str | None = None,
                   fraction: float | None = None) -> ClassifyJob:
    """One of ``study.experiments``, read by :meth:`Experiment.parse`: real/synthetic pick the data, the rest augment.

    ``corpus`` is tested on; with ``source`` the classifier trains on that corpus (cross-corpus), and
    with ``fraction`` also on that share of ``corpus`` (adaptation).
    """
    experiment = Experiment.parse(text, where="study.experiments")
    tokens = [t.strip() for t in text.split("+") if t.strip()]  # the name keeps the recipe's spelling
    study = recipe.study
    where = "" if source is None else f"{source}-to-{corpus}-" + ("" if fraction is None else f"adapt{fraction:g}-")
    name = "study-" + where + name_safe(re.sub(r"[:\s]", "", "-".join(tokens)))  # synthetic:g0.5-* -> ...g0.5-all
    check_name(name, where=f"study.experiments {text!r}: the result's name")  # only an odd synthetic:NAME can fail
    return ClassifyJob(store=store, corpus=corpus, train_corpus=source, target_fraction=fraction,
                       target_split=study.cross_split if source is not None and fraction is None else "speakers",
                       folds=study.folds, train_on=experiment.train_on, augment=experiment.augment,
                       classifier=recipe.classifier, repeats=study.repeats, name=name, device=device,
                       workers=study.workers)


def generator_name(held_out: list[str]) -> str:
    """A /synthetic name that says which speakers the generator never saw: ``without-01-02``."""
    return "without-" + "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", s.partition(":")[2]) for s in held_out)


@dataclass(frozen=True)
class Step:
    """One step the driver runs itself: its name in the log, what runs it (returns True when found done), and the
    group it adds, when one tells that it is done (for ``--dry-run``)."""

    label: str
    run: Callable[[], bool]
    group: str = ""


@dataclass(frozen=True)
class StudyGenerator:
    """A generator the study trains and samples: its recipe, the speakers it must never see, its run folder and
    set."""

    name: str
    out: Path
    held_out: tuple[str, ...]
    recipe: Recipe


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
    executor = make_executor(job.executor, job.address, job.threads, job.jobs, gpus=_gpus(job.device))
    done: list[tuple[str, float, bool]] = []
    try:
        _run(_data_steps(job, corpus, targets), done, progress)
        experiments = _experiments(job, corpus, targets)
        generators = _generators(job, corpus, experiments, recipes)
        experiments = [_own_sets(e, generators) for e in experiments]
        jobs = _jobs(job, corpus, generators, experiments)
        with terminate_interrupts():
            graph = run_graph(jobs, executor, job.store, progress, retries=job.retries)
    finally:
        executor.close()
    done += graph.done
    if graph.failed:
        raise graph.error()
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
    steps: list[tuple[str, bool | None]] = [
        (s.label, st.has_group(job.store, s.group) if s.group else None) for s in _data_steps(job, corpus, targets)]
    if not st.has_group(job.store, f"corpora/{corpus}"):
        return StudyPlan(steps, [], note=f"the jobs follow from the speakers of the prepared {corpus}: run "
                                         f"`emodiff prepare {corpus} ROOT --store {job.store}` to see them")
    experiments = _experiments(job, corpus, targets)
    generators = _generators(job, corpus, experiments, recipes)
    experiments = [_own_sets(e, generators) for e in experiments]
    closing = [(s.label, None) for s in _closing_steps(job, experiments, job.report or Path(job.recipe.study.report))]
    return StudyPlan(steps + closing, _jobs(job, corpus, generators, experiments))


def _absolute(job: StudyJob) -> StudyJob:
    """``job`` with its store and runs folder absolute: a job may run in another process with another folder."""
    return dataclasses.replace(job, store=job.store.absolute(), runs=job.runs.absolute())


def _gpus(device: str) -> int:
    """The GPUs this machine offers the local executor: those torch sees when the device is CUDA (or auto)."""
    if device not in ("auto", "cuda") and not device.startswith("cuda"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


Target = tuple[str, Path, list[tuple[str, float | None]]]  # corpus, its folder, [(experiment, fraction)]


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


def _data_steps(job: StudyJob, corpus: str, targets: list[Target]) -> list[Step]:
    """Prepare and embed the corpus, make the offline copies (speed, noise) its experiments train on, and
    prepare the other corpora it is tested on."""
    study = job.recipe.study
    root = job.root or (Path(study.root) if study.root else _bundled(job.store, corpus))
    texts = study.all_experiment_texts()
    offline = dict.fromkeys(k for text in texts for k in Experiment.parse(text, "study.experiments").augment.offline)
    return [Step(f"prepare {corpus}", functools.partial(_prepare, job.store, corpus, root), f"corpora/{corpus}"),
            Step("embed", functools.partial(_embed, job.store, corpus)),
            *[Step(f"augment {kind}", functools.partial(_augment, job.store, corpus, kind),
                   f"augmented/{corpus}/{kind}") for kind in offline],
            *[Step(f"prepare {target}", functools.partial(_prepare, job.store, target, folder), f"corpora/{target}")
              for target, folder, _ in targets]]


def _experiments(job: StudyJob, corpus: str, targets: list[Target]) -> list[ClassifyJob]:
    """Every experiment's classify job; where the list has ``real``, it runs first and every other experiment
    of the same corpora and fraction is compared with it (paired, over the same folds and seeds)."""
    jobs = [experiment_job(job.store, job.recipe, corpus, text, job.device)
            for text in job.recipe.study.experiment_texts()]
    for target, _, runs in targets:
        jobs += [experiment_job(job.store, job.recipe, target, text, job.device, source=corpus, fraction=fraction)
                 for text, fraction in runs]
    real = Experiment.parse("real")
    baselines = {(j.corpus, j.train_corpus, j.target_fraction): j.name for j in jobs if j.experiment == real}
    paired = [dataclasses.replace(j, baseline=baselines.get((j.corpus, j.train_corpus, j.target_fraction)))
              if j.experiment != real else j for j in jobs]
    return sorted(paired, key=lambda j: j.experiment != real)  # stable: the baselines first, else as listed


def _generators(job: StudyJob, corpus: str, experiments: list[ClassifyJob],
                recipes: dict[str, Recipe]) -> list[StudyGenerator]:
    """One generator per family and distinct held-out speaker set of the experiments that use synthetic data;
    the study's own family's are named ``without-...``, another's ``<family>-without-...``."""
    held: dict[str, set[tuple[str, ...]]] = {}
    for e in experiments:
        if e.effective_train_on != "real":
            family = held.setdefault(e.augment.generator, set())
            family |= {tuple(h) for h in plan_held_out(job.store, e) if all(s.startswith(f"{corpus}:") for s in h)}
            if e.train_corpus is not None:
                family.add(())  # across corpora: a generator that saw every speaker of the source
    out = []
    for family in sorted(held, key=lambda f: f != job.recipe.generator):  # the study's own family first
        prefix = "" if family == job.recipe.generator else f"{family}-"
        recipe = recipes[family]
        for speakers in sorted(held[family]):
            name = prefix + (generator_name(list(speakers)) if speakers else f"all-{corpus}")
            out.append(StudyGenerator(name, job.runs / recipe.name / name, speakers, recipe))
    return out


def _own_sets(e: ClassifyJob, generators: list[StudyGenerator]) -> ClassifyJob:
    """``e`` drawing only on the sets of the study's own generators of its family, where it names no set: the
    store may hold other sets of that family (a sweep's), and a fold would otherwise take whichever sorts first."""
    if e.effective_train_on == "real" or e.augment.synthetic:
        return e
    family = e.augment.generator
    own = tuple(g.name for g in generators if g.recipe.generator == family)
    return dataclasses.replace(e, sets=own) if own else e


def _jobs(job: StudyJob, corpus: str, generators: list[StudyGenerator], experiments: list[ClassifyJob]) -> list[Job]:
    """The study's graph: train -> sample for each generator; classify for each experiment, after the samples of
    its family and its paired baseline; quality for each held-out speaker set's samples. Each job's folder is
    ``runs/<recipe>/jobs/<job>``."""
    study = job.recipe.study
    folders = job.runs / job.recipe.name / "jobs"
    gpus = 1 if _gpus(job.device) else 0
    jobs = []
    for g in generators:
        own = g.recipe is job.recipe  # study.train_steps is the study recipe's; another family's recipe has its own
        train_steps = study.train_steps if own and study.train_steps else None  # 0: the recipe's train.steps
        recipe = override(g.recipe, "study.train_steps", section="train", steps=train_steps)
        jobs += [Job(f"train {g.name}", "train", functools.partial(_train, job, recipe, corpus, g),
                     job_folder(folders, f"train {g.name}"), threads=job.threads, gpus=gpus,
                     done=functools.partial(_trained, recipe, g)),
                 Job(f"sample {g.name}", "sample", functools.partial(_sample, job, g),
                     job_folder(folders, f"sample {g.name}"), needs=(f"train {g.name}",), threads=job.threads,
                     gpus=gpus, done=functools.partial(st.has_group, job.store, f"synthetic/{g.name}"))]
    for e in experiments:
        family = [f"sample {g.name}" for g in generators if g.recipe.generator == e.augment.generator]
        needs = (*(family if e.effective_train_on != "real" else ()),
                 *([f"classify {e.baseline}"] if e.baseline else ()))
        threads = max(job.threads, e.workers)  # each of classify's worker processes on at least one thread
        jobs.append(Job(f"classify {e.name}", "classify", functools.partial(_classify, e),
                        job_folder(folders, f"classify {e.name}"), needs=needs, threads=threads, gpus=gpus,
                        done=functools.partial(_classified, e)))
    if study.quality:
        for held in dict.fromkeys(g.held_out for g in generators):  # one yardstick per speaker set, shared by its sets
            names = tuple(g.name for g in generators if g.held_out == held)
            label = f"quality {generator_name(list(held)) if held else 'all-' + corpus}"
            jobs.append(Job(label, "quality", functools.partial(_quality, job, names), job_folder(folders, label),
                            needs=tuple(f"sample {n}" for n in names), threads=job.threads, gpus=gpus,
                            done=functools.partial(_assessed, job.store, names)))
    return jobs


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


def _train(job: StudyJob, recipe: Recipe, corpus: str, g: StudyGenerator) -> bool:
    if _trained(recipe, g):
        return True
    ckpt = latest_checkpoint(g.out)
    train(TrainJob(store=job.store, recipe=recipe, corpora=(corpus,), out=g.out, exclude_speakers=g.held_out,
                   resume=ckpt is not None, device=job.device))
    return False


def _trained(recipe: Recipe, g: StudyGenerator) -> bool:
    ckpt = latest_checkpoint(g.out)
    return ckpt is not None and int(load_checkpoint(ckpt)["step"]) >= recipe.train.steps


def _sample(job: StudyJob, g: StudyGenerator) -> bool:
    return sample(SampleJob(store=job.store, n=job.recipe.study.samples, run=str(g.out), name=g.name,
                            device=job.device)).already_there


def _quality(job: StudyJob, sets: tuple[str, ...]) -> bool:
    from emodiff.quality import QualityJob, assess

    return not assess(QualityJob(job.store, device=job.device, allow_empty=True, among=sets))


def _assessed(store: Path, sets: tuple[str, ...]) -> bool:
    return all(st.has_group(store, f"quality/{name}") for name in sets)


def _report(job: StudyJob, out: Path) -> bool:
    from emodiff.report import ReportJob, build_report

    study = job.recipe.study
    build_report(ReportJob(job.store, out, vocoder=study.vocoder, examples=study.examples, device=job.device))
    return False  # always rebuilt: it is cheap and reflects whatever the store now holds


def _chose_own_sets(e: ClassifyJob, found: Different) -> bool:
    """Whether a result stored before studies named their own sets (:func:`_own_sets`) is what ``e`` would
    make: the same config but for ``sets``, and every fold took one of them. A fold takes the first of its
    candidates in a fixed order, so a choice that fell within ``e.sets`` is the choice among them alone."""
    unnamed = {k: v for k, v in e.config().items() if k != "sets"}
    if not e.sets or found.attrs.get("config_hash") != st.config_hash(unnamed)[1]:
        return False
    with st.open_store(e.store) as f:
        folds = Results.read(f, e.name).folds
    return bool(folds) and all(fold.synthetic in e.sets for fold in folds)


def _compare(store: Path, experiment: str, baseline: str) -> bool:
    # A comparison is derived data: when either result was rerun since, it is made again (refresh).
    return run_compare(CompareJob(store, experiment, baseline, refresh=True)).already_there


def _classified(e: ClassifyJob) -> bool:
    found = existing(e.store, f"results/{e.name}", e.config())
    return isinstance(found, Same) or (isinstance(found, Different) and _chose_own_sets(e, found))


def _classify(e: ClassifyJob) -> bool:
    found = existing(e.store, f"results/{e.name}", e.config())
    if isinstance(found, Different) and _chose_own_sets(e, found):
        return True
    if isinstance(found, Different):
        raise found.error(e.store, fix=f"remove it with `emodiff classify ... --name {e.name} --overwrite` or change "
                                       "the recipe's study name")
    if isinstance(found, Same):
        return True
    classify(e)
    return False
