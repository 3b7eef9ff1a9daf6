"""``emodiff train``: the text-conditioned IDDPM on stored mel segments, in one readable loop.

The training set is read from the store once into memory. Every random draw of the loop
(batch rows, timesteps, noise) comes from one seeded generator per process whose state is
checkpointed with the model, EMA, optimizer and step, so ``--resume`` continues exactly where
a run stopped: on a CPU an interrupted-and-resumed run ends with the same weights as an
uninterrupted one. Under ``torchrun`` each process trains on its own batches with DDP; rank 0
alone logs and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from emodiff import __version__
from emodiff import store as st
from emodiff.checkpoint import latest_checkpoint, load_checkpoint, load_weights, save_checkpoint, sha256_file
from emodiff.config import Recipe, override, recipe_from_dict
from emodiff.devices import autocast_forward, resolve_device
from emodiff.diffusion import LossSecondMomentResampler, create_diffusion, create_named_schedule_sampler
from emodiff.diffusion.denoiser import Denoiser
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.errors import EmodiffError
from emodiff.segments import SegmentSet, load_segments
from emodiff.text import DEFAULT_MODEL

VAL_SEGMENTS = 256  # at most this many held-out segments in the validation loss


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


@dataclass
class TrainResult:
    run: Path
    checkpoint: Path
    step: int
    training_speakers: list[str]
    last: dict[str, float] = field(default_factory=dict)


class EMA:
    """Exponential moving average of a model's parameters: ema = d * ema + (1 - d) * theta."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)


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


def _split(data: SegmentSet, fraction: float, seed: int) -> tuple[SegmentSet, SegmentSet]:
    """Hold out a seeded ``fraction`` of utterances (all their segments) for the validation loss."""
    utts = np.unique(data.utt.numpy())
    rng = np.random.default_rng(seed)
    held = set(rng.choice(utts, size=max(1, round(fraction * len(utts))), replace=False).tolist())
    is_val = np.isin(data.utt.numpy(), list(held))
    if is_val.all():
        raise EmodiffError("the validation split took every utterance; lower train.val_fraction or add data")
    val_rows = np.flatnonzero(is_val)[:VAL_SEGMENTS]
    return data.subset(np.flatnonzero(~is_val)), data.subset(val_rows)


def _lr(step: int, recipe: Recipe) -> float:
    """Linear warm-up to the recipe's lr, then constant (IDDPM trains at a constant rate)."""
    cfg = recipe.train
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


