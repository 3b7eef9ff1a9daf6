"""The shared SER training loop: precise batch-norm statistics, model selection, utterance scores."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emodiff.ser import training
from emodiff.ser.classifier import (
    PAD_VALUE,
    ClassifierConfig,
    CnnBlstm,
    SpecAugment,
    mixup_draw,
    spec_augment,
    valid_mask,
)
from emodiff.ser.training import (
    Segments,
    fit,
    recalibrate_batch_norm,
    train_epoch,
    train_step,
    training_plan,
    utterance_scores,
)

CFG = ClassifierConfig(channels=8, lstm_hidden=8, epochs=3, lr=1e-2, batch_size=8)


def _data(n: int = 24, frames: int = 40) -> Segments:
    g = torch.Generator().manual_seed(0)
    mel = torch.rand(n, 80, frames, generator=g) * 2 - 1
    valid = torch.randint(5, frames + 1, (n,), generator=g)
    return Segments(mel, valid, torch.arange(n) % 4)


def test_recalibrated_statistics_equal_the_batch_statistics_of_the_current_weights():
    data = _data()
    model = CnnBlstm(CFG).eval()
    with torch.no_grad():  # move the first conv far from where any running average could have been
        model.convs[0][0].weight.mul_(3.0).add_(0.1)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    recalibrate_batch_norm(model, data, batch_size=len(data), device=torch.device("cpu"),
                           gen=torch.Generator().manual_seed(0))
    # Independently: the first block's conv output over all rows and frames, padding pinned as in forward.
    x = data.mel.masked_fill(~valid_mask(data.frames, data.mel.shape[2])[:, None, :], PAD_VALUE)
    h = model.convs[0][0](x)
    bn = model.convs[0][1]
    torch.testing.assert_close(bn.running_mean, h.mean(dim=(0, 2)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, h.var(dim=(0, 2), unbiased=True), rtol=1e-4, atol=1e-5)
    assert bn.momentum == CFG_MOMENTUM and not model.training and not bn.training  # modes restored
    after = {k: v for k, v in model.state_dict().items() if k in before}
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights untouched


CFG_MOMENTUM = torch.nn.BatchNorm1d(1).momentum


def test_fit_keeps_the_selected_epoch_and_is_seeded():
    data = _data()
    scores = iter([0.1, 0.9, 0.5])
    fitted = fit(CFG, data, torch.device("cpu"), select=lambda model: next(scores))
    assert (fitted.best_epoch, fitted.best_score) == (2, 0.9)
    again = fit(CFG, data, torch.device("cpu"), select=lambda model: 0.0)
    third = fit(CFG, data, torch.device("cpu"), select=lambda model: 0.0)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), third.model.state_dict().values(),
                                                 strict=True))


def test_utterance_scores_pool_segment_log_probabilities():
    data = _data(6)
    model = CnnBlstm(CFG).eval()
    utt = torch.tensor([0, 0, 1, 2, 2, 2]).numpy()
    scores = utterance_scores(model, data.mel, data.frames, utt, 3, torch.device("cpu"), batch_size=4)
    with torch.no_grad():
        logp = torch.log_softmax(model(data.mel, data.frames), dim=1).double()
    torch.testing.assert_close(torch.from_numpy(scores), torch.stack([logp[:2].mean(0), logp[2], logp[3:].mean(0)]))


def test_early_stopping_ends_after_patience_epochs_without_a_better_score_and_restores_the_best():
    data = _data()
    cfg = ClassifierConfig(channels=8, lstm_hidden=8, epochs=8, lr=1e-2, batch_size=8, patience=2)
    calls, states = [], []

    def select(model) -> float:
        calls.append(len(calls) + 1)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return [0.1, 0.9, 0.5, 0.9, 0.95, 0.2][len(calls) - 1]  # 0.9 again at epoch 4 is no improvement

    fitted = fit(cfg, data, torch.device("cpu"), select=select)
    assert calls == [1, 2, 3, 4]  # epochs 3 and 4 did not beat epoch 2: stop, never reaching 0.95
    assert (fitted.best_epoch, fitted.best_score, fitted.epochs_run) == (2, 0.9, 4)
    restored = fitted.model.state_dict()
    assert all(torch.equal(restored[k], states[1][k]) for k in restored)  # epoch 2's weights and BN statistics
    assert not torch.equal(states[1]["out.weight"], states[3]["out.weight"])  # it did train on after epoch 2

    without = fit(replace(cfg, patience=0), data, torch.device("cpu"), select=lambda model: 0.5)
    assert (without.best_epoch, without.epochs_run) == (1, 8)  # patience 0: every epoch, the first of equals kept


def test_cosine_schedule_steps_per_batch_down_to_zero():
    data = _data(24)
    model = CnnBlstm(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    total = 2 * 3  # 2 epochs of 24 / 8 batches
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total)))
    gen = torch.Generator().manual_seed(0)
    train_epoch(model, opt, data, 8, torch.device("cpu"), gen, schedule=schedule)
    assert schedule.last_epoch == 3 and opt.param_groups[0]["lr"] == pytest.approx(0.05)  # half way: cos(pi/2)
    train_epoch(model, opt, data, 8, torch.device("cpu"), gen, schedule=schedule)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_fit_normalizes_by_the_training_segments():
    data = _data()
    cfg = replace(CFG, normalize=True, time_pool=2, schedule="cosine", epochs=1)
    model = fit(cfg, data, torch.device("cpu")).model
    valid = torch.cat([data.mel[b, :, :n] for b, n in enumerate(data.frames.tolist())], dim=1)
    torch.testing.assert_close(model.mel_mean, valid.mean(dim=1))
    torch.testing.assert_close(model.mel_std, valid.std(dim=1, unbiased=False))


def test_epochs_before_select_from_are_not_scored_or_kept():
    data = _data()
    cfg = ClassifierConfig(channels=8, lstm_hidden=8, epochs=5, lr=1e-2, batch_size=8, select_from=3)
    scores = iter([0.3, 0.2, 0.1])  # epochs 3, 4, 5; an unscored epoch 1 or 2 can never be kept
    fitted = fit(cfg, data, torch.device("cpu"), select=lambda model: next(scores))
    assert (fitted.best_epoch, fitted.best_score, fitted.epochs_run) == (3, 0.3, 5)
    assert next(scores, None) is None  # exactly three calls
    short = fit(replace(cfg, epochs=2), data, torch.device("cpu"), select=lambda model: 0.5)  # --epochs 2
    assert (short.best_epoch, short.best_score) == (2, 0.5)  # fewer epochs than select_from: the last one is kept


def test_a_step_budget_is_the_same_whatever_the_data_and_validates_every_n_steps(monkeypatch):
    """``classifier.steps``: T optimiser steps and a validation every V, for 24 or 48 segments alike; the epochs
    budget grows with the data instead."""
    small, large = _data(24), Segments.join([_data(24), _data(24)])
    cfg = replace(CFG, steps=7, eval_every=3)
    assert training_plan(cfg, len(small)) == training_plan(cfg, len(large)) == (7, 3)
    assert training_plan(CFG, len(small)) == (3 * 3, 3) and training_plan(CFG, len(large)) == (3 * 6, 6)
    taken: list[int] = []
    one_step = training.train_step
    monkeypatch.setattr(training, "train_step", lambda *a, **k: taken.append(1) or one_step(*a, **k))
    validated: list[int] = []

    def select(model) -> float:
        validated.append(len(taken))
        return -len(validated)  # the first validation stays the best

    for data in (small, large):
        taken.clear()
        validated.clear()
        fitted = fit(cfg, data, torch.device("cpu"), select=select)
        assert len(taken) == 7 and validated == [3, 6, 7]  # every 3 steps, and the last
        assert (fitted.best_step, fitted.steps_run) == (3, 7)


def test_a_step_budget_selects_from_a_step_and_stops_after_patience_validations():
    data = _data()
    cfg = replace(CFG, steps=12, eval_every=2, select_from=5)
    seen: list[float] = []
    scores = iter([0.5, 0.4, 0.3, 0.9])  # validations at steps 6, 8, 10, 12 (2 and 4 are before select_from)
    fitted = fit(cfg, data, torch.device("cpu"), select=lambda model: seen.append(1) or next(scores))
    assert len(seen) == 4 and (fitted.best_step, fitted.best_score) == (12, 0.9)
    stopped = fit(replace(cfg, patience=2), data, torch.device("cpu"), select=lambda model: 0.5)
    assert (stopped.best_step, stopped.steps_run) == (6, 10)  # 8 and 10 did not beat 6: two in a row


def test_epochs_and_the_same_number_of_steps_train_the_same_weights():
    """An epochs budget is T = epochs x batches steps validated once per pass: the same run as ``steps`` = T
    with ``eval_every`` = batches per pass (the batches, draws and schedule line up exactly)."""
    data = _data()
    by_epochs = fit(replace(CFG, schedule="cosine"), data, torch.device("cpu"), select=lambda model: 0.0)
    by_steps = fit(replace(CFG, schedule="cosine", steps=9, eval_every=3), data, torch.device("cpu"),
                   select=lambda model: 0.0)
    for a, b in zip(by_epochs.model.state_dict().values(), by_steps.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_soft_targets_train_in_place_of_the_labels():
    """A part with ``soft`` targets trains towards them (the uniform-label control); joined parts without soft
    targets get one-hot ones, so the loss sees one [N, K] matrix."""
    a = _data(8)
    b = Segments(a.mel, a.frames, a.labels, torch.full((8, 4), 0.25))
    joined = Segments.join([a, b])
    t = joined.targets(torch.arange(16), 4)
    assert torch.equal(t[:8], torch.nn.functional.one_hot(a.labels, 4).float()) and torch.equal(t[8:], b.soft)
    assert joined.labels.tolist() == a.labels.tolist() * 2
    # Trained on uniform targets alone, the classifier's output drifts towards uniform.
    fitted = fit(replace(CFG, epochs=30), b, torch.device("cpu"))
    probs = torch.softmax(fitted.model(b.mel.float(), b.frames), dim=1)
    assert torch.allclose(probs, torch.full_like(probs, 0.25), atol=0.05)


def _weighted(n_real: int = 8, n_synth: int = 8, w: float = 0.5) -> Segments:
    """Real segments (weight 1 by default) joined with synthetic ones of weight ``w``."""
    real, synth = _data(n_real), _data(n_synth + 3)
    synth = Segments(synth.mel[3:], synth.frames[3:], synth.labels[3:], weight=torch.full((n_synth,), w))
    return Segments.join([real, synth])


@pytest.mark.parametrize("alpha", [None, 0.4])
def test_a_step_minimises_the_weighted_mean_of_the_segments_losses(alpha):
    """``--augment weight:W``: the batch loss is sum_i w_i l_i / sum_i w_i, with mixup over mixed pairs weighing
    lam w_a + (1 - lam) w_b; checked against a hand computation from the model's logits in float64."""
    data = _weighted()
    assert data.weight.tolist() == [1.0] * 8 + [0.5] * 8  # unweighted parts weigh 1
    cfg = replace(CFG, conv_dropout=0.0, lstm_dropout=0.0)  # the logits below are those the step sees
    torch.manual_seed(0)
    model = CnnBlstm(cfg).train()
    with torch.no_grad():  # spread the logits, so that the rows' losses differ and the weights tell
        model.out.weight.mul_(30.0)
    idx = torch.tensor([0, 9, 3, 12, 15, 6])
    gen = torch.Generator().manual_seed(5)
    x, frames = data.mel[idx].float(), data.frames[idx]
    y = torch.nn.functional.one_hot(data.labels[idx], 4).double()
    w = data.weight[idx].double()
    if alpha is not None:  # the same draw as the step's (mixup_draw is tested against mixup in test_classifier)
        lam, perm = mixup_draw(len(idx), alpha, torch.Generator().manual_seed(5))
        x = lam * x + (1 - lam) * x[perm]
        y, w = lam * y + (1 - lam) * y[perm], lam * w + (1 - lam) * w[perm]
    with torch.no_grad():
        z = model(x, frames).double().tolist()
    rows = [math.log(sum(math.exp(v) for v in zi)) - sum(p * v for p, v in zip(yi, zi, strict=True))
            for zi, yi in zip(z, y.tolist(), strict=True)]
    hand = sum(wi * li for wi, li in zip(w.tolist(), rows, strict=True)) / sum(w.tolist())
    plain = sum(rows) / len(rows)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = train_step(model, opt, data, idx, torch.device("cpu"), gen, alpha)
    assert loss == pytest.approx(hand, rel=1e-5) and loss != pytest.approx(plain, rel=1e-3)


