"""``emodiff train``: any generator family on stored mel segments, in one readable loop.

The training set is read from the store once into memory. Every random draw of the loop
(batch rows, timesteps, noise) comes from one seeded generator per process whose state is
checkpointed with the model, EMA, optimizer and step, so ``--resume`` continues exactly where
a run stopped: on a CPU an interrupted-and-resumed run ends with the same weights as an
uninterrupted one. Under ``torchrun`` each process trains on its own batches with DDP; rank 0
alone logs and writes checkpoints. What the model is and how one step trains it is the
family's (emodiff/generators/); this module is the loop they share: :func:`_setup`,
:func:`_loop`, :func:`_finish`.

The store is written once, at the end (``/runs/<name>``), and a run of hours must not hold the
store's writer lock all that time; so :func:`train` checks first that the store can be written
and is not being written, and at the end waits up to :data:`LOCK_WAIT_S` for another writer to
finish. The checkpoints are files in the run folder: if the store still cannot be written then,
nothing is lost, and ``emodiff train --resume`` with the same flags records the finished run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from emodiff import __version__
from emodiff import store as st
from emodiff.batches import Batch, Batches, split
from emodiff.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, sha256_file
from emodiff.config import Recipe, override
from emodiff.devices import resolve_device
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.errors import EmodiffError
from emodiff.generators import Trainer, TrainSetup, family_for, recipe_from_dict
from emodiff.paths import checked_path
from emodiff.progress import QUIET, Progress
from emodiff.records import Run, check_name
from emodiff.segments import load_segments
from emodiff.text import DEFAULT_MODEL

VAL_SEGMENTS = 256  # at most this many held-out segments in the validation loss
LOCK_WAIT_S = 600.0  # how long a finished run waits for another writer of the store to finish


@dataclass(frozen=True)
class TrainJob:
    """What to train: the recipe (flags already applied), the data and the run folder."""

    store: Path
    recipe: Recipe
    corpora: tuple[str, ...]
    out: Path
    exclude_speakers: tuple[str, ...] = ()
    embed_model: str = DEFAULT_MODEL
    resume: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        checked_path(self.out, "--out")
        if self.out.exists() and not self.out.is_dir():
            raise EmodiffError(f"--out {self.out}: a file, not a folder; expected a run folder (a new one, or one to "
                               "--resume)")
        check_name(self.out.name, where=f"--out {self.out}: the run's name (its last folder, /runs/NAME in the store)")


@dataclass
class TrainResult:
    run: Path
    checkpoint: Path
    step: int
    training_speakers: list[str]
    last: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _distributed(device: torch.device) -> Iterator[tuple[int, int]]:
    """(rank, world size); under torchrun (WORLD_SIZE > 1) a process group for the run's length."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield 0, 1
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), world
    finally:
        dist.destroy_process_group()


