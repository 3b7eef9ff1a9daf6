"""``classifier.kind: stats``: utterance statistics, speaker standardisation, the L2 fit and its selection, and
``emodiff classify`` with it end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.classify import Augment, ClassifyJob, classify
from emodiff.cli import app
from emodiff.config import ClassifierConfig, SettingError
from emodiff.config.recipe import RECIPES
from emodiff.errors import EmodiffError
from emodiff.experiments import Experiment
from emodiff.report.experiments import classifier_words
from emodiff.ser import stats_folds as folds_module
from emodiff.ser.folds import (
    Candidate,
    FoldSpec,
    Offline,
    read_corpora,
    stats_features,
    training_units,
)
from emodiff.ser.protocols import Fold
from emodiff.ser.stats import Units, fit_linear, fit_stats_selecting, standardise_groups, utterance_stats
from emodiff.ser.training import Segments

STATS = ClassifierConfig(kind="stats", l2=(1.0, 0.1, 0.01))


def _segments(n: int = 30, channels: int = 6, frames: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    mel = torch.from_numpy(rng.uniform(-1, 1, (n, channels, frames)).astype(np.float16))
    valid = torch.from_numpy(rng.integers(1, frames + 1, n))
    unit = rng.permutation(np.arange(n) % 7)  # 7 units of 4-5 segments each, interleaved
    return mel, valid, unit


def test_utterance_stats_pool_the_valid_frames_of_all_of_a_units_segments():
    mel, valid, unit = _segments()
    got = utterance_stats(mel, valid, unit, 7, chunk=4)  # chunks that cut across units
    x = mel.double().numpy()
    for u in range(7):
        frames = np.concatenate([x[n, :, :valid[n]] for n in np.flatnonzero(unit == u)], axis=1)  # [C, T]
        np.testing.assert_allclose(got[u], np.concatenate([frames.mean(axis=1), frames.std(axis=1)]), atol=1e-12)
    assert got.shape == (7, 12) and got.dtype == np.float64
    with pytest.raises(ValueError, match="1 of 8 units have no valid frames"):
        utterance_stats(mel, valid, unit, 8)


def test_speaker_standardisation_gives_zero_mean_unit_std_per_speaker():
    rng = np.random.default_rng(1)
    speaker = np.array(["a"] * 5 + ["b"] * 9 + ["c"])  # c has one utterance
    x = rng.normal(size=(15, 4)) * 3 + np.where(speaker == "b", 10.0, 0.0)[:, None]
    x[:, 3] = np.where(speaker == "a", 2.0, x[:, 3])  # a constant bin for speaker a
    z = standardise_groups(x, speaker)
    for s in ("a", "b"):
        np.testing.assert_allclose(z[speaker == s].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[speaker == "b"].std(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(z[speaker == "a"][:, :3].std(axis=0), 1.0, atol=1e-12)
    assert np.all(z[speaker == "a"][:, 3] == 0.0) and np.all(z[speaker == "c"] == 0.0)  # the eps guard: finite zeros


def _units(n: int = 60, d: int = 5, k: int = 3, seed: int = 2, soft: bool = False, weight: bool = False) -> Units:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d) + 0.8 * np.eye(k, d)[labels]
    p = rng.dirichlet(np.ones(k), n) if soft else None
    w = rng.uniform(0.5, 2.0, n) if weight else None
    return Units(x, labels, p, w)


@pytest.mark.parametrize(("soft", "weight"), [(False, False), (True, True)])
def test_the_l2_fit_is_at_the_penalised_optimum(soft, weight):
    """A hand-written gradient of J = sum_i w_i l_i / sum_i w_i + lambda / 2 ||W||^2 is ~0 at the fit."""
    data, l2 = _units(soft=soft, weight=weight), 0.05
    model = fit_linear(data, l2, 3)
    z = (data.x - data.x.mean(axis=0)) / data.x.std(axis=0)
    w_, b = model.out.weight.detach().numpy(), model.out.bias.detach().numpy()
    logits = z @ w_.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    w = data.weight if data.weight is not None else np.ones(len(data))
    r = w[:, None] * (p - data.targets(3)) / w.sum()  # [N, K]
    assert np.abs(r.T @ z + l2 * w_).max() < 1e-7 and np.abs(r.sum(axis=0)).max() < 1e-7
    assert np.abs(w_).max() > 0.1  # not the trivial zero


def test_the_l2_fit_is_sklearns_logistic_regression_with_c_1_over_lambda_n():
    sklearn = pytest.importorskip("sklearn.linear_model")
    data, l2 = _units(), 0.02
    model = fit_linear(data, l2, 3)
    z = (data.x - data.x.mean(axis=0)) / data.x.std(axis=0)
    ref = sklearn.LogisticRegression(C=1.0 / (l2 * len(data)), tol=1e-12, max_iter=10_000).fit(z, data.labels)
    np.testing.assert_allclose(model.out.weight.detach().numpy(), ref.coef_, atol=1e-6)
    np.testing.assert_allclose(model.log_probs(data.x), ref.predict_log_proba(z), atol=1e-6)


def test_each_fold_keeps_the_strength_of_its_best_validation_uar():
    data = _units()
    table = {1.0: (0.5, 0.7), 0.1: (0.9, 0.7), 0.01: (0.6, 0.8)}  # fold 0 wants 0.1, fold 1 wants 0.01
    seen = []

    def scores(model):
        seen.append(model.l2)
        return table[model.l2]

    cfg = dataclasses.replace(STATS, n_classes=3)
    kept = fit_stats_selecting(cfg, data, scores)
    assert seen == [1.0, 0.1, 0.01]  # one fit per strength, in the grid's order
    assert [(k.l2, k.index, k.best_score, k.fits) for k in kept] == [(0.1, 1, 0.9, 3), (0.01, 2, 0.8, 3)]
    tie = fit_stats_selecting(cfg, data, lambda model: [0.5])  # equal scores keep the earlier, stronger one
    assert tie[0].l2 == 1.0
    last = fit_stats_selecting(cfg, data, None)[0]  # no selection: the last fit; and no seed changes a convex fit
    torch.manual_seed(123)
    assert last.l2 == 0.01 and torch.equal(last.model.out.weight, fit_linear(data, 0.01, 3).out.weight)


def test_config_records_kind_and_l2_only_when_not_the_cnn():
    assert "kind" not in ClassifierConfig().recorded() and "l2" not in ClassifierConfig().recipe_dict()
    assert ClassifierConfig().recorded() == {k: v for k, v in dataclasses.asdict(ClassifierConfig()).items()
                                             if k not in ("kind", "l2", "segment_norm", "steps", "eval_every")}
    assert STATS.recorded()["kind"] == "stats" and STATS.recorded()["l2"] == [1.0, 0.1, 0.01]
    assert "linear model" in classifier_words(STATS.recorded())  # the report does not call it a CNN of N channels
    for bad, match in (({"kind": "svm"}, "classifier.kind: expected one of cnn-blstm, stats"),
                       ({"kind": "stats", "l2": (0.1, 0.0)}, "classifier.l2: expected a non-empty list"),
                       ({"kind": "stats", "l2": ()}, "classifier.l2: expected a non-empty list"),
                       ({"l2": (0.1,)}, "the default unless classifier.kind is stats")):
        with pytest.raises(SettingError, match=match):
            ClassifierConfig(**bad)


# ---------------------------------------------------------------------------------------------- end to end

SPEAKERS = ("s0", "s1", "s2", "s3")


def _speaker_store(path: Path, per_class: int = 6, frames: int = 24) -> Path:
    """/corpora/toy: 4 speakers x 4 classes x ``per_class`` utterances of 1-2 segments. Class k raises mel bins
    10k+5..10k+9 by 0.3; speaker s raises the bins of class (s + 1) % 4 by 1.0 in every utterance it speaks, so
    that without speaker standardisation each speaker looks like one class."""
    rng = np.random.default_rng(0)
    rows = [(s, k) for s in range(4) for k in range(4) for _ in range(per_class)]
    mels, utt, valid = [], [], []
    for u, (s, k) in enumerate(rows):
        for _ in range(1 + u % 2):
            n = int(rng.integers(frames // 2, frames + 1))
            mel = np.full((80, frames), -1.0)
            mel[:, :n] = -0.5 + 0.1 * rng.normal(size=(80, n))
            mel[10 * k + 5:10 * k + 10, :n] += 0.3
            mel[10 * ((s + 1) % 4) + 5:10 * ((s + 1) % 4) + 10, :n] += 1.0
            mels.append(mel)
            utt.append(u)
            valid.append(n)
    with st.write_group(path, "corpora/toy", config={"speaker-offsets": per_class}) as g:
        n = len(rows)
        st.write_table(g.create_group("utterances"), {
            "id": [f"u{i:03d}" for i in range(n)], "speaker": [SPEAKERS[s] for s, _ in rows],
            "gender": ["F" if s % 2 else "M" for s, _ in rows], "session": [""] * n,
            "emotion": np.array([k for _, k in rows], np.int8), "text": ["a sentence"] * n,
            "duration_s": np.full(n, 1.0, np.float32), "source_rate": np.full(n, 22050, np.int32),
            "path": [f"/toy/u{i:03d}.wav" for i in range(n)]})
        segs = g.create_group("segments")
        segs.create_dataset("mel", data=np.stack(mels).astype(np.float16))
        segs.create_dataset("utt", data=np.array(utt, np.int32))
        segs.create_dataset("frames", data=np.array(valid, np.int32))
        g.attrs["corpus"] = "toy"
    return path


@pytest.fixture()
def speaker_store(tmp_path) -> Path:
    return _speaker_store(tmp_path / "s.h5")


def _stats_recipe(path: Path) -> Path:
    data = yaml.safe_load((RECIPES / "demo.yaml").read_text())
    data["classifier"] |= {"kind": "stats", "l2": [1.0, 0.1, 0.01]}
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_stats_recipe_reads_back_from_what_it_records(tmp_path):
    from emodiff.generators import load_recipe

    recipe = load_recipe(_stats_recipe(tmp_path / "r.yaml"))
    assert (recipe.classifier.kind, recipe.classifier.l2) == ("stats", (1.0, 0.1, 0.01))
    assert recipe.to_dict()["classifier"]["kind"] == "stats" and recipe.to_dict()["classifier"]["l2"] == [1, 0.1, 0.01]
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(recipe.to_dict()))
    assert load_recipe(again) == recipe


def test_cli_classify_with_kind_stats_needs_the_speaker_standardisation(speaker_store, tmp_path, monkeypatch):
    runner = CliRunner()
    common = ["classify", "--store", str(speaker_store), "--recipe", str(_stats_recipe(tmp_path / "r.yaml")),
              "--corpus", "toy", "--device", "cpu"]
    done = runner.invoke(app, [*common, "--loso"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "L2 kept" in done.stdout
    with st.open_store(speaker_store) as f:
        g = f["results/toy-loso-real"]
        assert json.loads(g.attrs["config"])["classifier"]["kind"] == "stats"
        assert g.attrs["uar_mean"] > 0.95  # chance: 0.25
        for name in ("test=s0", "test=s1", "test=s2", "test=s3"):
            fold = g[name].attrs
            assert fold["l2"] == [1.0, 0.1, 0.01][fold["best_step"] - 1] and fold["steps_run"] == 3
            assert fold["n_train"] == 48 and fold["n_test"] == 24
    # The same without the speaker standardisation: each test speaker is read as the class its offset mimics.
    monkeypatch.setattr(folds_module, "standardise_groups", lambda x, group: x)
    job = ClassifyJob(store=speaker_store, corpus="toy", classifier=STATS, name="unnormalised", device="cpu")
    assert classify(job).uar[0] < 0.6
    bad = runner.invoke(app, [*common, "--augment", "mixup", "--name", "m"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "--augment mixup: classifier.kind stats fits a linear model" in " ".join(bad.stderr.split())


@pytest.mark.parametrize("augment", ["mixup:0.4", "specaugment"])
def test_kind_stats_refuses_mixup_and_specaugment(tmp_path, augment):
    setting = augment.partition(":")[0]
    with pytest.raises(EmodiffError, match=f"--augment {setting}: classifier.kind stats fits a linear model"):
        ClassifyJob(store=tmp_path / "s.h5", corpus="toy", augment=Augment.parse(augment), classifier=STATS)
    ClassifyJob(store=tmp_path / "s.h5", corpus="toy", augment=Augment.parse(augment))  # the CNN takes it


def _write_synthetic(store: Path, name: str, mel: np.ndarray, emotion: np.ndarray, speaker: list[str]) -> None:
    with st.write_group(store, f"synthetic/{name}", config={"hand": name}) as g:
        g.create_dataset("mel", data=mel.astype(np.float16))
        g.create_dataset("frames", data=np.full(len(mel), mel.shape[2], np.int64))
        st.write_table(g, {"emotion": emotion.astype(np.int8), "speaker": speaker})
        g.attrs["training_speakers"] = json.dumps([])


def test_training_units_take_offline_copies_and_synthetic_segments_as_units(speaker_store):
    data = read_corpora(speaker_store, ["toy"])
    fold = Fold("f", tuple(range(48)), tuple(range(48, 72)), tuple(range(72, 96)))
    # Two speed copies of every utterance: each copy (utterance, factor) one unit, whatever its segments.
    rows = np.concatenate([np.arange(len(data.utt))] * 2)
    offline = {"speed": Offline(Segments(data.mel[rows], data.frames[rows], torch.zeros(len(rows))),
                                data.utt[rows], np.repeat([0.9, 1.1], len(data.utt)))}
    features = stats_features(data, offline)
    copies, copy_utt = features.offline["speed"]
    assert copies.shape == (2 * 96, 160) and sorted(copy_utt.tolist()) == sorted(list(range(96)) * 2)
    for s in SPEAKERS:  # each copy standardised within (speaker, kind)
        np.testing.assert_allclose(copies[data.speaker[copy_utt] == s].mean(axis=0), 0.0, atol=1e-9)
    mel = np.full((8, 80, 24), -0.5) + np.random.default_rng(3).normal(0, 0.1, (8, 80, 24))
    mel[4:] += 2.0  # voice v2 much louder than v1: standardised away within its group
    _write_synthetic(speaker_store, "hand", mel, np.arange(8) % 4, ["v1"] * 4 + ["v2"] * 4)
    synth = Candidate("hand", frozenset(), (80, 24), 8)
    spec = FoldSpec(store=speaker_store, corpora=("toy",), classifier=STATS,
                    experiment=Experiment(augment=Augment.parse("synthetic:hand+uniform+weight:0.5+speed")))
    units = training_units(fold, data, synth, features, spec, seed=0)
    assert len(units) == 48 + 2 * 48 + 8  # the training utterances, their copies only, the synthetic segments
    np.testing.assert_allclose(units.x[-8:][:4].mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(units.x[-8:][4:].mean(axis=0), 0.0, atol=1e-9)
    assert np.allclose(units.soft[-8:], 0.25) and np.allclose(units.soft[:-8].max(axis=1), 1.0)  # uniform: synthetic
    assert units.weight.tolist() == [1.0] * 144 + [0.5] * 8