def _train_step_before_weights(model, opt, data, idx, device, gen, mixup_alpha=None, specaugment=None, *,
                               schedule=None) -> float:
    """``train_step`` as it was before loss weights existed (a frozen copy): without weights, training must
    stay exactly this."""
    xb, fb = data.mel[idx].float(), data.frames[idx]
    yb = data.targets(idx, model.cfg.n_classes)
    if specaugment is not None:
        xb = spec_augment(xb, fb, *specaugment, generator=gen)
    if mixup_alpha is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        lam = float(np.random.default_rng(seed).beta(mixup_alpha, mixup_alpha))
        perm = torch.randperm(xb.shape[0], generator=gen)
        xb, yb = lam * xb + (1.0 - lam) * xb[perm], lam * yb + (1.0 - lam) * yb[perm]
    logits = model(xb.to(device), fb.to(device))
    loss = -(yb.to(device) * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if schedule is not None:
        schedule.step()
    return float(loss.detach())


def test_without_weights_or_with_weight_one_training_is_as_before(monkeypatch):
    """No weights trains bit for bit as the loop did before weights existed; weight 1 for every segment (W = 1)
    trains exactly as no weights, through mixup, SpecAugment and the schedule."""
    data = _data()
    ones = Segments(data.mel, data.frames, data.labels, weight=torch.ones(len(data)))
    cfg = replace(CFG, schedule="cosine")

    def trained(segments: Segments) -> dict[str, torch.Tensor]:
        return fit(cfg, segments, torch.device("cpu"), mixup_alpha=0.4, specaugment=SpecAugment(),
                   select=lambda model: 0.0).model.state_dict()

    now, weight_one = trained(data), trained(ones)
    halved = trained(Segments(data.mel, data.frames, data.labels, weight=torch.tensor([1.0, 0.5] * 12)))
    monkeypatch.setattr(training, "train_step", _train_step_before_weights)
    before = trained(data)
    for k in before:
        assert torch.equal(now[k], before[k]) and torch.equal(weight_one[k], before[k]), k
    assert not torch.equal(halved["out.weight"], before["out.weight"])  # other weights do change the training


def test_one_training_with_several_selectors_keeps_what_each_separate_training_would():
    """fit_selecting: selectors only read the model, so one trajectory serves all; each kept model equals the
    one a separate fit with that selector alone keeps (weights, step and score)."""
    data = _data()
    cfg = replace(CFG, epochs=4)
    probe = _data(n=8, frames=30)

    def scorer(which: int):
        def select(model) -> float:  # a deterministic score that peaks at different validations per selector
            out = utterance_scores(model, probe.mel, probe.frames, np.arange(8), 8, torch.device("cpu"))
            return float(out[which % 8, which % 4])
        return select

    shared = training.fit_selecting(cfg, data, torch.device("cpu"), lambda model: [scorer(0)(model), scorer(5)(model)])
    for kept, which in zip(shared, (0, 5), strict=True):
        alone = fit(cfg, data, torch.device("cpu"), select=scorer(which))
        assert (kept.best_step, kept.best_epoch, kept.best_score) == (alone.best_step, alone.best_epoch,
                                                                        alone.best_score)
        for k, v in alone.model.state_dict().items():
            assert torch.equal(kept.model.state_dict()[k], v), k
    assert shared[0].model is not shared[1].model
    assert [s.best_step for s in shared] != [0, 0]


def test_several_selectors_refuse_early_stopping():
    with pytest.raises(ValueError, match="patience"):
        training.fit_selecting(replace(CFG, patience=2), _data(), torch.device("cpu"), lambda m: [0.0, 0.0])
