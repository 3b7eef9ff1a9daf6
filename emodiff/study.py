"""``emodiff study``: the whole method in one command, from audio to report, as a recipe describes it.

prepare -> embed -> train one generator per distinct held-out speaker set of the protocol -> sample
from each -> classify each experiment (real, synthetic, real+synthetic, +mixup, ...) -> quality ->
report. Every synthetic sample a fold trains on comes from a generator that never saw that fold's
test or validation speakers: folds that hold out the same speakers (IEMOCAP's two LOSO folds per
session) share a generator, the others get their own, and ``classify`` picks for each fold the set
it may use. Each step finds its finished output in the store or the run folder and is skipped, so
an interrupted study picks up where it stopped.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emodiff import store as st
from emodiff.checkpoint import latest_checkpoint, load_checkpoint
from emodiff.classify import Augment, ClassifyJob, classify, plan_held_out
from emodiff.config import Recipe, override
from emodiff.corpora import canonical_name
from emodiff.embed import EmbedConfig, embed
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareConfig, prepare
from emodiff.sample import SampleJob, sample
from emodiff.train import TrainJob, train

Log = Callable[[str], None]


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


@dataclass
class StudyResult:
    report: Path
    generators: list[str]
    results: list[str]
    steps: list[tuple[str, float, bool]] = field(default_factory=list)  # (step, seconds, skipped)


def experiment_job(store: Path, recipe: Recipe, corpus: str, text: str, device: str, source: str | None = None,
                   fraction: float | None = None) -> ClassifyJob:
    """One experiment of ``study.experiments``: real/synthetic tokens pick the data, the rest are augmentations.

    ``corpus`` is tested on; with ``source`` the classifier trains on that corpus (cross-corpus), and
    with ``fraction`` also on that share of ``corpus`` (adaptation).
    """
    tokens = [t.strip() for t in text.split("+") if t.strip()]
    data = [t for t in tokens if t in ("real", "synthetic")]
    if not data:
        raise EmodiffError(f"study.experiments: {text!r} names no data; expected real, synthetic or both joined by '+'")
    train_on = "real+synthetic" if len(set(data)) == 2 else data[0]
    augment = Augment.parse("+".join(t for t in tokens if t not in ("real", "synthetic")))
    study = recipe.study
    where = "" if source is None else f"{source}-to-{corpus}-" + ("" if fraction is None else f"adapt{fraction:g}-")
    name = "study-" + where + "-".join(tokens).replace(":", "")
    return ClassifyJob(store=store, corpus=corpus, train_corpus=source, target_fraction=fraction,
                       folds=study.folds, train_on=train_on,  # type: ignore[arg-type]
                       augment=dataclasses.replace(augment, synthetic="" if "synthetic" in data else None),
                       classifier=recipe.classifier, repeats=study.repeats, name=name, device=device)


def generator_name(held_out: list[str]) -> str:
    """A /synthetic name that says which speakers the generator never saw: ``without-01-02``."""
    return "without-" + "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", s.partition(":")[2]) for s in held_out)


def run_study(job: StudyJob, log: Log = print) -> StudyResult:
    """Run every step of the study that is not done yet; see the module docstring."""
    study = job.recipe.study
    corpus = canonical_name(study.corpus)
    steps: list[tuple[str, float, bool]] = []

    def step(label: str, fn: Callable[[], bool]) -> None:
        start = time.perf_counter()
        log(f"[study] {label} ...")
        skipped = fn()
        steps.append((label, time.perf_counter() - start, skipped))
        log(f"[study] {label}: {'already done' if skipped else f'{time.perf_counter() - start:.0f} s'}")

    root = job.root or (Path(study.root) if study.root else _bundled(corpus))
    texts = _items(study.experiments)
    # Other corpora, trained on all of `corpus`: (target, its folder, [(experiment, fraction)]).
    targets = [(canonical_name(target), target_root, runs) for target, target_root, runs in (
        (study.cross_corpus, job.cross_root or study.cross_root, [(text, None) for text in texts]),
        (study.adaptation, job.adaptation_root or study.adaptation_root,
         [(text, x) for x in _fractions(study.fractions) for text in _items(study.adaptation_experiments)]))
        if target]
    for target, target_root, _ in targets:
        if not target_root:  # found now, not after an hour of training
            raise EmodiffError(f"study: the {target} folder is not given; pass --cross-root or --adaptation-root "
                               "(or set study.cross_root / study.adaptation_root in the recipe)")
    step(f"prepare {corpus}", lambda: prepare(job.store, PrepareConfig(corpus, root)).already_there)
    step("embed", lambda: _embed(job.store, corpus))

    experiments = [experiment_job(job.store, job.recipe, corpus, text, job.device) for text in texts]
    for target, target_root, runs in targets:
        step(f"prepare {target}", lambda t=target, r=target_root: prepare(
            job.store, PrepareConfig(t, Path(r))).already_there)
        experiments += [experiment_job(job.store, job.recipe, target, text, job.device, source=corpus,
                                       fraction=fraction) for text, fraction in runs]
    generators: list[str] = []
    held: set[tuple[str, ...]] = set()
    for e in experiments:
        if e.effective_train_on != "real":
            held |= {tuple(h) for h in plan_held_out(job.store, e) if all(s.startswith(f"{corpus}:") for s in h)}
            if e.train_corpus is not None:
                held.add(())  # across corpora: a generator that saw every speaker of the source
    recipe = job.recipe if not study.train_steps else dataclasses.replace(
        job.recipe, train=override(job.recipe.train, "study.train_steps", steps=study.train_steps))
    for speakers in sorted(held):
        name = generator_name(list(speakers)) if speakers else f"all-{corpus}"
        out = job.runs / job.recipe.name / name
        generators.append(name)
        step(f"train {name}", lambda out=out, speakers=speakers: _train(job, recipe, corpus, out, speakers))
        step(f"sample {name}", lambda out=out, name=name: sample(SampleJob(
            store=job.store, n=study.samples, run=str(out), name=name, device=job.device)).already_there)
    results = []
    for e in experiments:
        results.append(f"/results/{e.name}")
        step(f"classify {e.name}", lambda e=e: _classify(e))
    if study.quality and generators:
        from emodiff.quality import assess_missing

        step("quality", lambda: not assess_missing(job.store, device=job.device))
    from emodiff.report import build_report

    out = job.report or Path(study.report)

    def report() -> bool:
        build_report(job.store, out, vocoder=study.vocoder, examples=study.examples, device=job.device)
        return False  # always rebuilt: it is cheap and reflects whatever the store now holds

    step("report", report)
    return StudyResult(out / "index.html", generators, results, steps)


def _items(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in _items(text)]
    except ValueError:
        raise EmodiffError(f"study.fractions: {text!r}; expected comma-separated fractions in [0, 1]") from None


def _bundled(corpus: str) -> Path:
    if corpus != "ravdess":
        raise EmodiffError(f"study.root is empty; give the {corpus} folder with --root or in the recipe")
    from emodiff.data import ravdess_sample

    return ravdess_sample()


def _embed(store: Path, corpus: str) -> bool:
    results = embed(store, EmbedConfig(corpus=[corpus]))
    return all(r.already_there for r in results)


def _train(job: StudyJob, recipe: Recipe, corpus: str, out: Path, speakers: tuple[str, ...]) -> bool:
    ckpt = latest_checkpoint(out)
    if ckpt is not None and int(load_checkpoint(ckpt)["step"]) >= recipe.train.steps:
        return True
    train(TrainJob(store=job.store, recipe=recipe, corpora=(corpus,), out=out, exclude_speakers=speakers,
                   resume=ckpt is not None, device=job.device))
    return False


def _classify(e: ClassifyJob) -> bool:
    if st.has_group(e.store, f"results/{e.name}"):
        with st.open_store(e.store) as f:
            done = f[f"results/{e.name}"].attrs.get("config_hash")
        if done == st.config_hash(e.config())[1]:
            return True
        raise EmodiffError(f"{e.store}: /results/{e.name} holds a run with other settings; remove it with "
                           f"`emodiff classify ... --name {e.name} --overwrite` or change the recipe's study name")
    classify(e)
    return False
