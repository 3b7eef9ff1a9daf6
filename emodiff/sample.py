"""``emodiff sample``: a trained run's generator -> ``/synthetic/<name>`` (mels + conditions).

Conditions are balanced over the four emotions (or ``--emotion``) and the run's training
speakers (or ``--speaker``). Each sample's text is the transcript of a training utterance of
that speaker (one of the same emotion where there is one), worded with the template and
encoded by the text model the run was trained with. Batch ``i`` draws its noise from a
generator seeded with (seed, i), so the set does not depend on the batch schedule, and an
interrupted run resumes at the first batch it had not written. With ``--voices mix`` or
``gaussian`` each sample speaks in a voice that is none of the training speakers' (emodiff/voices.py),
planned from the seed with the conditions. How a batch is drawn is the run's generator family's
(emodiff/generators/); :func:`sample` is :func:`_plan`, the family's drawer, then :func:`_write`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emodiff import store as st
from emodiff.audio import MelConfig
from emodiff.checkpoint import latest_checkpoint, load_checkpoint, sha256_file
from emodiff.config import Recipe
from emodiff.devices import resolve_device
from emodiff.emotions import EMOTIONS, emotion_id
from emodiff.errors import EmodiffError
from emodiff.generators import Conditions, Drawer, family_for, recipe_from_dict
from emodiff.progress import QUIET, Progress
from emodiff.records import (
    Corpus,
    Different,
    Embeddings,
    Run,
    Same,
    Synthetic,
    SyntheticAttrs,
    check_name,
    existing,
    write_synthetic,
)
from emodiff.segments import speaker_matches
from emodiff.silence import synthetic_frames
from emodiff.text import TextEncoder, render_condition
from emodiff.voices import VoicePlan, plan_voices, speaker_genders


@dataclass(frozen=True)
class SampleJob:
    store: Path
    n: int
    run: str | None = None  # a /runs name in the store, a run folder or a checkpoint file; None: the latest run
    emotions: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()
    seed: int = 0
    name: str | None = None
    device: str = "auto"
    overwrite: bool = False
    # The flags over the run's recipe, by their key in its sample section (steps, guidance, batch_size, voices,
    # ...; sigma_min for v/edm models); None: the recipe's. The run's family checks them (Family.sampled).
    options: Mapping[str, Any] = field(default_factory=dict)
    # What to tell a user whose /synthetic/<name> holds a set drawn otherwise (a study has no --overwrite).
    on_conflict: str = "pass --overwrite to replace it or --name for a new set"

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name)
        if self.n < 1:
            raise EmodiffError(f"--n must be at least 1, got {self.n}")
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
        record = Run.read(f, run) if run is not None else Run.latest(f)
    if record is None:
        raise EmodiffError(f"{store}: no trained run recorded; run `emodiff train --recipe recipes/demo.yaml` first")
    return Path(record.checkpoint), record.name


def check_recorded_hash(store: Path, ckpt: Path) -> None:
    """Refuse a checkpoint whose sha256 differs from the one a ``/runs`` group of the store recorded for that
    file. The run folder's checkpoints.json can be deleted or rewritten along with the file; the store's
    record is the one ``train`` wrote when the run finished."""
    if not Path(store).exists():
        return
    with st.open_store(store) as f:
        record = Run.of_checkpoint(f, ckpt)
    if record is not None and record.sha256 and sha256_file(Path(ckpt)) != record.sha256:
        raise EmodiffError(f"{ckpt}: sha256 differs from the one {store} recorded for this run when it "
                           "finished; the checkpoint was modified or replaced")


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


@dataclass(frozen=True)
class _Plan:
    """What a set will hold: the checkpoint, its recipe and state, and each sample's conditions."""

    checkpoint: Path
    run: str
    name: str
    recipe: Recipe  # as trained (what the set records)
    sampled: Recipe  # with the flags (what draws: Family.sampled)
    state: dict[str, Any]
    emotions: list[int]  # the emotions asked for, in order
    speakers: list[str]  # the training speakers asked for, in order
    rows: list[int]  # per sample, the utterance whose speaker and transcript it borrows
    speaker: np.ndarray  # [N] int64, per sample its row's speaker as an index into the training speakers
    voices: VoicePlan  # per sample, the voice it speaks in (none for training: the speaker's own)
    emotion: np.ndarray  # [N] int8
    texts: list[str]
    utterances: dict[str, np.ndarray]
    template: str
    text_model: str
    batch: int


