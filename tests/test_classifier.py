"""The CNN-BLSTM classifier's contract: shapes, padding invariance, gradients, augmentations, loss, config."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emodiff.config import build
from emodiff.ser.classifier import (
    PAD_VALUE,
    ClassifierConfig,
    CnnBlstm,
    count_parameters,
    mix,
    mixup,
    mixup_draw,
    segment_standardise,
    soft_cross_entropy,
    spec_augment,
)

TINY = ClassifierConfig(mel_channels=80, channels=16, kernel_size=5, lstm_hidden=12)
POOLED = ClassifierConfig(mel_channels=80, channels=16, kernel_size=5, lstm_hidden=12, time_pool=4, normalize=True)
SEGMENT = ClassifierConfig(mel_channels=80, channels=16, kernel_size=5, lstm_hidden=12, segment_norm=True,
                           normalize=True)


def _model(cfg: ClassifierConfig = TINY, seed: int = 0) -> CnnBlstm:
    torch.manual_seed(seed)
    return CnnBlstm(cfg).eval()


@pytest.mark.parametrize(("batch", "length"), [(3, 256), (3, 100), (1, 256), (1, 100)])
def test_logit_shapes(batch: int, length: int) -> None:
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(batch, 80, length, generator=g)
    frames = torch.tensor([length - 17 * i for i in range(batch)])
    logits = _model()(mel, frames)
    assert logits.shape == (batch, 4)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("cfg", [TINY, POOLED, SEGMENT], ids=["plain", "pooled-normalized", "segment-norm"])
def test_padding_content_does_not_change_logits(train: bool, cfg: ClassifierConfig) -> None:
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(4, 80, 100, generator=g)
    frames = torch.tensor([100, 60, 1, 37])  # 37 and 1: pooling windows that straddle the padding
    other = mel.clone()
    for b, n in enumerate(frames.tolist()):
        other[b, :, n:] = 5.0 * torch.randn(80, 100 - n, generator=g)
    model = _model(cfg)
    if cfg.normalize:
        with torch.no_grad():
            model.mel_mean.copy_(torch.linspace(-0.5, 0.5, 80))
            model.mel_std.copy_(torch.linspace(0.5, 2.0, 80))
    model.train(train)
    torch.manual_seed(3)
    a = model(mel, frames)
    torch.manual_seed(3)  # same dropout masks in training mode
    b = model(other, frames)
    torch.testing.assert_close(a, b)


def test_valid_frames_change_logits() -> None:
    mel = torch.randn(1, 80, 50, generator=torch.Generator().manual_seed(2))
    model = _model()
    assert not torch.allclose(model(mel, torch.tensor([50])), model(mel, torch.tensor([25])))


def test_bad_frames_rejected() -> None:
    mel = torch.zeros(2, 80, 10)
    with pytest.raises(ValueError, match="frames"):
        _model()(mel, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="frames"):
        _model()(mel, torch.tensor([11, 5]))
    with pytest.raises(ValueError, match="channels"):
        _model()(torch.zeros(2, 40, 10), torch.tensor([10, 5]))


def test_gradient_reaches_every_parameter() -> None:
    model = _model().train()
    g = torch.Generator().manual_seed(4)
    mel = torch.randn(4, 80, 40, generator=g)
    loss = F.cross_entropy(model(mel, torch.tensor([40, 30, 20, 10])), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_paper_size_builds() -> None:
    model = CnnBlstm(ClassifierConfig())
    assert model.cfg == ClassifierConfig()
    assert count_parameters(model) > count_parameters(CnnBlstm(TINY)) > 0
    logits = model.eval()(torch.zeros(2, 80, 64), torch.tensor([64, 3]))
    assert logits.shape == (2, 4)


def _labels(batch: int, k: int = 4) -> torch.Tensor:
    return F.one_hot(torch.arange(batch) % k, k).float()


def test_mixup_label_mass_hull_and_reproducibility() -> None:
    x = torch.randn(8, 80, 30, generator=torch.Generator().manual_seed(5))
    y = _labels(8)
    xm, ym = mixup(x, y, 0.4, torch.Generator().manual_seed(7))
    assert xm.shape == x.shape and ym.shape == y.shape
    torch.testing.assert_close(ym.sum(dim=1), torch.ones(8))
    assert (ym >= 0).all()
    # Each mixed cell lies between the two cells it mixes, so within the batch's min and max.
    assert (xm >= x.min(dim=0).values - 1e-6).all() and (xm <= x.max(dim=0).values + 1e-6).all()
    xm2, ym2 = mixup(x, y, 0.4, torch.Generator().manual_seed(7))
    torch.testing.assert_close(xm, xm2)
    torch.testing.assert_close(ym, ym2)
    xm3, _ = mixup(x, y, 0.4, torch.Generator().manual_seed(8))
    assert not torch.allclose(xm, xm3)


def test_mixup_is_a_pairwise_convex_combination() -> None:
    x = torch.arange(6, dtype=torch.float32)[:, None] * 10.0  # distinct rows
    y = _labels(6, 6)
    xm, ym = mixup(x, y, 1.0, torch.Generator().manual_seed(0))
    # Row i mixes x[i] (weight lam) and x[perm[i]]: its labels give both the partner and lam.
    for i in range(6):
        weights = ym[i]
        torch.testing.assert_close(xm[i, 0], (weights * x[:, 0]).sum())


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_mixup_rejects_nonpositive_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        mixup(torch.zeros(2, 3), _labels(2), alpha)


def test_spec_augment_masks_only_valid_frames() -> None:
    g = torch.Generator().manual_seed(9)
    x = torch.rand(4, 80, 100, generator=g) + 2.0  # nowhere equal to PAD_VALUE before masking
    frames = torch.tensor([100, 50, 3, 1])
    out = spec_augment(x, frames, generator=torch.Generator().manual_seed(11))
    assert out.shape == x.shape
    changed = out != x
    for b, n in enumerate(frames.tolist()):
        assert not changed[b, :, n:].any(), "padding was touched"
    assert (out[changed] == PAD_VALUE).all()
    assert changed.any()
    again = spec_augment(x, frames, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(out, again)
    assert (x > 1.0).all(), "input was modified in place"


def test_spec_augment_mask_widths_bounded() -> None:
    x = torch.zeros(2, 80, 200)
    out = spec_augment(x, torch.tensor([200, 200]), n_freq_masks=1, freq_width=8, n_time_masks=0,
                       generator=torch.Generator().manual_seed(0))
    assert ((out == PAD_VALUE).all(dim=2).sum(dim=1) <= 8).all()  # whole-row bands of at most 8 bins
    out = spec_augment(x, torch.tensor([200, 200]), n_freq_masks=0, n_time_masks=1, time_width=20,
                       generator=torch.Generator().manual_seed(0))
    assert ((out == PAD_VALUE).all(dim=1).sum(dim=1) <= 20).all()
    assert torch.equal(spec_augment(x, torch.tensor([200, 200]), 0, 8, 0, 20), x)
    with pytest.raises(ValueError):
        spec_augment(x, torch.tensor([200, 200]), n_freq_masks=-1)


def test_soft_cross_entropy_matches_hard_labels() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(12))
    target = torch.tensor([0, 3, 1, 2, 3])
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(target, 4).float()),
                               F.cross_entropy(logits, target))
    probs = torch.full((5, 4), 0.25)  # uniform targets: -mean log softmax
    torch.testing.assert_close(soft_cross_entropy(logits, probs), -F.log_softmax(logits, -1).mean(-1).mean())


def test_weighted_soft_cross_entropy_is_the_weighted_mean_of_the_rows() -> None:
    """sum_i w_i l_i / sum_i w_i, against a hand computation in float64 (l_i = logsumexp(z_i) - sum_k p_ik z_ik)."""
    logits = [[2.0, -1.0, 0.5, 0.0], [0.3, 0.3, -2.0, 1.0], [-0.5, 1.5, 0.0, 0.25]]
    targets = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.25, 0.0, 0.75], [0.25, 0.25, 0.25, 0.25]]
    weights = [1.0, 0.5, 2.0]

    def row_loss(z: list[float], p: list[float]) -> float:
        return math.log(sum(math.exp(v) for v in z)) - sum(pk * zk for pk, zk in zip(p, z, strict=True))

    hand = sum(w * row_loss(z, p) for w, z, p in zip(weights, logits, targets, strict=True)) / sum(weights)
    got = soft_cross_entropy(torch.tensor(logits), torch.tensor(targets), torch.tensor(weights))
    assert float(got) == pytest.approx(hand, rel=1e-6)
    # equal weights of any size are the plain mean: the weighted mean keeps the loss's scale
    plain = soft_cross_entropy(torch.tensor(logits), torch.tensor(targets))
    assert float(soft_cross_entropy(torch.tensor(logits), torch.tensor(targets), torch.full((3,), 7.0))) == \
        pytest.approx(float(plain), rel=1e-6)
    assert float(got) != pytest.approx(float(plain), rel=1e-3)


def test_mixup_is_its_draw_applied_to_x_and_y() -> None:
    """The split draw (what mixes the loss weights alongside) gives mixup's own lam and partners."""
    x = torch.randn(6, 80, 10, generator=torch.Generator().manual_seed(3))
    y = _labels(6)
    xm, ym = mixup(x, y, 0.4, torch.Generator().manual_seed(11))
    lam, perm = mixup_draw(6, 0.4, torch.Generator().manual_seed(11))
    assert 0.0 < lam < 1.0 and sorted(perm.tolist()) == list(range(6))
    assert torch.equal(xm, mix(x, lam, perm)) and torch.equal(ym, mix(y, lam, perm))
    torch.testing.assert_close(mix(y, lam, perm), lam * y + (1 - lam) * y[perm])


