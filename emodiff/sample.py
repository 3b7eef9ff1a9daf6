"""``emodiff sample``: a trained run's EMA denoiser -> ``/synthetic/<name>`` (mels + conditions).

Conditions are balanced over the four emotions (or ``--emotion``) and the run's training
speakers (or ``--speaker``). Each sample's text is the transcript of a training utterance of
that speaker (one of the same emotion where there is one), worded with the template and
encoded by the text model the run was trained with. Batch ``i`` draws its noise from a
generator seeded with (seed, i), so the set does not depend on the batch schedule, and an
interrupted run resumes at the first batch it had not written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from emodiff import store as st
from emodiff.checkpoint import latest_checkpoint, load_checkpoint, load_weights, sha256_file
from emodiff.config import Sampler, recipe_from_dict
from emodiff.devices import autocast_forward, resolve_device
from emodiff.diffusion import create_diffusion
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.diffusion.preconditioned import SAMPLERS, PreconditionedDiffusion
from emodiff.emotions import EMOTIONS, emotion_id
from emodiff.errors import EmodiffError
from emodiff.objectives import build_denoiser, load_wiener
from emodiff.segments import speaker_matches
from emodiff.silence import synthetic_frames
from emodiff.text import TextEncoder, render_condition


@dataclass(frozen=True)
class SampleJob:
    store: Path
    n: int
    run: str | None = None  # a /runs name in the store, a run folder or a checkpoint file; None: the latest run
    steps: int | None = None  # respaced steps S; None: the recipe's
    sampler: Sampler | None = None
    eta: float | None = None
    emotions: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()
    batch_size: int | None = None
    seed: int = 0
    name: str | None = None
    device: str = "auto"
    overwrite: bool = False
    guidance: float | None = None  # classifier-free guidance W; None: the recipe's

    def __post_init__(self) -> None:
        if self.n < 1:
            raise EmodiffError(f"--n must be at least 1, got {self.n}")
        if self.steps is not None and self.steps < 1:
            raise EmodiffError(f"--steps must be at least 1, got {self.steps}")
        if self.sampler not in (None, *SAMPLERS):
            raise EmodiffError(f"--sampler {self.sampler!r}: expected one of {', '.join(SAMPLERS)}")
        if self.eta is not None and not 0.0 <= self.eta <= 1.0:
            raise EmodiffError(f"--eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM), got {self.eta}")
        if self.batch_size is not None and self.batch_size < 1:
            raise EmodiffError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.guidance is not None and not 0.0 <= self.guidance <= 20.0:
            raise EmodiffError(f"--guidance must be in [0, 20], got {self.guidance}")
        for e in self.emotions:
            if e not in EMOTIONS:
                raise EmodiffError(f"--emotion {e!r}: expected one of {', '.join(EMOTIONS)}")


@dataclass
class SampleResult:
    group: str
    n: int
    resumed_from: int
    seconds: float
    checkpoint: Path
    already_there: bool = False


def find_checkpoint(store: Path, run: str | None) -> tuple[Path, str]:
    """(checkpoint path, run name) for ``--run``: a store run name, a folder, a .pt file, or the latest run."""
    if run is not None and Path(run).suffix == ".pt":
        return Path(run), Path(run).parent.name
    if run is not None and Path(run).is_dir():
        ckpt = latest_checkpoint(Path(run))
        if ckpt is None:
            raise EmodiffError(f"{run}: no checkpoint in this run folder")
        return ckpt, Path(run).name
    with st.open_store(store) as f:
        runs = {k: st.attrs_dict(f["runs"][k]) for k in st.visible(f["runs"])} if "runs" in f else {}
    if not runs:
        raise EmodiffError(f"{store}: no trained run recorded; run `emodiff train --recipe recipes/demo.yaml` first")
    name = run or max(runs, key=lambda k: str(runs[k].get("created", "")))
    if name not in runs:
        raise EmodiffError(f"{store}: no run {name!r}; runs: {', '.join(sorted(runs))}")
    return Path(str(runs[name]["checkpoint"])), name


def check_recorded_hash(store: Path, ckpt: Path) -> None:
    """Refuse a checkpoint whose sha256 differs from the one a ``/runs`` group of the store recorded for that
    file. The run folder's checkpoints.json can be deleted or rewritten along with the file; the store's
    record is the one ``train`` wrote when the run finished."""
    if not Path(store).exists():
        return
    target = Path(ckpt).resolve()
    with st.open_store(store) as f:
        runs = f["runs"] if "runs" in f and isinstance(f["runs"], h5py.Group) else None
        recorded = [st.attrs_dict(runs[k]) for k in st.visible(runs)] if runs is not None else []
    for attrs in recorded:
        if Path(str(attrs.get("checkpoint", ""))).resolve() == target and "checkpoint_sha256" in attrs:
            if sha256_file(target) != str(attrs["checkpoint_sha256"]):
                raise EmodiffError(f"{ckpt}: sha256 differs from the one {store} recorded for this run when it "
                                   "finished; the checkpoint was modified or replaced")
            return


def plan_conditions(utterances: dict[str, np.ndarray], n: int, emotions: list[int], speakers: list[str],
                    seed: int) -> list[int]:
    """Rows of ``utterances`` whose speaker and transcript each sample borrows, balanced.

    Sample i gets emotion ``emotions[i % E]`` and speaker ``speakers[(i // E) % S]``; its text is
    the transcript of a random utterance of that speaker, of that emotion where one exists.
    Returns, per sample, the chosen utterance row (the emotion is set separately).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        emotion, speaker = emotions[i % len(emotions)], speakers[(i // len(emotions)) % len(speakers)]
        of_speaker = np.flatnonzero(utterances["speaker"] == speaker)
        same = of_speaker[utterances["emotion"][of_speaker] == emotion]
        rows.append(int(rng.choice(same if len(same) else of_speaker)))
    return rows


def sample(job: SampleJob, on_total: Callable[[int], None] = lambda n: None,
           on_advance: Callable[[int], None] = lambda k: None) -> SampleResult:
    """Draw ``job.n`` segments from a trained run into ``/synthetic/<name>``; see the module docstring."""
    start = time.perf_counter()
    ckpt_path, run_name = find_checkpoint(job.store, job.run)
    check_recorded_hash(job.store, ckpt_path)
    state = load_checkpoint(ckpt_path)
    recipe = recipe_from_dict(state["recipe"], f"{ckpt_path}:recipe")
    steps = job.steps or recipe.sample.steps
    sampler = job.sampler or recipe.sample.sampler
    eta = recipe.sample.eta if job.eta is None else job.eta
    batch = job.batch_size or recipe.sample.batch_size
    guidance = recipe.sample.guidance if job.guidance is None else job.guidance
    device = resolve_device(job.device)
    param = recipe.diffusion.parameterization
    if param == "eps":
        if sampler not in ("ddpm", "ddim"):
            raise EmodiffError(f"--sampler {sampler}: the IDDPM (eps) model of {ckpt_path} samples with ddpm or ddim")
        if steps > recipe.diffusion.steps:
            raise EmodiffError(f"--steps {steps}: the model of {ckpt_path} was trained on "
                               f"{recipe.diffusion.steps} diffusion steps; sample with at most that many")
        if guidance:
            raise EmodiffError(f"--guidance {guidance}: the IDDPM (eps) model of {ckpt_path} is trained without "
                               "condition dropout, so it has no unconditional model to guide with")

    trained = list(state["training_speakers"])
    speakers = [s for s in trained if speaker_matches(s, list(job.speakers))] if job.speakers else trained
    if not speakers:
        raise EmodiffError(f"--speaker {', '.join(job.speakers)}: not among the run's training speakers "
                           f"({', '.join(trained)})")
    emotions = [emotion_id(e) for e in job.emotions] or list(range(len(EMOTIONS)))
    utterances, template, model_source = _training_utterances(job.store, state)
    rows = plan_conditions(utterances, job.n, emotions, speakers, job.seed)
    sample_emotion = np.array([emotions[i % len(emotions)] for i in range(job.n)], dtype=np.int8)
    texts = []
    for r, e in zip(rows, sample_emotion, strict=True):
        corpus, _, spk = str(utterances["speaker"][r]).partition(":")
        texts.append(render_condition(template, text=str(utterances["text"][r]), emotion=int(e), speaker=spk,
                                      gender=str(utterances["gender"][r]), corpus=corpus))

    name = job.name or run_name
    config = {"checkpoint_sha256": sha256_file(ckpt_path), "n": job.n, "steps": steps, "sampler": sampler,
              "eta": eta, "seed": job.seed, "emotions": emotions, "speakers": speakers, "batch_size": batch,
              **({"guidance": guidance} if param != "eps" else {})}
    if not job.overwrite and st.has_group(job.store, f"synthetic/{name}"):
        with st.open_store(job.store) as f:
            same = f[f"synthetic/{name}"].attrs.get("config_hash") == st.config_hash(config)[1]
        if not same:
            raise EmodiffError(f"{job.store}: already holds /synthetic/{name}, drawn with other settings; "
                               "pass --overwrite to replace it or --name for a new set")
        return SampleResult(group=f"/synthetic/{name}", n=job.n, resumed_from=0, seconds=0.0,
                            checkpoint=ckpt_path, already_there=True)
    model = build_denoiser(recipe, len(trained))
    load_weights(model, state["ema"], ckpt_path)
    forward = autocast_forward(model.to(device).eval(), device, recipe.train.bf16)
    norm = (MelNormalizer.from_state(state["normalizer"]) if state.get("normalizer") is not None
            else MelNormalizer.identity(recipe.denoiser.mel_channels))
    if param == "eps":
        diffusion: Any = create_diffusion(recipe.diffusion, respace=steps, clip_bounds=norm.bounds())
    else:
        diffusion = PreconditionedDiffusion.from_config(recipe.diffusion, float(state.get("sigma_data") or 1.0),
                                                        load_wiener(state))
    frames = int(state.get("segment_frames", 256))
    encoder = TextEncoder(model_source, device=str(device))
    speaker_ids = torch.tensor([trained.index(str(utterances["speaker"][r])) for r in rows])

    with st.write_group(job.store, f"synthetic/{name}", config=config, overwrite=job.overwrite,
                        what=f"sample {name}", resumable=True) as g:
        mel = g.require_dataset("mel", shape=(job.n, recipe.denoiser.mel_channels, frames), dtype=np.float16,
                                chunks=(1, recipe.denoiser.mel_channels, frames), shuffle=True, compression="gzip",
                                compression_opts=1)
        cond = g.require_dataset("cond", shape=(job.n, encoder.dim), dtype=np.float32)
        valid = g.require_dataset("frames", shape=(job.n,), dtype=np.int64)
        done = int(g.attrs.get("rows_done", 0))
        on_total(job.n)
        on_advance(done)
        for lo in range(done - done % batch, job.n, batch):
            hi = min(lo + batch, job.n)
            pooled, tokens, lengths = encoder.encode(texts[lo:hi])
            draw = Draw(tokens, lengths, torch.from_numpy(sample_emotion[lo:hi]).long(), speaker_ids[lo:hi])
            out = _draw(forward, diffusion, How(sampler, steps, eta, guidance), draw,
                        (recipe.denoiser.mel_channels, frames), job.seed, lo // batch, device, norm)
            mel[lo:hi] = out.astype(np.float16)
            valid[lo:hi] = synthetic_frames(out)
            cond[lo:hi] = pooled
            g.attrs["rows_done"] = hi
            g.file.flush()
            on_advance(hi - max(lo, done))
        st.write_table(g, {
            "emotion": sample_emotion,
            "speaker": [str(utterances["speaker"][r]) for r in rows],
            "text": texts,
            "source_utterance": [str(utterances["id"][r]) for r in rows],
        })
        del g.attrs["rows_done"]
        g.attrs.update(checkpoint=str(ckpt_path.resolve()), checkpoint_sha256=config["checkpoint_sha256"],
                       run=run_name, sampler=sampler, steps=steps, eta=eta, seed=job.seed, guidance=guidance,
                       parameterization=param,
                       training_speakers=json.dumps(trained), embed_model=str(state["embed_model"]),
                       template=template, recipe=json.dumps(recipe.to_dict()))
    return SampleResult(group=f"/synthetic/{name}", n=job.n, resumed_from=done,
                        seconds=time.perf_counter() - start, checkpoint=ckpt_path)


@dataclass(frozen=True)
class How:
    """How to sample: the sampler, its steps, DDIM's eta and the guidance weight."""

    sampler: str
    steps: int
    eta: float
    guidance: float


@dataclass(frozen=True)
class Draw:
    """The conditions of one batch: token vectors [B, L, D] and lengths [B], emotion [B], speaker index [B]."""

    tokens: np.ndarray
    lengths: np.ndarray
    emotion: torch.Tensor
    speaker: torch.Tensor


@torch.no_grad()
def _draw(model: Callable[..., torch.Tensor], diffusion: Any, how: How, draw: Draw, shape: tuple[int, int],
          seed: int, index: int, device: torch.device, norm: MelNormalizer) -> np.ndarray:
    """One batch of mels [B, *shape] (channels, frames) in [-1, 1], from noise seeded by (seed, batch index)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    b = len(draw.lengths)
    tok = torch.from_numpy(draw.tokens).float().to(device)
    mask = (torch.arange(tok.shape[1])[None, :] < torch.from_numpy(np.asarray(draw.lengths))[:, None]).to(device)
    noise = torch.randn((b, *shape), generator=gen).to(device)
    kwargs = {"tokens": tok, "mask": mask}
    if isinstance(diffusion, PreconditionedDiffusion):
        kwargs.update(emotion=draw.emotion.to(device), speaker=draw.speaker.to(device))
        denoise = guided_denoiser(model, diffusion, kwargs, how.guidance, norm)
        x = diffusion.sample_loop(denoise, noise, how.steps, sampler=how.sampler, eta=how.eta, generator=gen)
    elif how.sampler == "ddim":
        x = diffusion.ddim_sample_loop(model, noise.shape, model_kwargs=kwargs, eta=how.eta, noise=noise,
                                       generator=gen)
    else:
        x = diffusion.p_sample_loop(model, noise.shape, model_kwargs=kwargs, noise=noise, generator=gen)
    return norm.inverse(x.float()).clamp(-1, 1).cpu().numpy()


def guided_denoiser(model: Callable[..., torch.Tensor], diffusion: PreconditionedDiffusion,
                    kwargs: dict[str, torch.Tensor], guidance: float, norm: MelNormalizer
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """D(x; sigma) with classifier-free guidance D_c + W (D_c - D_u), the two in one batch of 2B, and the
    estimate clamped to the data's range (per bin, after centring) so that guidance cannot push it out."""
    lo, hi = norm.bounds()

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if guidance == 0:
            d = diffusion.denoise(model, x, sigma, **kwargs)
        else:
            both = {k: torch.cat([v, v]) for k, v in kwargs.items()}
            both["uncond"] = torch.cat([torch.zeros(len(x), dtype=torch.bool),
                                        torch.ones(len(x), dtype=torch.bool)]).to(x.device)
            d_c, d_u = diffusion.denoise(model, torch.cat([x, x]), torch.cat([sigma, sigma]), **both).chunk(2)
            d = d_c + guidance * (d_c - d_u)
        return torch.maximum(torch.minimum(d, hi.to(d)), lo.to(d))

    return denoise


def _training_utterances(store: Path, state: dict) -> tuple[dict[str, np.ndarray], str, str]:
    """The training corpora's utterance table (speaker as corpus:speaker), the template and text model."""
    model_name = str(state["embed_model"])
    tables, template, source = [], None, None
    with st.open_store(store) as f:
        for corpus in state["corpora"]:
            emb = f"embeddings/{model_name}/{corpus}"
            if f"corpora/{corpus}" not in f or emb not in f:
                raise EmodiffError(
                    f"{store}: the run was trained on /corpora/{corpus} and /{emb}, which this store lacks")
            table = st.read_table(f[f"corpora/{corpus}/utterances"])
            table["speaker"] = np.array([f"{corpus}:{s}" for s in table["speaker"]])
            table["id"] = np.array([f"{corpus}:{i}" for i in table["id"]])
            tables.append(table)
            template, source = str(f[emb].attrs["template"]), str(f[emb].attrs["model"])
    keys = ("id", "speaker", "gender", "emotion", "text")
    merged = {k: np.concatenate([t[k] for t in tables]) for k in keys}
    return merged, str(template), str(source)