def sample(job: SampleJob, progress: Progress = QUIET) -> SampleResult:
    """Draw ``job.n`` segments from a trained run into ``/synthetic/<name>``; see the module docstring.

    ``progress`` hears ``job.n``, the segments a resumed run had already written, and each batch drawn.
    """
    start = time.perf_counter()
    plan = _plan(job)
    device = resolve_device(job.device)
    drawer = family_for(plan.sampled).drawer(plan.sampled, plan.state, device, plan.checkpoint)
    config = {"checkpoint_sha256": sha256_file(plan.checkpoint), "n": job.n, **drawer.config, "seed": job.seed,
              "emotions": plan.emotions, "speakers": plan.speakers,
              "batch_size": plan.batch}
    if plan.voices.mode != "training":  # only then: a set drawn before --voices keeps its config hash
        config["voices"] = plan.voices.mode
    if not job.overwrite:
        found = existing(job.store, Synthetic.path(plan.name), config)
        if isinstance(found, Different):
            raise found.error(job.store, fix=job.on_conflict)
        if isinstance(found, Same):
            return SampleResult(group=f"/synthetic/{plan.name}", n=job.n, resumed_from=0, seconds=0.0,
                                checkpoint=plan.checkpoint, already_there=True)
    done = _write(job, plan, drawer, config, device, progress)
    return SampleResult(group=f"/synthetic/{plan.name}", n=job.n, resumed_from=done,
                        seconds=time.perf_counter() - start, checkpoint=plan.checkpoint)


# Per sample beside its mel: the pooled text vector (float32), valid frames, emotion, speaker, text, source id.
_PER_SAMPLE_BYTES = 384 * 4 + 8 + 1 + 200


def mel_bins(state: dict[str, Any]) -> int:
    """The mel bins a run draws: its training data's, one normaliser mean per bin (a checkpoint from before
    normalisers: the store's 80), whatever the family."""
    norm = state.get("normalizer")
    return int(norm["mean"].numel()) if norm is not None else MelConfig().n_mels


def check_room(store: Path, n: int, bins: int, frames: int) -> None:
    """EmodiffError before any work when ``n`` samples could not fit on the store's disk.

    The estimate is the set before compression (float16 mels, n x bins x frames x 2 bytes, and what each
    sample carries beside): deflate gains a factor of about 1.5-3 on mels, and the set is written once
    beside the store and then copied in, so the uncompressed size is about what the two copies need.
    """
    need = n * (bins * frames * 2 + _PER_SAMPLE_BYTES)
    folder = Path(store).resolve().parent
    free = shutil.disk_usage(folder if folder.exists() else Path.cwd()).free
    if need > free:
        raise EmodiffError(f"--n {n}: the set needs about {need / 1e9:.3g} GB before compression ({bins} x {frames} "
                           f"float16 per mel), and {folder} has {free / 1e9:.3g} GB free; draw fewer or free space")


def _plan(job: SampleJob) -> _Plan:
    """The checkpoint (its hash checked against the store's record) and every sample's conditions."""
    ckpt_path, run_name = find_checkpoint(job.store, job.run)
    if job.name is None:  # the set takes the run's name: a run folder's name may not fit the store's rule
        check_name(run_name, where="--name not given, and the run's name")
    check_recorded_hash(job.store, ckpt_path)
    state = load_checkpoint(ckpt_path)
    recipe = recipe_from_dict(state["recipe"], f"{ckpt_path}:recipe")
    sampled = family_for(recipe).sampled(recipe, job.options, str(ckpt_path))
    check_room(job.store, job.n, mel_bins(state), int(state.get("segment_frames", 256)))
    trained = list(state["training_speakers"])
    speakers = [s for s in trained if speaker_matches(s, list(job.speakers))] if job.speakers else trained
    if not speakers:
        raise EmodiffError(f"--speaker {', '.join(job.speakers)}: not among the run's training speakers "
                           f"({', '.join(trained)})")
    emotions = [emotion_id(e) for e in job.emotions] or list(range(len(EMOTIONS)))
    utterances, template, text_model = _training_utterances(job.store, state)
    rows = plan_conditions(utterances, job.n, emotions, speakers, job.seed)
    names = [str(t) for t in trained]
    speaker = np.array([names.index(str(utterances["speaker"][r])) for r in rows], dtype=np.int64)
    genders = speaker_genders(utterances["gender"], utterances["speaker"], names)
    voices = plan_voices(sampled.sample.voices, speaker, genders, job.seed)
    emotion = np.array([emotions[i % len(emotions)] for i in range(job.n)], dtype=np.int8)
    texts = []
    for r, e in zip(rows, emotion, strict=True):
        corpus, _, spk = str(utterances["speaker"][r]).partition(":")
        texts.append(render_condition(template, text=str(utterances["text"][r]), emotion=int(e), speaker=spk,
                                      gender=str(utterances["gender"][r]), corpus=corpus))
    return _Plan(ckpt_path, run_name, job.name or run_name, recipe, sampled, state, emotions, speakers, rows, speaker,
                 voices, emotion, texts, utterances, template, text_model, sampled.sample.batch_size)


