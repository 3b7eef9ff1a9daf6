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
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.diffusion.wiener import BlockWiener
from emodiff.errors import EmodiffError
from emodiff.objectives import build_denoiser, conditions, load_wiener, make_objective
from emodiff.segments import SegmentSet, UtteranceWindows, load_segments
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
    """Exponential moving average of a model's parameters: ema = d * ema + (1 - d) * theta.

    With ``warmup`` the decay at update k (k = 0, 1, ...) is min(decay, (1 + k) / (10 + k)), so the
    average forgets the random initial weights within the first hundred steps instead of after
    1 / (1 - decay) steps: at decay 0.999 and 400 steps, a plain EMA still holds 67 % of them.
    """

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = False):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.updates += 1


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


class _Batches:
    """Where training examples come from: whole stored segments, or random windows of utterances
    (``train.crop_frames``); both give (x_0 [B, C, F] normalised, model kwargs)."""

    def __init__(self, recipe: Recipe, data: SegmentSet, norm: MelNormalizer, speaker_index: dict[str, int],
                 device: torch.device) -> None:
        self.recipe, self.data, self.norm, self.speaker_index, self.device = recipe, data, norm, speaker_index, device
        crop = recipe.train.crop_frames
        self.windows = UtteranceWindows(data, crop) if crop else None

    def draw(self, batch: int, gen: torch.Generator, dropout: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.windows is not None:
            mel, utt = self.windows.draw(batch, gen)
        else:
            rows = torch.randint(len(self.data), (batch,), generator=gen)
            mel, utt = self.data.mel[rows], self.data.utt[rows]
        kwargs = conditions(self.recipe, self.data, utt, self.speaker_index, self.device, gen, dropout)
        return self.norm.forward(mel.to(self.device, torch.float32)), kwargs

    def fixed(self, limit: int, seed: int) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Up to ``limit`` examples in batches of 64, the same on every call (seeded): the validation set."""
        gen = torch.Generator().manual_seed(seed + 54321)
        n = min(limit, len(self.data)) if self.windows is None else min(limit, 4 * len(self.windows))
        out = []
        for lo in range(0, n, 64):
            if self.windows is None:
                rows = torch.arange(lo, min(lo + 64, n))
                mel, utt = self.data.mel[rows], self.data.utt[rows]
                x0 = self.norm.forward(mel.to(self.device, torch.float32))
                out.append((x0, conditions(self.recipe, self.data, utt, self.speaker_index, self.device)))
            else:
                x0, kwargs = self.draw(min(64, n - lo), gen, 0.0)
                out.append((x0, kwargs))
        return out


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
        speaker_index = {spk: i for i, spk in enumerate(speakers)}
        batches = _Batches(recipe, train_set, norm, speaker_index, device)
        sigma_data, wiener = _data_moments(recipe, state, batches, cfg.seed)
        objective = make_objective(recipe, sigma_data, wiener)
        model = build_denoiser(recipe, len(speakers)).to(device)
        ema = EMA(model, cfg.ema_decay, warmup=cfg.ema_warmup)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
        start = 0
        if state is not None:
            start = _restore(job, state, world, rank, model, ema, opt, gen, objective)
        net: torch.nn.Module = model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile and device.type == "cuda":
            net = torch.compile(net)
        forward = autocast_forward(net, device, cfg.bf16)
        ema_forward = autocast_forward(ema.model, device, cfg.bf16)
        val_batches = _Batches(recipe, val_set, norm, speaker_index, device).fixed(VAL_SEGMENTS, cfg.seed)

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
            x0, kwargs = batches.draw(cfg.batch_size, gen, cfg.cond_dropout)
            loss, losses = objective.losses(forward, x0, kwargs, gen, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            ema.update(model)
            objective.after_step(losses, world)

            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                now = time.perf_counter()
                last = {"loss": loss.item(), "mse": losses["mse"].mean().item(),
                        **({"vb": losses["vb"].mean().item()} if "vb" in losses else {}),
                        "grad_norm": float(grad_norm), "lr": _lr(step, recipe),
                        "steps_per_s": (done - tick_step) / max(now - tick, 1e-9)}
                if done % cfg.val_every == 0 or done == cfg.steps:
                    last["val_loss"] = objective.val_loss(forward, val_batches, cfg.seed)
                    last["val_loss_ema"] = objective.val_loss(ema_forward, val_batches, cfg.seed)
                if log is not None:
                    log.write({"step": done, **last})
                tick, tick_step = time.perf_counter(), done  # validation time stays out of steps/s
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                # every rank joins the gather of generator states; rank 0 alone writes
                ckpt_state = _state(model, ema, opt, objective, gen, recipe, speakers, fingerprint, job, world,
                                    train_set.mel.shape[2], norm, sigma_data, wiener)
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


WIENER_EXAMPLES = 2048  # training examples the Wiener filter's moments are estimated from


def _data_moments(recipe: Recipe, state: dict[str, Any] | None, batches: _Batches,
                  seed: int) -> tuple[float, BlockWiener | None]:
    """EDM's sigma_data and the Wiener skip's filter: the checkpoint's on resume; else sigma_data from the
    recipe when set, and what is needed measured on (normalised) training examples."""
    if state is not None:
        return float(state.get("sigma_data") or 1.0), load_wiener(state)
    d = recipe.diffusion
    need_sigma = d.parameterization == "edm" and d.sigma_data == 0
    need_wiener = d.parameterization != "eps" and d.skip == "wiener"
    x0 = torch.cat([x for x, _ in batches.fixed(WIENER_EXAMPLES, seed)]) if need_sigma or need_wiener else None
    sigma_data = float(x0.double().std()) if need_sigma and x0 is not None else (d.sigma_data or 1.0)
    if need_wiener and x0 is not None:
        if x0.shape[2] % d.wiener_block:
            raise EmodiffError(f"diffusion.wiener_block {d.wiener_block} does not divide the {x0.shape[2]} training "
                               "frames (train.crop_frames or the segment length)")
        return sigma_data, BlockWiener.fit(x0.cpu(), d.wiener_block)
    return sigma_data, None


def _restore(job: TrainJob, state: dict[str, Any], world: int, rank: int, model: torch.nn.Module, ema: EMA,
             opt: torch.optim.Optimizer, gen: torch.Generator, objective: Any) -> int:
    """Load a checkpoint's weights, optimizer, random states and objective state; returns its step."""
    path = latest_checkpoint(job.out)
    if int(state["world_size"]) != world:
        raise EmodiffError(f"{path}: written by {state['world_size']} process(es); resume it with as many")
    load_weights(model, state["model"], path)
    load_weights(ema.model, state["ema"], path)
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generators"][rank])
    torch.set_rng_state(state["torch_rng"][rank])
    objective.load_state_dict(state.get("sampler"))
    ema.updates = int(state["step"])  # one EMA update per step: the warm-up resumes where it was
    return int(state["step"])


def _state(model: torch.nn.Module, ema: EMA, opt: torch.optim.Optimizer, objective: Any, gen: torch.Generator,
           recipe: Recipe, speakers: list[str], fingerprint: dict[str, str], job: TrainJob, world: int,
           segment_frames: int, norm: MelNormalizer, sigma_data: float, wiener: BlockWiener | None) -> dict:
    """Everything a resume needs, as tensors and plain values (torch.load(weights_only=True) reads it)."""
    generators, rngs = [gen.get_state()], [torch.get_rng_state()]
    if world > 1:  # rank 0 writes, so it collects the other ranks' generator states
        generators = [torch.zeros_like(generators[0]) for _ in range(world)]
        rngs = [torch.zeros_like(rngs[0]) for _ in range(world)]
        dist.all_gather(generators, gen.get_state())
        dist.all_gather(rngs, torch.get_rng_state())
    return {
        "model": model.state_dict(), "ema": ema.model.state_dict(), "optimizer": opt.state_dict(),
        "sampler": objective.state_dict(), "sigma_data": float(sigma_data),
        "wiener": wiener.state_dict() if wiener is not None else None,
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