def _batch(data: SegmentSet, rows: torch.Tensor, norm: MelNormalizer,
           device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(x_0 [B, C, F] normalised, model kwargs) of the segments ``rows``."""
    tokens, mask = data.conditions(rows)
    x0 = norm.forward(data.mel[rows].to(device, torch.float32))
    return x0, {"tokens": tokens.to(device), "mask": mask.to(device)}


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
    if (saved.diffusion, saved.denoiser) != (job.recipe.diffusion, job.recipe.denoiser):
        raise EmodiffError(f"{ckpt}: trained with other diffusion/denoiser settings than this recipe; "
                           "resume with the run's own recipe (runs/NAME/recipe.yaml)")
    if list(state["corpora"]) != list(job.corpora) or list(state["exclude_speakers"]) != list(job.exclude_speakers):
        raise EmodiffError(f"{ckpt}: trained on {state['corpora']} excluding {state['exclude_speakers'] or 'nobody'}; "
                           "resume with the same --corpus and --exclude-speakers")
    return dataclasses.replace(saved, train=override(saved.train, "--steps", steps=job.recipe.train.steps)), state


def train(job: TrainJob, on_step: Callable[[int, int, dict[str, float]], None] = lambda s, n, m: None) -> TrainResult:
    """Train (or resume) a denoiser; returns the final checkpoint. See the module docstring."""
    device = resolve_device(job.device)
    recipe, state = _resolve_resume(job)
    cfg = recipe.train
    with _distributed(device) as (rank, world):
        if world > 1 and device.type == "cuda":  # one GPU per process, as torchrun numbers them
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
            torch.cuda.set_device(device)
        data, fingerprint = load_segments(job.store, list(job.corpora), job.embed_model,
                                          list(job.exclude_speakers), load=cfg.load)
        if data.tokens.shape[2] != recipe.denoiser.text_dim:
            raise EmodiffError(f"recipe denoiser.text_dim is {recipe.denoiser.text_dim} but the {job.embed_model} "
                               f"embeddings are {data.tokens.shape[2]}-dimensional; set text_dim in the recipe")
        train_set, val_set = _split(data, cfg.val_fraction, cfg.seed)
        speakers = train_set.speakers()
        channels = recipe.denoiser.mel_channels
        if state is not None and state.get("normalizer") is not None:
            norm = MelNormalizer.from_state(state["normalizer"])
        elif recipe.diffusion.normalize == "center":
            norm = MelNormalizer.fit(train_set.mel, seed=cfg.seed)
        else:
            norm = MelNormalizer.identity(channels)

        torch.manual_seed(cfg.seed + rank)
        diffusion = create_diffusion(recipe.diffusion)
        model = Denoiser(recipe.denoiser, learn_sigma=recipe.diffusion.learn_sigma).to(device)
        ema = EMA(model, cfg.ema_decay)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sampler = create_named_schedule_sampler(recipe.diffusion.timestep_sampler, diffusion)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
        start = 0
        if state is not None:
            path = latest_checkpoint(job.out)
            if int(state["world_size"]) != world:
                raise EmodiffError(f"{path}: written by {state['world_size']} process(es); resume it with as many")
            load_weights(model, state["model"], path)
            load_weights(ema.model, state["ema"], path)
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generators"][rank])
            torch.set_rng_state(state["torch_rng"][rank])
            if hasattr(sampler, "load_state_dict") and state.get("sampler") is not None:
                sampler.load_state_dict(state["sampler"])
            start = int(state["step"])

        net: torch.nn.Module = model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile and device.type == "cuda":
            net = torch.compile(net)
        forward = autocast_forward(net, device, cfg.bf16)
        ema_forward = autocast_forward(ema.model, device, cfg.bf16)

        log = _Log(job.out / "metrics.jsonl") if rank == 0 else None
        if rank == 0:
            job.out.mkdir(parents=True, exist_ok=True)
            (job.out / "recipe.yaml").write_text(_yaml(recipe))
        last: dict[str, float] = {}
        tick, tick_step = time.perf_counter(), start
        ckpt_path = None
        for step in range(start, cfg.steps):
            for group in opt.param_groups:
                group["lr"] = _lr(step, recipe)
            rows = torch.randint(len(train_set), (cfg.batch_size,), generator=gen)
            x0, kwargs = _batch(train_set, rows, norm, device)
            t, weights = sampler.sample(cfg.batch_size, device, generator=gen)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            losses = diffusion.training_losses(forward, x0, t, model_kwargs=kwargs, noise=noise)
            loss = (losses["loss"] * weights).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            ema.update(model)
            _update_sampler(sampler, t, losses["loss"].detach(), world)

            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                now = time.perf_counter()
                last = {"loss": loss.item(), "mse": losses["mse"].mean().item(), "vb": losses["vb"].mean().item(),
                        "grad_norm": float(grad_norm), "lr": _lr(step, recipe),
                        "steps_per_s": (done - tick_step) / max(now - tick, 1e-9)}
                if done % cfg.val_every == 0 or done == cfg.steps:
                    last["val_loss"] = _val_loss(diffusion, forward, val_set, norm, device, cfg.seed)
                    last["val_loss_ema"] = _val_loss(diffusion, ema_forward, val_set, norm, device, cfg.seed)
                if log is not None:
                    log.write({"step": done, **last})
                tick, tick_step = time.perf_counter(), done  # validation time stays out of steps/s
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                # every rank joins the gather of generator states; rank 0 alone writes
                ckpt_state = _state(model, ema, opt, sampler, gen, recipe, speakers, fingerprint, job, world,
                                    train_set.mel.shape[2], norm)
                if rank == 0:
                    ckpt_path = save_checkpoint(job.out, done, ckpt_state)
            if rank == 0:  # one progress bar, not one per process
                on_step(done, cfg.steps, last)
        if world > 1:
            dist.barrier()
    final = ckpt_path or latest_checkpoint(job.out)
    if final is None:
        raise EmodiffError(f"{job.out}: training ended without a checkpoint")
    result = TrainResult(run=job.out, checkpoint=final, step=cfg.steps, training_speakers=speakers, last=last)
    if rank == 0:
        _record_run(job, recipe, result)
    return result


def _record_run(job: TrainJob, recipe: Recipe, result: TrainResult) -> None:
    """``/runs/<name>``: where the run's files are, so ``sample`` finds the latest run by itself."""
    config = {"run": str(job.out.resolve()), "corpora": list(job.corpora), "recipe": recipe.to_dict()}
    with st.write_group(job.store, f"runs/{job.out.name}", config=config, overwrite=True,
                        what=f"train {job.out.name}") as g:
        st.write_table(g, {"training_speakers": result.training_speakers})
        g.attrs.update(path=str(job.out.resolve()), checkpoint=str(result.checkpoint.resolve()),
                       checkpoint_sha256=sha256_file(result.checkpoint), step=result.step,
                       corpora=json.dumps(list(job.corpora)), exclude_speakers=json.dumps(list(job.exclude_speakers)),
                       embed_model=job.embed_model, training_speakers=json.dumps(result.training_speakers),
                       **{f"final_{k}": v for k, v in result.last.items()})


@torch.no_grad()
def _val_loss(diffusion: Any, forward: Callable[..., torch.Tensor], val: SegmentSet, norm: MelNormalizer,
              device: torch.device, seed: int) -> float:
    """Mean hybrid loss over the held-out segments at fixed, seeded timesteps and noise."""
    gen = torch.Generator().manual_seed(seed + 12345)
    total, count = 0.0, 0
    for lo in range(0, len(val), 64):
        rows = torch.arange(lo, min(lo + 64, len(val)))
        x0, kwargs = _batch(val, rows, norm, device)
        t = torch.randint(diffusion.num_timesteps, (len(rows),), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        total += diffusion.training_losses(forward, x0, t, model_kwargs=kwargs, noise=noise)["loss"].sum().item()
        count += len(rows)
    return total / max(count, 1)


def _update_sampler(sampler: Any, t: torch.Tensor, losses: torch.Tensor, world: int) -> None:
    if not isinstance(sampler, LossSecondMomentResampler):
        return
    if world > 1:  # every rank keeps the same loss history: gather all ranks' (t, loss)
        ts, ls = [torch.zeros_like(t) for _ in range(world)], [torch.zeros_like(losses) for _ in range(world)]
        dist.all_gather(ts, t)
        dist.all_gather(ls, losses)
        t, losses = torch.cat(ts), torch.cat(ls)
    sampler.update_with_local_losses(t, losses)


def _state(model: torch.nn.Module, ema: EMA, opt: torch.optim.Optimizer, sampler: Any, gen: torch.Generator,
           recipe: Recipe, speakers: list[str], fingerprint: dict[str, str], job: TrainJob, world: int,
           segment_frames: int, norm: MelNormalizer) -> dict:
    """Everything a resume needs, as tensors and plain values (torch.load(weights_only=True) reads it)."""
    generators, rngs = [gen.get_state()], [torch.get_rng_state()]
    if world > 1:  # rank 0 writes, so it collects the other ranks' generator states
        generators = [torch.zeros_like(generators[0]) for _ in range(world)]
        rngs = [torch.zeros_like(rngs[0]) for _ in range(world)]
        dist.all_gather(generators, gen.get_state())
        dist.all_gather(rngs, torch.get_rng_state())
    return {
        "model": model.state_dict(), "ema": ema.model.state_dict(), "optimizer": opt.state_dict(),
        "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
        "generators": generators, "torch_rng": rngs, "world_size": world,
        "recipe": recipe.to_dict(), "training_speakers": speakers, "corpora": list(job.corpora),
        "segment_frames": int(segment_frames), "normalizer": norm.state_dict(),
        "exclude_speakers": list(job.exclude_speakers), "embed_model": job.embed_model,
        "store": str(job.store.resolve()), "store_fingerprint": fingerprint, "emodiff_version": __version__,
    }


class _Log:
    """Append-only JSONL metrics log (one object per logged step)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict[str, float]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
                                for k, v in record.items()}) + "\n")


def _yaml(recipe: Recipe) -> str:
    import yaml

    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
