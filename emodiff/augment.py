"""``emodiff augment speed|noise``: offline copies of a corpus's utterances -> ``/augmented/<corpus>/<kind>``.

The classical SER augmentations that change the waveform, so they are made from the audio once
(``classify --augment speed`` or ``noise`` then adds the copies of each fold's training
utterances, never of its test or validation ones):

- ``speed``: speed perturbation (Ko et al., Interspeech 2015), y(t) = x(s t) for each factor s:
  tempo and pitch change together, as when a tape runs fast or slow. One resampling does it: the
  file, read at rate r, is declared to be at s r and resampled to 22050 Hz.
- ``noise``: additive noise at each signal-to-noise ratio: y = x + g n with
  g = sqrt(P_x / (P_n 10^(SNR / 10))), P the mean square over the utterance. The noise is
  seeded white or pink (1/f power) noise, or excerpts of the audio files of ``noise_dir`` (e.g.
  MUSAN's noise folder) where a user has them.

Every copy is a new mel of the same utterance (same label, speaker and row ``utt`` in the corpus's
utterance table), cut into segments the way ``prepare`` cuts them. Copy k of utterance u draws
its randomness from a generator seeded with (seed, u, k), so the set does not depend on threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emodiff import store as st
from emodiff.audio import AudioError, MelConfig, MelExtractor, load_audio, resample, segment
from emodiff.errors import EmodiffError
from emodiff.experiments import OFFLINE, OfflineKind
from emodiff.parallel import ordered_map, thread_budget, torch_threads
from emodiff.progress import QUIET, Progress
from emodiff.records import Augmented, Corpus, Different, Same, augmented_segments, existing_in, write_augmented_attrs

NOISE_COLOURS = ("white", "pink")


@dataclass(frozen=True)
class AugmentJob:
    """One ``augment`` run: the store, the corpus, the kind of copies and their settings."""

    store: Path
    corpus: str
    kind: OfflineKind
    factors: tuple[float, ...] = (0.9, 1.1)  # speed
    snrs: tuple[float, ...] = (20.0, 10.0)  # noise, dB
    colour: str = "white"  # noise without noise_dir
    noise_dir: Path | None = None
    seed: int = 0
    workers: int = field(default_factory=thread_budget)  # torch's thread count, which --threads sets
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.kind not in OFFLINE:  # the kinds an experiment (`+speed`) and a recipe (`train.augmented`) may name
            raise EmodiffError(f"unknown augmentation {self.kind!r}; expected one of {', '.join(OFFLINE)}")
        if self.kind == "speed" and (not self.factors or any(not 0.5 <= f <= 2.0 for f in self.factors)):
            raise EmodiffError(f"--factors {','.join(map(str, self.factors))}: expected speed factors in [0.5, 2]")
        if self.kind == "noise" and not self.snrs:
            raise EmodiffError("--snrs: expected at least one signal-to-noise ratio in dB")
        if self.colour not in NOISE_COLOURS:
            raise EmodiffError(f"--colour {self.colour!r}: expected one of {', '.join(NOISE_COLOURS)}")
        if self.noise_dir is not None and not Path(self.noise_dir).is_dir():
            raise EmodiffError(f"{self.noise_dir}: not a folder (expected noise recordings for --noise-dir)")
        if self.workers < 1:
            raise EmodiffError(f"--workers must be at least 1, got {self.workers}")

    @property
    def params(self) -> tuple[float, ...]:
        return self.factors if self.kind == "speed" else self.snrs

    def config(self) -> dict:
        noise = {"colour": self.colour, "noise_dir": str(self.noise_dir) if self.noise_dir else None}
        return {"corpus": self.corpus, "kind": self.kind, "params": list(self.params), "seed": self.seed,
                **(noise if self.kind == "noise" else {})}


@dataclass
class AugmentResult:
    group: str
    utterances: int
    segments: int
    already_there: bool


def speed_perturb(wave: np.ndarray, rate: int, factor: float, out_rate: int) -> np.ndarray:
    """y(t) = x(factor * t) at ``out_rate``: [L] -> [about L * out_rate / (rate * factor)]."""
    return resample(wave, int(round(rate * factor)), out_rate)


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """x + g n with 10 log10(P_x / P_{g n}) = snr_db; the sum is scaled down only if it would clip."""
    p_x = float(np.mean(wave.astype(np.float64) ** 2))
    p_n = float(np.mean(noise.astype(np.float64) ** 2))
    if p_n == 0.0:
        raise EmodiffError("noise: a silent noise excerpt cannot set a signal-to-noise ratio")
    y = wave + np.sqrt(p_x / (p_n * 10.0 ** (snr_db / 10.0))) * noise
    peak = float(np.max(np.abs(y)))
    return (y / peak if peak > 1.0 else y).astype(np.float32)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise [n]: white, or pink (power spectral density proportional to 1/f)."""
    white = rng.standard_normal(n)
    if colour == "white":
        return white.astype(np.float32)
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0  # keep the DC bin finite; its weight equals the first bin's
    return np.fft.irfft(spectrum / np.sqrt(f), n).astype(np.float32)


