"""Audio in, scaled log-mel segments out: decode, resample, mel, scale, segment.

The mel is the one the pretrained HiFi-GAN vocoders expect (22050 Hz, n_fft 1024, hop 256,
Hann 1024, 80 Slaney bands 0-8000 Hz, natural log of the magnitude clamped at 1e-5), so that
any stored mel can be vocoded back to audio. Log-mels are mapped to [-1, 1] by a FIXED linear
map (:func:`scale_log_mel`), the same for every corpus, whose constants are stored with the
data and whose inverse (:func:`unscale_log_mel`) is exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from emodiff.errors import EmodiffError

# log(1e-5): the floor of the log magnitude; silence maps to -1.
LOG_MIN = math.log(1e-5)
# Above the largest log-mel any signal within [-1, 1] can reach with the default filters:
# log(sum(hann_1024) * max_m sum_k M[m, k]) = 3.2253 (checked in tests/test_audio.py), so
# the scaling never clips audio that is not itself clipped.
LOG_MAX = 3.25
# Peak below -80 dBFS: nothing a vocoder or classifier can use.
SILENCE_PEAK = 1e-4


class AudioError(EmodiffError):
    """A file that cannot become a mel (undecodable, empty, silent, NaN, too short)."""


@dataclass(frozen=True)
class MelConfig:
    """The mel definition and its scaling; stored verbatim in every corpus group's attrs."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 256
    win: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_min: float = LOG_MIN
    log_max: float = LOG_MAX
    segment_frames: int = 256

    def attrs(self) -> dict[str, float | int]:
        return asdict(self)

    @property
    def pad(self) -> int:
        """Reflect padding on each side, (n_fft - hop) / 2, so frames = samples // hop."""
        return (self.n_fft - self.hop) // 2


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` (any format libsndfile reads: wav, flac, ...) to mono float32.

    Returns (samples [L], sample_rate). Raises AudioError for an undecodable, empty,
    non-finite or all-silent file, with the reason.
    """
    try:
        # SoundFile.read rather than sf.read: sf.read seeks to frame 0 before reading, which
        # costs a FLAC decoder about a fifth of its decode time.
        with sf.SoundFile(str(path)) as f:
            data, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        # libsndfile repeats the path ("Error opening '/x.wav': ..."); the caller names the file.
        reason = _first_line(err).replace(f"Error opening {str(path)!r}: ", "")
        raise AudioError(f"cannot decode audio: {reason}") from None
    # Averaging keeps the level of correlated channels (the usual stereo speech recording).
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    check_waveform(wave)
    return np.ascontiguousarray(wave), int(rate)


def check_waveform(wave: np.ndarray) -> None:
    """Raise AudioError if ``wave`` [L] is empty, holds NaN/inf, or is silent."""
    if wave.size == 0:
        raise AudioError("empty audio (0 samples)")
    peak = max(float(wave.max()), -float(wave.min()))  # NaN propagates through both
    if not math.isfinite(peak):
        raise AudioError("audio contains NaN or infinite samples")
    if peak < SILENCE_PEAK:
        raise AudioError("all-silent audio (peak below -80 dBFS)")


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample [L] float32 with soxr at its HQ setting; a no-op when the rates agree."""
    if rate_in == rate_out:
        return wave
    return soxr.resample(wave, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def mel_filters(cfg: MelConfig) -> torch.Tensor:
    """librosa's Slaney-scale, Slaney-normalised filter bank, [n_mels, n_fft // 2 + 1]."""
    import librosa  # imported here: librosa's import is slow and only this needs it

    fb = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
        htk=False, norm="slaney",
    )
    return torch.from_numpy(fb).float()


class MelExtractor:
    """Waveforms [B, L] (or [L]) -> log-mels [B, n_mels, L // hop] on any torch device.

    Equals ``log(clamp(M @ |torch.stft(reflect_pad(x), center=False)|, 1e-5))`` with the
    periodic Hann window. It frames with ``unfold`` and uses ``rfft`` directly because that
    gives frames-major spectra the filter matmul can consume without a transpose, and it keeps
    only the FFT bins that some filter uses (0..8000 Hz): about 1.5x faster on a CPU.
    """

    def __init__(self, cfg: MelConfig = MelConfig(), device: str | torch.device = "cpu"):
        self.cfg = cfg
        fb = mel_filters(cfg)
        used = torch.nonzero(fb.sum(dim=0) > 0).max().item() + 1
        self.n_bins = int(used)
        self.fb_t = fb[:, : self.n_bins].T.contiguous().to(device)  # [bins, n_mels]
        window = torch.hann_window(cfg.win, periodic=True)
        if cfg.win < cfg.n_fft:  # centre the window in the FFT frame, as torch.stft does
            left = (cfg.n_fft - cfg.win) // 2
            window = torch.nn.functional.pad(window, (left, cfg.n_fft - cfg.win - left))
        self.window = window.to(device)
        self.device = torch.device(device)

    def min_samples(self) -> int:
        """The shortest input with one frame whose reflect padding is defined."""
        return self.cfg.n_fft

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """x [B, L] or [L] -> log-mel [B, n_mels, L // hop] (or [n_mels, L // hop]), float32."""
        cfg = self.cfg
        single = wave.dim() == 1
        x = wave.to(self.device, torch.float32).reshape(-1, wave.shape[-1])
        if x.shape[-1] < self.min_samples():
            raise AudioError(
                f"audio shorter than one STFT window ({x.shape[-1]} samples at "
                f"{cfg.sample_rate} Hz; need {self.min_samples()})"
            )
        x = reflect_pad(x, cfg.pad)
        frames = x.unfold(-1, cfg.n_fft, cfg.hop) * self.window  # [B, T, n_fft]
        spec = torch.fft.rfft(frames, dim=-1)[..., : self.n_bins]
        magnitude = torch.sqrt(spec.real.square() + spec.imag.square())
        mel = (magnitude @ self.fb_t).clamp_(min=1e-5).log_()  # [B, T, n_mels]
        mel = mel.transpose(1, 2)
        return mel[0] if single else mel

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """x [B, L] -> scaled log-mel in [-1, 1], [B, n_mels, L // hop]."""
        return scale_log_mel(self.log_mel(wave), self.cfg)


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """x [B, L] -> [B, L + 2 pad], mirrored without repeating the edge sample.

    Equals ``F.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]`` at a fifth of its cost on a CPU.
    """
    return torch.cat([x[..., 1 : pad + 1].flip(-1), x, x[..., -pad - 1 : -1].flip(-1)], dim=-1)


def scale_log_mel(log_mel: torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """y = 2 (m - log_min) / (log_max - log_min) - 1, clamped to [-1, 1]."""
    return log_mel.sub(cfg.log_min).mul_(2.0 / (cfg.log_max - cfg.log_min)).sub_(1.0).clamp_(-1.0, 1.0)


def unscale_log_mel(scaled: torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """m = (y + 1) (log_max - log_min) / 2 + log_min: the exact inverse of scale_log_mel."""
    return (scaled + 1.0) * ((cfg.log_max - cfg.log_min) / 2.0) + cfg.log_min


def segment(mel: np.ndarray, frames: int = 256, pad_value: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """Cut mel [n_mels, T] into consecutive segments [N, n_mels, frames], N = ceil(T / frames).

    The last segment (or the only one, when T < frames) is padded with ``pad_value``, the
    scaled floor (silence). Returns (segments, valid [N]): the true frames in each segment.
    """
    n_mels, total = mel.shape
    if total == 0:
        raise AudioError("audio yields no mel frames")
    count = -(-total // frames)
    out = np.full((count, n_mels, frames), pad_value, dtype=mel.dtype)
    # [n_mels, count, frames] view of the full part, transposed into place in one copy.
    full = total // frames
    if full:
        out[:full] = mel[:, : full * frames].reshape(n_mels, full, frames).transpose(1, 0, 2)
    if total % frames:
        out[full, :, : total % frames] = mel[:, full * frames :]
    valid = np.full(count, frames, dtype=np.int32)
    valid[-1] = total - (count - 1) * frames
    return out, valid


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