def _lr(step: int, recipe: Recipe) -> float:
    """Linear warm-up to the recipe's lr over W = warmup_steps, then constant (IDDPM), or cosine:

        lr_t = lr * min(1, (t + 1) / W) * 0.5 (1 + cos(pi * min(1, max(0, t - W) / max(1, T - W))))

    with T = train.steps (a resume with more steps stretches the curve from where it is).
    """
    cfg = recipe.train
    lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if cfg.schedule == "cosine":
        done = min(1.0, max(0, step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        lr *= 0.5 * (1.0 + math.cos(math.pi * done))
    return lr


def _resolve_resume(job: TrainJob) -> tuple[Recipe, dict[str, Any] | None]:
    """The recipe to train with and the checkpoint state to continue from (if resuming)."""
    ckpt = latest_checkpoint(job.out)
    if not job.resume:
        if ckpt is not None:
            raise EmodiffError(
                f"{job.out}: already holds {ckpt.name}; pass --resume to continue it or choose another --out")
        return job.recipe, None
    if ckpt is None:
        raise EmodiffError(f"{job.out}: no checkpoint to resume from")
    state = load_checkpoint(ckpt)
    saved = recipe_from_dict(state["recipe"], f"{ckpt}:recipe")
    # Shape-defining settings come from the checkpoint; a recipe that disagrees is refused,
    # not silently overridden. Only the number of steps may grow.
    shape = family_for(saved).architecture(saved)
    if saved.generator != job.recipe.generator or shape != family_for(job.recipe).architecture(job.recipe):
        raise EmodiffError(f"{ckpt}: trained with other {'/'.join(['generator', *shape])} settings than this "
                           "recipe; resume with the run's own recipe (runs/NAME/recipe.yaml)")
    if list(state["corpora"]) != list(job.corpora) or list(state["exclude_speakers"]) != list(job.exclude_speakers):
        raise EmodiffError(f"{ckpt}: trained on {state['corpora']} excluding {state['exclude_speakers'] or 'nobody'}; "
                           "resume with the same --corpus and --exclude-speakers")
    return dataclasses.replace(saved, train=override(saved.train, "--steps", steps=job.recipe.train.steps)), state


@dataclass
class _Training:
    """A run set up to train: the family's trainer, the examples and what the checkpoints record."""

    recipe: Recipe
    trainer: Trainer
    batches: Batches
    val_batches: list[Batch]
    speakers: list[str]
    fingerprint: dict[str, str]
    norm: MelNormalizer
    segment_frames: int
    gen: torch.Generator
    start: int
    rank: int
    world: int


def train(job: TrainJob, progress: Progress = QUIET) -> TrainResult:
    """Train (or resume) a generator; returns the final checkpoint. See the module docstring.

    ``progress`` hears the number of training steps (a resumed run's done ones advanced at once),
    each step, and at every logged step a note of the loss and the speed.
    """
    device = resolve_device(job.device)
    recipe, state = _resolve_resume(job)
    family_for(recipe).check(recipe)
    st.check_can_write(job.store, Run.path(job.out.name))  # now, not after hours of training
    with _distributed(device) as (rank, world):
        if world > 1 and device.type == "cuda":  # one GPU per process, as torchrun numbers them
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
            torch.cuda.set_device(device)
        run = _setup(job, recipe, state, device, rank, world)
        last, ckpt_path = _loop(job, run, progress if rank == 0 else QUIET)  # one progress bar, not one per process
        if world > 1:
            dist.barrier()
    final = ckpt_path or latest_checkpoint(job.out)
    if final is None:
        raise EmodiffError(f"{job.out}: training ended without a checkpoint")
    result = TrainResult(run=job.out, checkpoint=final, step=recipe.train.steps, training_speakers=run.speakers,
                         last=last)
    if rank == 0:
        try:
            _record_run(job, recipe, result)
        except EmodiffError as err:
            raise EmodiffError(f"{err}; the trained run is safe in {job.out}, and `emodiff train --resume "
                               f"--out {job.out}` with the same flags records it in the store") from None
    return result


def _setup(job: TrainJob, recipe: Recipe, state: dict[str, Any] | None, device: torch.device, rank: int,
           world: int) -> _Training:
    """Data, validation split, normaliser, the family's trainer (restored on resume) and the random stream."""
    cfg = recipe.train
    data, fingerprint = load_segments(job.store, list(job.corpora), job.embed_model,
                                      list(job.exclude_speakers), load=cfg.load, augmented=cfg.augmented)
    family = family_for(recipe)
    family.check_data(recipe, text_dim=int(data.tokens.shape[2]), where=f"the {job.embed_model} embeddings")
    frames = int(data.mel.shape[2])
    if cfg.crop_frames > frames:  # checked before the windows are cut: a huge crop would fill the memory first
        raise EmodiffError(f"train.crop_frames {cfg.crop_frames}: expected 0 or at most the store's segment length, "
                           f"{frames} frames (a window is drawn as one segment, and samples are {frames} frames)")
    train_set, val_set = split(data, cfg.val_fraction, cfg.seed, VAL_SEGMENTS)
    speakers = train_set.speakers()
    if state is not None and state.get("normalizer") is not None:
        norm = MelNormalizer.from_state(state["normalizer"])
    else:
        norm = family.normalizer(recipe, train_set.mel, cfg.seed)
    torch.manual_seed(cfg.seed + rank)
    speaker_index = {spk: i for i, spk in enumerate(speakers)}
    batches = Batches(train_set, norm, speaker_index, device, cfg.crop_frames)
    trainer = family.trainer(TrainSetup(recipe, batches, len(speakers), device, world, rank), state)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    start = 0
    if state is not None:
        path = latest_checkpoint(job.out)
        assert path is not None
        if int(state["world_size"]) != world:
            raise EmodiffError(f"{path}: written by {state['world_size']} process(es); resume it with as many")
        trainer.load_state_dict(state, path)
        gen.set_state(state["generators"][rank])
        torch.set_rng_state(state["torch_rng"][rank])
        start = int(state["step"])
    val_batches = Batches(val_set, norm, speaker_index, device, cfg.crop_frames).fixed(VAL_SEGMENTS, cfg.seed)
    return _Training(recipe, trainer, batches, val_batches, speakers, fingerprint, norm, int(train_set.mel.shape[2]),
                gen, start, rank, world)


def _loop(job: TrainJob, run: _Training, progress: Progress) -> tuple[dict[str, float], Path | None]:
    """Steps ``run.start`` .. ``train.steps``: train, log, validate, checkpoint; (last metrics, last checkpoint)."""
    recipe, cfg = run.recipe, run.recipe.train
    log = None
    if run.rank == 0:
        job.out.mkdir(parents=True, exist_ok=True)
        log = _Log(job.out / "metrics.jsonl", resumed_at=run.start)
        (job.out / "recipe.yaml").write_text(_yaml(recipe))
    last: dict[str, float] = {}
    tick, tick_step = time.perf_counter(), run.start
    ckpt_path = None
    progress.total(cfg.steps)
    progress.advance(run.start)
    for step in range(run.start, cfg.steps):
        metrics = run.trainer.step(run.batches.draw(cfg.batch_size, run.gen, cfg.cond_dropout), run.gen,
                                   _lr(step, recipe))
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            now = time.perf_counter()
            last = {**{k: float(v) for k, v in metrics.items()}, "lr": _lr(step, recipe),
                    "steps_per_s": (done - tick_step) / max(now - tick, 1e-9)}
            if done % cfg.val_every == 0 or done == cfg.steps:
                last.update(run.trainer.validate(run.val_batches, cfg.seed))
            if log is not None:
                log.write({"step": done, **last})
            progress.note(f"loss {last['loss']:.4f}, {last['steps_per_s']:.1f} steps/s")
            tick, tick_step = time.perf_counter(), done  # validation time stays out of steps/s
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            state = _state(run, job)  # every rank joins the gather of generator states; rank 0 alone writes
            if run.rank == 0:
                ckpt_path = save_checkpoint(job.out, done, state)
        progress.advance()
    return last, ckpt_path


def _record_run(job: TrainJob, recipe: Recipe, result: TrainResult) -> None:
    """``/runs/<name>``: where the run's files are, so ``sample`` finds the latest run by itself."""
    config = {"run": str(job.out.resolve()), "corpora": list(job.corpora), "recipe": recipe.to_dict()}
    Run.write(job.store, job.out.name, config=config, folder=job.out.resolve(), checkpoint=result.checkpoint.resolve(),
              sha256=sha256_file(result.checkpoint), step=result.step, corpora=job.corpora,
              exclude_speakers=job.exclude_speakers, embed_model=job.embed_model,
              training_speakers=result.training_speakers, final=result.last, generator=recipe.generator,
              wait_s=LOCK_WAIT_S)


def _state(run: _Training, job: TrainJob) -> dict[str, Any]:
    """Everything a resume needs, as tensors and plain values (torch.load(weights_only=True) reads it)."""
    generators, rngs = [run.gen.get_state()], [torch.get_rng_state()]
    if run.world > 1:  # rank 0 writes, so it collects the other ranks' generator states
        generators = [torch.zeros_like(generators[0]) for _ in range(run.world)]
        rngs = [torch.zeros_like(rngs[0]) for _ in range(run.world)]
        dist.all_gather(generators, run.gen.get_state())
        dist.all_gather(rngs, torch.get_rng_state())
    return {
        **run.trainer.state_dict(),
        "generators": generators, "torch_rng": rngs, "world_size": run.world,
        "recipe": run.recipe.to_dict(), "training_speakers": run.speakers, "corpora": list(job.corpora),
        "segment_frames": run.segment_frames, "normalizer": run.norm.state_dict(),
        "exclude_speakers": list(job.exclude_speakers), "embed_model": job.embed_model,
        "store": str(job.store.resolve()), "store_fingerprint": run.fingerprint, "emodiff_version": __version__,
    }


class _Log:
    """Append-only JSONL metrics log (one object per logged step).

    A run starts at step ``resumed_at`` (0, or its checkpoint's step), so the records an interrupted run
    wrote past it are dropped first (with any line the interruption cut off): one record per step, also
    for a run that was killed before its first checkpoint and started again.
    """

    def __init__(self, path: Path, resumed_at: int = 0):
        self.path = path
        if path.exists():
            kept = [ln for ln in path.read_text(encoding="utf-8").splitlines() if _step_of(ln) <= resumed_at]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
            os.replace(tmp, path)

    def write(self, record: dict[str, float]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                                for k, v in record.items()}) + "\n")


def _step_of(line: str) -> float:
    """The ``step`` of one metrics line; infinity for a line that is not a whole record."""
    try:
        record = json.loads(line)
        return float(record["step"]) if isinstance(record, dict) else math.inf
    except (ValueError, KeyError, TypeError):
        return math.inf


def _yaml(recipe: Recipe) -> str:
    import yaml

    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
