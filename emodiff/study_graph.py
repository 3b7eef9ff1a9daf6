"""The study's plan: which experiments it classifies, which generators they need, and the graph of jobs
(emodiff/jobs.py) that trains, samples, classifies and assesses them.

Every synthetic sample a fold trains on comes from a generator that never saw that fold's test or
validation speakers: folds that hold out the same speakers (IEMOCAP's two LOSO folds per session) share a
generator, the others get their own, and ``classify`` picks for each fold the set it may use. Each job
finds its finished output in the store or its run folder and is skipped, so a rerun study picks up where
it stopped. Every job's ``run`` is a ``functools.partial`` of a module-level function and plain data: it
travels by pickle to another process or machine.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from emodiff import store as st
from emodiff.checkpoint import latest_checkpoint, load_checkpoint
from emodiff.classify import ClassifyJob, classify, plan_held_out
from emodiff.config import Recipe, override
from emodiff.experiments import Experiment, name_safe
from emodiff.jobs import Job, job_folder
from emodiff.records import Different, Quality, Results, Same, check_name, existing
from emodiff.sample import SampleJob, sample
from emodiff.train import TrainJob, train

Target = tuple[str, Path, list[tuple[str, float | None]]]  # another corpus, its folder, [(experiment, fraction)]


@dataclass(frozen=True)
class GraphSettings:
    """What every job of one study shares: the store it reads, its recipe, where its generators go, the device,
    and what each job takes of a machine."""

    store: Path  # absolute: a job may run in another process with another working folder
    recipe: Recipe
    runs: Path  # generators go to runs/<recipe name>/<generator>, job folders to runs/<recipe name>/jobs/<job>
    device: str
    threads: int  # CPU threads of each job (a classify job takes study.workers if more)
    gpus: int  # GPUs of each job: 1 when the study runs on CUDA, else 0


@dataclass(frozen=True)
class StudyGenerator:
    """A generator the study trains and samples: its recipe, the speakers it must never see, its run folder and
    set."""

    name: str
    out: Path
    held_out: tuple[str, ...]
    recipe: Recipe


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


def plan_experiments(s: GraphSettings, corpus: str, targets: list[Target]) -> list[ClassifyJob]:
    """Every experiment's classify job; where the list has ``real``, it runs first and every other experiment
    of the same corpora and fraction is compared with it (paired, over the same folds and seeds)."""
    jobs = [experiment_job(s.store, s.recipe, corpus, text, s.device) for text in s.recipe.study.experiment_texts()]
    for target, _, runs in targets:
        jobs += [experiment_job(s.store, s.recipe, target, text, s.device, source=corpus, fraction=fraction)
                 for text, fraction in runs]
    real = Experiment.parse("real")
    baselines = {(j.corpus, j.train_corpus, j.target_fraction): j.name for j in jobs if j.experiment == real}
    paired = [dataclasses.replace(j, baseline=baselines.get((j.corpus, j.train_corpus, j.target_fraction)))
              if j.experiment != real else j for j in jobs]
    return sorted(paired, key=lambda j: j.experiment != real)  # stable: the baselines first, else as listed


def plan_generators(s: GraphSettings, corpus: str, experiments: list[ClassifyJob],
                    recipes: dict[str, Recipe]) -> list[StudyGenerator]:
    """One generator per family and distinct held-out speaker set of the experiments that use synthetic data;
    the study's own family's are named ``without-...``, another's ``<family>-without-...``."""
    held: dict[str, set[tuple[str, ...]]] = {}
    for e in experiments:
        if e.effective_train_on != "real":
            family = held.setdefault(e.augment.generator, set())
            family |= {tuple(h) for h in plan_held_out(s.store, e) if all(x.startswith(f"{corpus}:") for x in h)}
            if e.train_corpus is not None:
                family.add(())  # across corpora: a generator that saw every speaker of the source
    out = []
    for family in sorted(held, key=lambda f: f != s.recipe.generator):  # the study's own family first
        prefix = "" if family == s.recipe.generator else f"{family}-"
        recipe = recipes[family]
        for speakers in sorted(held[family]):
            name = prefix + (generator_name(list(speakers)) if speakers else f"all-{corpus}")
            out.append(StudyGenerator(name, s.runs / recipe.name / name, speakers, recipe))
    return out


def own_sets(e: ClassifyJob, generators: list[StudyGenerator]) -> ClassifyJob:
    """``e`` drawing only on the sets of the study's own generators of its family, where it names no set: the
    store may hold other sets of that family (a sweep's), and a fold would otherwise take whichever sorts first."""
    if e.effective_train_on == "real" or e.augment.synthetic:
        return e
    family = e.augment.generator
    own = tuple(g.name for g in generators if g.recipe.generator == family)
    return dataclasses.replace(e, sets=own) if own else e