def test_tiny_model_overfits_random_segments() -> None:
    cfg = ClassifierConfig(mel_channels=16, channels=16, kernel_size=3, lstm_hidden=16)
    torch.manual_seed(0)
    model = CnnBlstm(cfg)
    g = torch.Generator().manual_seed(13)
    mel = torch.randn(16, 16, 32, generator=g)
    frames = torch.randint(8, 33, (16,), generator=g)
    labels = torch.arange(16) % 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(mel, frames), labels).backward()
        opt.step()
    with torch.no_grad():
        acc = (model.eval()(mel, frames).argmax(-1) == labels).float().mean().item()
    assert acc > 0.9


def test_config_defaults_are_the_papers() -> None:
    cfg = ClassifierConfig()
    assert (cfg.channels, cfg.kernel_size, cfg.conv_dropout, cfg.lstm_dropout, cfg.n_classes) == (128, 5, 0.1, 0.2, 4)
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed) == (100, 1e-5, 64, 0)
    assert build(ClassifierConfig, {"channels": 64, "lr": 1}, "recipe:classifier") == ClassifierConfig(
        channels=64, lr=1.0)


@pytest.mark.parametrize(("key", "value"), [
    ("channels", 0), ("mel_channels", -1), ("lstm_hidden", 0), ("epochs", 0), ("batch_size", 0),
    ("kernel_size", 4), ("kernel_size", 0), ("n_classes", 1), ("conv_dropout", 1.0), ("lstm_dropout", -0.1),
    ("lr", 0.0), ("weight_decay", -1e-4), ("time_pool", 0), ("patience", -1), ("schedule", "step"),
    ("normalize", 1), ("segment_norm", "yes"), ("select_from", 0),
])
def test_config_rejects_bad_values(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{key}.*{value!r}"):
        ClassifierConfig(**{key: value})


def test_time_pool_reads_only_the_pooled_valid_frames() -> None:
    """time_pool 4 over 10 valid frames: the BLSTM sees ceil(10 / 4) = 3 max-pooled frames, as computed by hand."""
    model = _model(ClassifierConfig(channels=16, kernel_size=5, lstm_hidden=12, time_pool=4))
    mel = torch.randn(1, 80, 24, generator=torch.Generator().manual_seed(5))
    frames = torch.tensor([10])
    with torch.no_grad():
        # "same" convs near frame 10 read padding (pinned to PAD_VALUE, then 0 after each block) in the model.
        x = mel.clone()
        x[:, :, 10:] = PAD_VALUE
        h = x
        for block in model.convs:
            h = block(h)
            h[:, :, 10:] = 0.0
        pooled = torch.stack([h[:, :, 0:4].amax(-1), h[:, :, 4:8].amax(-1), h[:, :, 8:10].amax(-1)], dim=1)  # [1, 3, C]
        out, _ = model.lstm(pooled)
        expected = model.out(out.mean(dim=1))
        torch.testing.assert_close(model(mel, frames), expected)


def test_segment_standardise_matches_numpy_per_segment_and_bin() -> None:
    g = torch.Generator().manual_seed(8)
    mel = torch.randn(3, 80, 40, generator=g) * 0.4 - 0.6
    frames = torch.tensor([40, 7, 2])
    out = segment_standardise(mel, frames)
    for b, n in enumerate(frames.tolist()):
        x = mel[b, :, :n].double().numpy()
        expected = (x - x.mean(axis=1, keepdims=True)) / np.maximum(x.std(axis=1, keepdims=True), 1e-3)
        np.testing.assert_allclose(out[b, :, :n].numpy(), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[b, :, n:], mel[b, :, n:])  # padding untouched
    flat = torch.full((1, 80, 5), -0.3)  # a constant bin: zero, not NaN
    assert torch.equal(segment_standardise(flat, torch.tensor([5])), torch.zeros(1, 80, 5))


def test_segment_norm_makes_the_logits_blind_to_each_bins_level_and_gain() -> None:
    g = torch.Generator().manual_seed(9)
    mel = torch.randn(2, 80, 30, generator=g)
    frames = torch.tensor([30, 12])
    gain = torch.rand(1, 80, 1, generator=g) + 0.5  # another channel: each bin scaled and shifted
    shifted = mel * gain + torch.randn(1, 80, 1, generator=g)
    blind = _model(SEGMENT).eval()
    torch.testing.assert_close(blind(shifted, frames), blind(mel, frames), rtol=1e-4, atol=1e-4)
    plain = _model(replace(SEGMENT, segment_norm=False)).eval()
    assert not torch.allclose(plain(shifted, frames), plain(mel, frames), atol=1e-3)
    assert "segment_norm" not in TINY.recorded() and SEGMENT.recorded()["segment_norm"] is True


def test_set_normalization_is_the_mean_and_std_of_valid_frames() -> None:
    model = _model(ClassifierConfig(channels=16, kernel_size=5, lstm_hidden=12, normalize=True))
    g = torch.Generator().manual_seed(6)
    mel = (torch.randn(5, 80, 30, generator=g) * 0.3 - 0.5).half()
    frames = torch.tensor([30, 3, 17, 1, 25])
    model.set_normalization(mel, frames, chunk=2)  # chunks: the sums run over several pieces
    valid = torch.cat([mel[b, :, :n].double() for b, n in enumerate(frames.tolist())], dim=1)  # [80, sum(frames)]
    torch.testing.assert_close(model.mel_mean, valid.mean(dim=1).float())
    torch.testing.assert_close(model.mel_std, valid.std(dim=1, unbiased=False).float())
    with pytest.raises(ValueError, match="normalize: false"):
        _model().set_normalization(mel, frames)