def _write(job: SampleJob, plan: _Plan, drawer: Drawer, config: dict[str, Any], device: torch.device,
           progress: Progress) -> int:
    """Draw the batches not yet in the set's side file and write the set; returns the rows found done."""
    trained = [str(s) for s in plan.state["training_speakers"]]
    encoder = TextEncoder(plan.text_model, device=str(device))
    speaker_ids = torch.from_numpy(plan.speaker)
    coefficients = plan.voices.coefficients
    batch = plan.batch
    with write_synthetic(job.store, plan.name, config=config, n=job.n, mel=drawer.shape, cond_dim=encoder.dim,
                         overwrite=job.overwrite) as out:
        done = out.done
        progress.total(job.n)
        progress.advance(done)
        for lo in range(done - done % batch, job.n, batch):
            hi = min(lo + batch, job.n)
            pooled, tokens, lengths = encoder.encode(plan.texts[lo:hi])
            voice = torch.from_numpy(coefficients[lo:hi]) if coefficients is not None else None
            conditions = Conditions(tokens, lengths, torch.from_numpy(plan.emotion[lo:hi]).long(), speaker_ids[lo:hi],
                                    voice)
            mel = drawer.draw(conditions, job.seed, lo // batch)
            out.write(lo, mel, synthetic_frames(mel), pooled)
            progress.advance(hi - max(lo, done))
        out.finish(emotion=plan.emotion, speaker=[str(plan.utterances["speaker"][r]) for r in plan.rows],
                   text=plan.texts, source_utterance=[str(plan.utterances["id"][r]) for r in plan.rows],
                   **_voice_columns(plan.voices, trained),
                   provenance=SyntheticAttrs(
                       checkpoint=str(plan.checkpoint.resolve()), checkpoint_sha256=config["checkpoint_sha256"],
                       run=plan.run, seed=job.seed, generator=plan.recipe.generator,
                       drawn_with=str(drawer.attrs["drawn_with"]),
                       drawing={k: v for k, v in drawer.attrs.items() if k != "drawn_with"},
                       training_speakers=tuple(trained), embed_model=str(plan.state["embed_model"]),
                       template=plan.template, recipe=plan.recipe.to_dict(), voices=plan.voices.mode))
    return done


def _voice_columns(voices: VoicePlan, trained: list[str]) -> dict[str, Any]:
    """The per-sample voice datasets of a set (docs/store.md): none for training voices."""
    columns: dict[str, Any] = {}
    if voices.coefficients is not None:
        columns["voice"] = voices.coefficients
    if voices.partner is not None and voices.weight is not None:
        columns["voice_partner"] = [trained[b] for b in voices.partner]
        columns["voice_weight"] = voices.weight
    return columns


def _training_utterances(store: Path, state: dict) -> tuple[dict[str, np.ndarray], str, str]:
    """The training corpora's utterance table (speaker as corpus:speaker), the template and text model."""
    model = str(state["embed_model"])
    tables, template, source = [], "", ""
    with st.open_store(store) as f:
        for corpus in state["corpora"]:
            if not Corpus.exists(f, corpus) or not Embeddings.exists(f, model, corpus):
                raise EmodiffError(f"{store}: the run was trained on /{Corpus.path(corpus)} and "
                                   f"/{Embeddings.path(model, corpus)}, which this store lacks")
            record = Corpus.read(f, corpus)
            table = dict(record.utterances)
            table["speaker"] = record.qualified_speakers()
            table["id"] = np.array([f"{corpus}:{i}" for i in table["id"]])
            tables.append(table)
            emb = Embeddings.read(f, model, corpus)
            template, source = emb.template, emb.source
    keys = ("id", "speaker", "gender", "emotion", "text")
    merged = {k: np.concatenate([t[k] for t in tables]) for k in keys}
    return merged, template, source