def graph(s: GraphSettings, corpus: str, generators: list[StudyGenerator], experiments: list[ClassifyJob]) -> list[Job]:
    """The study's jobs: train -> sample for each generator; classify for each experiment, after the samples of
    its family and its paired baseline; quality for each held-out speaker set's samples. Each job's folder is
    ``runs/<recipe>/jobs/<job>``."""
    study = s.recipe.study
    folders = s.runs / s.recipe.name / "jobs"
    jobs = []
    for g in generators:
        own = g.recipe is s.recipe  # study.train_steps is the study recipe's; another family's recipe has its own
        train_steps = study.train_steps if own and study.train_steps else None  # 0: the recipe's train.steps
        recipe = override(g.recipe, "study.train_steps", section="train", steps=train_steps)
        jobs += [Job(f"train {g.name}", "train", functools.partial(_train, s, recipe, corpus, g),
                     job_folder(folders, f"train {g.name}"), threads=s.threads, gpus=s.gpus,
                     done=functools.partial(_trained, recipe, g)),
                 Job(f"sample {g.name}", "sample", functools.partial(_sample, s, g),
                     job_folder(folders, f"sample {g.name}"), needs=(f"train {g.name}",), threads=s.threads,
                     gpus=s.gpus, done=functools.partial(st.has_group, s.store, f"synthetic/{g.name}"))]
    for e in experiments:
        family = [f"sample {g.name}" for g in generators if g.recipe.generator == e.augment.generator]
        needs = (*(family if e.effective_train_on != "real" else ()),
                 *([f"classify {e.baseline}"] if e.baseline else ()))
        threads = max(s.threads, e.workers)  # each of classify's worker processes on at least one thread
        jobs.append(Job(f"classify {e.name}", "classify", functools.partial(_classify, e),
                        job_folder(folders, f"classify {e.name}"), needs=needs, threads=threads, gpus=s.gpus,
                        done=functools.partial(_classified, e)))
    if study.quality:
        for held in dict.fromkeys(g.held_out for g in generators):  # one yardstick per speaker set, shared by its sets
            names = tuple(g.name for g in generators if g.held_out == held)
            label = f"quality {generator_name(list(held)) if held else 'all-' + corpus}"
            jobs.append(Job(label, "quality", functools.partial(_quality, s, names), job_folder(folders, label),
                            needs=tuple(f"sample {n}" for n in names), threads=s.threads, gpus=s.gpus,
                            done=functools.partial(_assessed, s.store, names, study.held_out_auc)))
    return jobs


def _train(s: GraphSettings, recipe: Recipe, corpus: str, g: StudyGenerator) -> bool:
    ckpt = latest_checkpoint(g.out)
    if _reached(ckpt, recipe):
        return True
    train(TrainJob(store=s.store, recipe=recipe, corpora=(corpus,), out=g.out, exclude_speakers=g.held_out,
                   resume=ckpt is not None, device=s.device))
    return False


def _trained(recipe: Recipe, g: StudyGenerator) -> bool:
    return _reached(latest_checkpoint(g.out), recipe)


def _reached(ckpt: Path | None, recipe: Recipe) -> bool:
    """Whether the checkpoint ``ckpt`` (None: none yet) is at the recipe's last step."""
    return ckpt is not None and int(load_checkpoint(ckpt)["step"]) >= recipe.train.steps


def _sample(s: GraphSettings, g: StudyGenerator) -> bool:
    n = s.recipe.study.samples
    conflict = (f"the study's set of generator {g.out} was drawn with other settings (study.samples is {n}; the "
                f"sample section or the generator may have changed): draw it again with `emodiff sample --run "
                f"{g.out} --n {n} --name {g.name} --overwrite --store {s.store}`, or give the study a new --store")
    return sample(SampleJob(store=s.store, n=n, run=str(g.out), name=g.name, device=s.device,
                            on_conflict=conflict)).already_there


def _quality(s: GraphSettings, sets: tuple[str, ...]) -> bool:
    from emodiff.quality import QualityJob, assess

    if not s.recipe.study.held_out_auc:
        return not assess(QualityJob(s.store, device=s.device, allow_empty=True, among=sets))
    # Replaced, not refused: a set assessed without the held-out AUC gets the same metrics again, and the two AUCs
    todo = _unassessed(s.store, sets, held_out_auc=True)
    return not todo or not assess(QualityJob(s.store, device=s.device, allow_empty=True, among=todo, overwrite=True,
                                             held_out_auc=True))


def _assessed(store: Path, sets: tuple[str, ...], held_out_auc: bool = False) -> bool:
    return not _unassessed(store, sets, held_out_auc)


def _unassessed(store: Path, sets: tuple[str, ...], held_out_auc: bool) -> tuple[str, ...]:
    """The ``sets`` without their /quality group (with ``held_out_auc``, without one assessed with it: its config
    says so, also for a set whose generator held no speaker out and so has no held-out AUC to write)."""
    if not Path(store).exists():  # a study planned before its first step has written the store
        return sets
    with st.open_store(store) as f:
        def done(name: str) -> bool:
            if f"quality/{name}" not in f:
                return False
            return not held_out_auc or Quality.read(f, name).meta.config.get("held_out_auc") is True

        return tuple(name for name in sets if not done(name))


def _chose_own_sets(e: ClassifyJob, found: Different) -> bool:
    """Whether a result stored before studies named their own sets (:func:`own_sets`) is what ``e`` would
    make: the same config but for ``sets``, and every fold took one of them. A fold takes the first of its
    candidates in a fixed order, so a choice that fell within ``e.sets`` is the choice among them alone."""
    unnamed = {k: v for k, v in e.config().items() if k != "sets"}
    if not e.sets or found.attrs.get("config_hash") != st.config_hash(unnamed)[1]:
        return False
    with st.open_store(e.store) as f:
        folds = Results.read(f, e.name).folds
    return bool(folds) and all(fold.synthetic in e.sets for fold in folds)


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
