"""The U-Net denoiser, utterance windows and the EMA warm-up: shapes, conditioning paths, padding-free crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodiff.config import DenoiserConfig
from emodiff.diffusion.unet import UNet1d, frames_multiple, validate_unet
from emodiff.ema import EMA
from emodiff.segments import SegmentSet, UtteranceWindows

CFG = DenoiserConfig(kind="unet", channels=16, channel_mult=(1, 2, 2), blocks_per_level=1, attention_levels=(1,),
                     heads=2, norm_groups=4, emb_dim=32, text_dim=12)


def _inputs(b: int = 3, frames: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(b, 80, frames, generator=g), "c_noise": torch.randn(b, generator=g),
            "tokens": torch.randn(b, 5, 12, generator=g), "mask": torch.tensor([[1, 1, 1, 0, 0]] * b).bool(),
            "emotion": torch.arange(b) % 4, "speaker": torch.arange(b) % 2}


def _trained_like(model: UNet1d) -> UNet1d:
    """Zero-initialised layers made non-zero, as after training, so that every path shows in the output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    return model


def test_shapes_and_zero_output_at_initialisation() -> None:
    model = UNet1d(CFG, n_speakers=2)
    out = model(**_inputs())
    assert out.shape == (3, 80, 32)
    assert out.abs().max() == 0  # zero-initialised output: training starts from D = c_skip x
    with pytest.raises(ValueError, match="multiple of 4"):
        model(**{**_inputs(), "x": torch.randn(3, 80, 30)})
    assert frames_multiple(CFG) == 4


def test_every_condition_reaches_the_output_and_uncond_removes_them() -> None:
    model = _trained_like(UNet1d(CFG, n_speakers=2)).eval()
    base = _inputs()
    out = model(**base)
    for key, other in (("emotion", (base["emotion"] + 1) % 4), ("speaker", 1 - base["speaker"]),
                       ("tokens", base["tokens"] + 1.0)):
        changed = model(**{**base, key: other})
        assert (changed - out).abs().max() > 1e-4, key
    # Unconditional: emotion, speaker and text no longer matter, and text past the mask never did.
    uncond = torch.ones(3, dtype=torch.bool)
    ref = model(**base, uncond=uncond)
    for key, other in (("emotion", (base["emotion"] + 1) % 4), ("speaker", 1 - base["speaker"]),
                       ("tokens", base["tokens"] + 1.0)):
        assert torch.allclose(model(**{**base, key: other}, uncond=uncond), ref, atol=1e-6), key
    padded = base["tokens"].clone()
    padded[:, 3:] = 1e4
    assert torch.allclose(model(**{**base, "tokens": padded}), out, atol=1e-5)


def test_output_layer_stays_float32_under_autocast() -> None:
    model = _trained_like(UNet1d(CFG, n_speakers=2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**_inputs())
    assert out.dtype == torch.float32


def test_bad_unet_settings() -> None:
    import dataclasses

    for change, match in (({"channel_mult": ()}, "channel_mult"), ({"attention_levels": (3,)}, "attention_levels"),
                          ({"kernel_size": 4}, "odd"), ({"heads": 3}, "divisible")):
        with pytest.raises(ValueError, match=match):
            validate_unet(dataclasses.replace(CFG, **change))


def _segment_set() -> tuple[SegmentSet, list[np.ndarray]]:
    """Three utterances of 300, 100 and 256 valid frames, stored as 256-frame segments padded with -1."""
    rng = np.random.default_rng(0)
    utts = [rng.uniform(-0.5, 0.5, size=(80, n)).astype(np.float32) for n in (300, 100, 256)]
    mel, utt, frames = [], [], []
    for u, m in enumerate(utts):
        for lo in range(0, m.shape[1], 256):
            piece = m[:, lo:lo + 256]
            seg = np.full((80, 256), -1.0, np.float32)
            seg[:, :piece.shape[1]] = piece
            mel.append(seg)
            utt.append(u)
            frames.append(piece.shape[1])
    data = SegmentSet(torch.from_numpy(np.stack(mel)).half(), torch.tensor(utt), torch.zeros(3, 2, 4).half(),
                      torch.tensor([2, 2, 2]), np.array(["c:a", "c:b", "c:a"]), torch.tensor([0, 1, 2]),
                      torch.tensor(frames))
    return data, utts


def test_windows_hold_only_valid_frames_of_their_utterance() -> None:
    data, utts = _segment_set()
    windows = UtteranceWindows(data, 128)
    mel, utt = windows.draw(200, torch.Generator().manual_seed(0))
    assert mel.shape == (200, 80, 128)
    for m, u in zip(mel.float().numpy(), utt.tolist(), strict=True):
        source = utts[u].astype(np.float16).astype(np.float32)
        if source.shape[1] < 128:  # shorter than the window: the whole utterance, then silence
            source = np.concatenate([source, np.full((80, 128 - source.shape[1]), -1.0, np.float32)], axis=1)
        # find the window's start in its utterance: every frame must be the utterance's, in order
        starts = [s for s in range(source.shape[1] - 127) if np.array_equal(source[:, s], m[:, 0])]
        assert any(np.array_equal(source[:, s:s + 128], m) for s in starts), u
    # Utterance 0 is 300 frames long over two segments: windows cross the segment boundary.
    assert windows.length.tolist() == [300, 128, 256]


def test_short_utterances_are_padded_with_silence() -> None:
    data, utts = _segment_set()
    mel, utt = UtteranceWindows(data, 256).draw(50, torch.Generator().manual_seed(1))
    short = mel[utt == 1].float()
    assert len(short) and torch.all(short[:, :, 100:] == -1.0)
    assert torch.allclose(short[0, :, :100], torch.from_numpy(utts[1]).half().float())


def test_ema_warmup_follows_its_formula() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.999, warmup=True)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(model)
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    ema.updates = 100_000
    assert ema.current_decay() == 0.999
    assert EMA(model, 0.9).current_decay() == 0.9
    # With warm-up, the first update already moves most of the way to the weights.
    with torch.no_grad():
        model.weight.fill_(1.0)
    fresh = EMA(torch.nn.Linear(1, 1, bias=False), decay=0.999, warmup=True)
    with torch.no_grad():
        fresh.model.weight.fill_(0.0)
    fresh.update(model)
    assert fresh.model.weight.item() == pytest.approx(0.9)
