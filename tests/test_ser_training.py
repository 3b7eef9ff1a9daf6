"""The shared SER training loop: precise batch-norm statistics, model selection, utterance scores."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from emodiff.ser import training
from emodiff.ser.classifier import PAD_VALUE, ClassifierConfig, CnnBlstm, valid_mask
from emodiff.ser.training import (
    Segments,
    fit,
    recalibrate_batch_norm,
    train_epoch,
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