def augment(job: AugmentJob, progress: Progress = QUIET) -> AugmentResult:
    """Write ``/augmented/<corpus>/<kind>``; returns at once if it is there with the same settings.

    ``progress`` hears the number of utterances and each one done.
    """
    store = job.store
    group_name = Augmented.path(job.corpus, job.kind)
    with st.open_store(store) as f:
        corpus = Corpus.read(f, job.corpus)
        table, dtype = corpus.utterances, corpus.mel_dtype
        there = existing_in(f, group_name, job.config())
        if isinstance(there, Same) and not job.overwrite:
            done = Augmented.read(f, job.corpus, job.kind)
            return AugmentResult(f"/{group_name}", len(table["id"]), len(done.seg_utt), already_there=True)
    if isinstance(there, Different) and not job.overwrite:
        raise there.error(store)
    paths = [Path(str(p)) for p in table["path"]]
    for p in paths:
        if not p.is_file():
            raise EmodiffError(f"{p}: audio file not found; `augment` re-reads the audio the corpus was prepared from")
    noise_files = _noise_files(job.noise_dir) if job.kind == "noise" and job.noise_dir else []
    mel_cfg = MelConfig()
    extractor = MelExtractor(mel_cfg)

    def work(row: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
        return _copies(row, paths[row], job, extractor, noise_files)

    with st.write_group(store, group_name, config=job.config(), overwrite=job.overwrite,
                        what=f"augment {job.kind} {job.corpus}") as g:
        progress.total(len(paths))
        segments = augmented_segments(g, (mel_cfg.n_mels, mel_cfg.segment_frames), dtype)
        with torch_threads(1):
            for row, copies in enumerate(ordered_map(work, range(len(paths)), job.workers)):
                for segs, valid, value in copies:
                    segments.append(row, segs, valid, param=value)
                progress.advance()
        n_segments = segments.close()
        write_augmented_attrs(g, corpus=job.corpus, kind=job.kind, params=job.params, seed=job.seed,
                              param_unit="speed factor" if job.kind == "speed" else "SNR dB",
                              corpus_created=corpus.meta.created)
    return AugmentResult(f"/{group_name}", len(paths), n_segments, already_there=False)


def _copies(row: int, path: Path, job: AugmentJob, extractor: MelExtractor,
            noise_files: list[Path]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Every copy of one utterance: (segments [S, 80, 256], valid frames [S], parameter) per parameter."""
    try:
        wave, rate = load_audio(path)
    except AudioError as err:
        raise EmodiffError(f"{path}: {err}") from None
    sr = extractor.cfg.sample_rate
    base = resample(wave, rate, sr)
    out = []
    for k, value in enumerate(job.params):
        rng = np.random.default_rng([job.seed, row, k])
        if job.kind == "speed":
            y = speed_perturb(wave, rate, value, sr)
        else:
            noise = _noise_excerpt(noise_files, len(base), rng) if noise_files else coloured_noise(
                len(base), job.colour, rng)
            y = add_noise(base, noise, value)
        mel = extractor(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))).numpy()
        segs, valid = segment(mel, extractor.cfg.segment_frames)
        out.append((segs, valid, float(value)))
    return out


def _noise_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".wav", ".flac", ".ogg"))
    if not files:
        raise EmodiffError(f"{folder}: no .wav, .flac or .ogg noise recordings found")
    return files


def _noise_excerpt(files: list[Path], n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples at 22050 Hz from a random file at a random offset, looped if the file is shorter."""
    path = files[int(rng.integers(len(files)))]
    try:
        noise, rate = load_audio(path)
    except AudioError as err:
        raise EmodiffError(f"{path}: {err}") from None
    noise = resample(noise, rate, MelConfig().sample_rate)
    start = int(rng.integers(len(noise)))
    return np.resize(np.roll(noise, -start), n)
