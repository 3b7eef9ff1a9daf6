"""The mel against an independent numpy computation of the same definition, and audio I/O."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emodiff.audio import (
    LOG_MAX,
    LOG_MIN,
    AudioError,
    MelConfig,
    MelExtractor,
    load_audio,
    mel_filters,
    resample,
    scale_log_mel,
    segment,
    unscale_log_mel,
)
from emodiff.data import ravdess_sample

CFG = MelConfig()


# ---- an independent reference: numpy float64, formulas written out, no librosa, no torch ----

def slaney_hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, linear)


def slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


def reference_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangles on the Slaney mel scale, each scaled to unit area (2 / bandwidth)."""
    fft_hz = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(fmin), slaney_hz_to_mel(fmax), n_mels + 2))
    fb = np.zeros((n_mels, len(fft_hz)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (fft_hz - lo) / (mid - lo)
        falling = (hi - fft_hz) / (hi - mid)
        fb[m] = np.maximum(0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return fb


def reference_log_mel(x: np.ndarray) -> np.ndarray:
    """HiFi-GAN's mel in numpy float64: reflect pad, periodic Hann, |rfft|, filters, log clamp."""
    x = np.pad(x.astype(np.float64), (CFG.pad, CFG.pad), mode="reflect")
    n = np.arange(CFG.n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / CFG.n_fft)
    count = (len(x) - CFG.n_fft) // CFG.hop + 1
    frames = np.stack([x[i * CFG.hop: i * CFG.hop + CFG.n_fft] for i in range(count)])
    magnitude = np.abs(np.fft.rfft(frames * window, axis=-1))
    fb = reference_filters(CFG.sample_rate, CFG.n_fft, CFG.n_mels, CFG.fmin, CFG.fmax)
    return np.log(np.maximum(fb @ magnitude.T, 1e-5))


@pytest.fixture(scope="module")
def extractor() -> MelExtractor:
    return MelExtractor(CFG)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    wave, rate = load_audio(ravdess_sample() / "Actor_01" / "03-01-05-02-01-01-01.flac")
    assert rate == 22050
    return wave


def test_filters_match_the_slaney_formulas():
    ours = mel_filters(CFG).numpy()
    ref = reference_filters(CFG.sample_rate, CFG.n_fft, CFG.n_mels, CFG.fmin, CFG.fmax)
    assert ours.shape == (80, 513)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def test_log_mel_matches_numpy_reference_on_real_speech(extractor, speech):
    ours = extractor.log_mel(torch.from_numpy(speech)).numpy()
    ref = reference_log_mel(speech)
    assert ours.shape == ref.shape == (80, len(speech) // 256)
    # Where the energy is well above the 1e-5 floor, float32 agrees with float64 to ~1e-5.
    well_above = ref > math.log(1e-3)
    assert well_above.mean() > 0.3
    err = np.abs(ours - ref)
    assert err[well_above].max() < 2e-4
    assert np.median(err[well_above]) < 1e-5
    # Near the floor the clamp makes both exactly log(1e-5) or both close to it.
    assert err.max() < 0.05


def test_log_mel_matches_numpy_reference_on_a_chirp(extractor):
    t = np.arange(int(1.5 * 22050)) / 22050
    chirp = (0.5 * np.sin(2 * np.pi * (100 * t + 2500 * t ** 2))).astype(np.float32)
    ours = extractor.log_mel(torch.from_numpy(chirp)).numpy()
    ref = reference_log_mel(chirp)
    well_above = ref > math.log(1e-3)
    assert np.abs(ours - ref)[well_above].max() < 2e-4


def test_extractor_equals_torch_stft_route(extractor, speech):
    x = torch.from_numpy(speech)
    padded = torch.nn.functional.pad(x[None, None], (CFG.pad, CFG.pad), mode="reflect")[0, 0]
    spec = torch.stft(padded, CFG.n_fft, CFG.hop, CFG.win, torch.hann_window(CFG.win), center=False,
                      return_complex=True).abs()
    expected = torch.log(torch.clamp(mel_filters(CFG) @ spec, min=1e-5))
    torch.testing.assert_close(extractor.log_mel(x), expected, atol=2e-4, rtol=1e-5)


def test_batched_equals_one_by_one(extractor, speech):
    batch = torch.stack([torch.from_numpy(speech[:40000]), torch.from_numpy(speech[5000:45000])])
    out = extractor.log_mel(batch)
    assert out.shape == (2, 80, 40000 // 256)
    for i in range(2):
        torch.testing.assert_close(out[i], extractor.log_mel(batch[i]), atol=1e-5, rtol=1e-5)


def test_frames_are_samples_over_hop(extractor):
    for n in (1024, 1025, 1279, 1280, 22050):
        x = torch.randn(n) * 0.1
        assert extractor.log_mel(x).shape[-1] == n // 256


def test_shorter_than_a_window_is_an_audio_error(extractor):
    with pytest.raises(AudioError, match="shorter than one STFT window"):
        extractor.log_mel(torch.randn(1023))


def test_log_max_bounds_every_signal_in_range():
    # The largest log-mel any |x| <= 1 can give: every bin at sum(window) under the widest filter.
    bound = math.log(torch.hann_window(CFG.win).sum().item() * mel_filters(CFG).sum(dim=1).max().item())
    assert bound < LOG_MAX < bound + 0.1
    assert math.log(1e-5) == pytest.approx(LOG_MIN)


def test_full_scale_audio_stays_inside_minus_one_one(extractor):
    t = np.arange(22050) / 22050
    square = np.sign(np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    scaled = extractor(torch.from_numpy(square))
    assert scaled.max() < 1.0 and scaled.min() >= -1.0


def test_scaling_inverse_is_exact():
    log_mel = torch.linspace(LOG_MIN, LOG_MAX, 10001, dtype=torch.float64)
    scaled = scale_log_mel(log_mel.clone())
    assert scaled.min().item() == pytest.approx(-1.0) and scaled.max().item() == pytest.approx(1.0)
    torch.testing.assert_close(unscale_log_mel(scaled), log_mel, atol=1e-12, rtol=0)
    # float32, as stored: exact to float32 precision
    s32 = scale_log_mel(log_mel.float())
    torch.testing.assert_close(unscale_log_mel(s32), log_mel.float(), atol=3e-6, rtol=0)


def test_segment_cuts_and_pads():
    mel = np.arange(80 * 600, dtype=np.float32).reshape(80, 600)
    segs, valid = segment(mel, 256)
    assert segs.shape == (3, 80, 256)
    assert valid.tolist() == [256, 256, 88]
    np.testing.assert_array_equal(segs[0], mel[:, :256])
    np.testing.assert_array_equal(segs[1], mel[:, 256:512])
    np.testing.assert_array_equal(segs[2, :, :88], mel[:, 512:])
    assert (segs[2, :, 88:] == -1.0).all()


@pytest.mark.parametrize("frames,expected", [(1, [1]), (255, [255]), (256, [256]), (257, [256, 1]), (512, [256, 256])])
def test_segment_counts(frames, expected):
    segs, valid = segment(np.zeros((80, frames), np.float32), 256)
    assert valid.tolist() == expected
    assert segs.shape == (len(expected), 80, 256)


def test_segment_of_nothing_is_an_error():
    with pytest.raises(AudioError):
        segment(np.zeros((80, 0), np.float32))


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_rate_and_stereo_loads_and_resamples(tmp_path: Path, rate: int, channels: int):
    t = np.arange(rate) / rate  # one second
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone, 0.5 * tone], axis=1)[:, :channels] if channels == 2 else tone
    path = tmp_path / f"x{rate}.wav"
    sf.write(path, data, rate, subtype="PCM_16")
    wave, got_rate = load_audio(path)
    assert got_rate == rate and wave.ndim == 1 and wave.dtype == np.float32
    peak = 0.3 * (0.75 if channels == 2 else 1.0)  # stereo is the mean of the channels
    assert np.max(np.abs(wave)) == pytest.approx(peak, abs=2e-3)
    out = resample(wave, rate, 22050)
    assert abs(len(out) - 22050) <= 1
    # the 440 Hz tone survives resampling: its spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(out[2000:20050]))
    assert abs(np.argmax(spectrum) * 22050 / 18050 - 440) < 3


def test_flac_loads(tmp_path: Path):
    path = tmp_path / "a.flac"
    sf.write(path, 0.1 * np.ones(4000), 16000, subtype="PCM_16")
    wave, rate = load_audio(path)
    assert rate == 16000 and len(wave) == 4000


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda p: p.write_bytes(b""), "cannot decode"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage" * 50), "cannot decode"),
        (lambda p: sf.write(p, np.zeros(0), 16000), "empty audio"),
        (lambda p: sf.write(p, np.zeros(16000), 16000, subtype="PCM_16"), "all-silent"),
        (lambda p: sf.write(p, np.array([0.1, np.nan] * 8000), 16000, subtype="FLOAT"), "NaN"),
    ],
    ids=["zero-bytes", "corrupt", "no-samples", "silent", "nan"],
)
def test_bad_audio_raises_with_reason(tmp_path: Path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=reason):
        load_audio(path)


def test_truncated_flac_raises_or_loads_what_is_there(tmp_path: Path):
    path = tmp_path / "t.flac"
    sf.write(path, 0.2 * np.sin(np.arange(48000) / 10), 48000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        wave, _ = load_audio(path)
    except AudioError as err:
        assert "cannot decode" in str(err)
    else:
        assert 0 < len(wave) <= 48000


def test_float16_storage_error():
    """docs/store.md: float16 storage costs at most 0.0018 in natural-log units."""
    scaled = torch.linspace(-1, 1, 2_000_001)
    err = (unscale_log_mel(scaled.half().float()) - unscale_log_mel(scaled)).abs().max().item()
    assert 0.0017 < err < 0.0019


def test_reflect_pad_equals_torch_reflect_padding():
    from emodiff.audio import reflect_pad

    x = torch.randn(3, 2000)
    expected = torch.nn.functional.pad(x[:, None], (384, 384), mode="reflect")[:, 0]
    assert torch.equal(reflect_pad(x, 384), expected)
