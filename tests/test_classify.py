"""``classify``: real RAVDESS above chance, the leak guard, results in the store, bad input."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from toy import make_toy_store, tiny_recipe
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.classify import Augment, ClassifyJob, classify
from emodiff.cli import app
from emodiff.data import ravdess_sample
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareJob, prepare
from emodiff.sample import SampleJob, sample
from emodiff.ser.classifier import ClassifierConfig
from emodiff.train import TrainJob, train

TINY = ClassifierConfig(channels=32, lstm_hidden=32, epochs=8, lr=1e-3, batch_size=32)


@pytest.fixture(scope="module")
def ravdess_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ravdess") / "s.h5"
    prepare(PrepareJob(path, "ravdess", ravdess_sample()))
    return path


def test_loso_on_real_ravdess_is_clearly_above_chance(ravdess_store, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(ravdess_store, store)
    result = classify(ClassifyJob(store=store, corpus="ravdess", folds="loso", classifier=TINY, device="cpu"))
    assert [r.name for r in result.folds] == [f"test={s}" for s in ("01", "02", "03", "04", "05", "06")]
    # Chance is 0.25. Six actors leave four to train on per fold; this tiny model reaches 0.36
    # here. The "well over" is for the 24-actor subset, still to be measured (see note).
    assert result.uar[0] > 0.30, result.folds
    with st.open_store(store) as f:
        g = f["results/ravdess-loso-real"]
        assert g.attrs["uar_mean"] == pytest.approx(result.uar[0]) and not g.attrs["leaky"]
        fold = g["test=01"]
        assert fold["confusion"].shape == (4, 4) and fold["confusion"][()].sum() == 28  # actor 01's utterances
        preds = st.read_table(fold["predictions"])
        assert set(preds["speaker"].tolist()) == {"01"} and len(preds["id"]) == 28
        assert fold.attrs["uar"] == pytest.approx(result.folds[0].uar)


@pytest.fixture(scope="module")
def toy_with_synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    store = make_toy_store(root / "toy.h5")
    train(TrainJob(store=store, recipe=tiny_recipe(3), corpora=("toy",), out=root / "runs" / "tiny", device="cpu"))
    sample(SampleJob(store=store, n=8, steps=3, device="cpu"))
    return store


def test_leak_guard_refuses_and_allow_leak_marks(toy_with_synthetic, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(toy_with_synthetic, store)
    cfg = dataclasses.replace(TINY, epochs=1)
    job = ClassifyJob(store=store, corpus="toy", train_on="real+synthetic", classifier=cfg, device="cpu")
    with pytest.raises(EmodiffError, match=r"fold test=s1: .*trained on toy:s1.*--exclude-speakers toy:s1,toy:s2"):
        classify(job)
    assert not st.has_group(store, "results/toy-loso-real-synthetic")
    result = classify(dataclasses.replace(job, allow_leak=True))
    assert result.leaky
    with st.open_store(store) as f:
        assert f["results/toy-loso-real-synthetic"].attrs["leaky"]


def test_synthetic_only_training_uses_the_set(toy_with_synthetic, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(toy_with_synthetic, store)
    job = ClassifyJob(store=store, corpus="toy", train_on="synthetic", allow_leak=True,
                      classifier=dataclasses.replace(TINY, epochs=1), device="cpu")
    result = classify(job)
    assert len(result.folds) == 3
    with st.open_store(store) as f:
        assert f["results/toy-loso-synthetic"].attrs["synthetic"] == "tiny"


def test_augment_parsing():
    a = Augment.parse("synthetic+mixup")
    assert a.synthetic == "" and a.mixup == pytest.approx(0.2) and not a.specaugment
    b = Augment.parse("synthetic:demo+mixup:0.4+specaugment")
    assert (b.synthetic, b.mixup, b.specaugment) == ("demo", 0.4, True)
    with pytest.raises(EmodiffError, match="expected synthetic"):
        Augment.parse("pitch")
    c = Augment.parse("speed+noise+speed+mixup")
    assert c.offline == ("speed", "noise") and c.label() == "mixup:0.2+speed+noise"
    assert Augment.parse(b.label()) == b and Augment.parse("").label() == ""
    with pytest.raises(EmodiffError, match="alpha > 0"):
        Augment.parse("mixup:0")
    with pytest.raises(EmodiffError, match="expected a number"):
        Augment.parse("mixup:x")


def test_cli_classify_and_bad_input(ravdess_store, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(ravdess_store, store)
    runner = CliRunner()
    done = runner.invoke(app, ["classify", "--folds", "groups:3", "--epochs", "1", "--store", str(store),
                               "--device", "cpu", "--augment", "mixup+specaugment"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "UAR" in done.stdout and "group=2" in done.stdout
    for args, message in (
        (["--corpus", "iemocap"], "corpus iemocap is not prepared"),
        (["--augment", "synthetic"], "holds no synthetic set"),
        (["--folds", "groups:1"], "groups"),
        (["--train-on", "fake"], "expected real, synthetic or real+synthetic"),
        (["--loso", "--folds", "session"], "disagree"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
    ):
        bad = runner.invoke(app, ["classify", "--store", str(store), "--epochs", "1", *args])
        assert bad.exit_code == 1 and "Traceback" not in bad.output, (args, bad.output)
        assert message in " ".join(bad.stderr.split()), (args, bad.stderr)


def test_compare_with_stores_the_paired_difference_against_the_baseline(toy_with_synthetic, tmp_path):
    """Paired statistics against a real-only run on the same folds and seeds, checked by hand from the folds."""
    import numpy as np

    from emodiff.ser.paired import bootstrap_ci

    store = tmp_path / "s.h5"
    shutil.copy(toy_with_synthetic, store)
    cfg = dataclasses.replace(TINY, epochs=1)
    real = classify(ClassifyJob(store=store, corpus="toy", classifier=cfg, repeats=2, device="cpu"))
    job = ClassifyJob(store=store, corpus="toy", augment=Augment.parse("specaugment"), classifier=cfg, repeats=2,
                      device="cpu", baseline="toy-loso-real")
    result = classify(job)
    assert real.comparison is None and result.comparison is not None
    with st.open_store(store) as f:
        base, ours = f["results/toy-loso-real"], f["results/toy-loso-real-specaugment"]
        diffs = np.array([ours[k].attrs["uar"] - base[k].attrs["uar"] for k in sorted(ours)])
        attrs = dict(ours.attrs)
    assert len(diffs) == 6 and attrs["paired_n"] == 6 and attrs["paired_baseline"] == "toy-loso-real"
    mean, low, high = bootstrap_ci(diffs)
    assert attrs["paired_mean_diff"] == pytest.approx(diffs.mean())
    assert (attrs["paired_ci_low"], attrs["paired_ci_high"]) == pytest.approx((low, high))
    assert attrs["paired_wins"] + attrs["paired_losses"] + attrs["paired_ties"] == 6
    assert 0.0 <= attrs["paired_p_wilcoxon"] <= 1.0
    assert result.comparison.text().endswith("(n = 6)")

    # another number of seeds is refused before any training, and nothing is written
    other = dataclasses.replace(job, repeats=1, name="one-seed")
    with pytest.raises(EmodiffError, match="--compare-with toy-loso-real: its folds and seeds differ"):
        classify(other)
    assert not st.has_group(store, "results/one-seed")
    with pytest.raises(EmodiffError, match="no /results/nothing to compare with"):
        classify(dataclasses.replace(job, baseline="nothing", name="x"))


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_workers_give_the_results_of_one_process(toy_with_synthetic, tmp_path, one_thread):
    """Two worker processes (one torch thread each) store exactly what one process on one thread does."""
    import numpy as np

    store = tmp_path / "s.h5"
    shutil.copy(toy_with_synthetic, store)
    job = ClassifyJob(store=store, corpus="toy", augment=Augment.parse("synthetic+mixup+specaugment"), allow_leak=True,
                      classifier=dataclasses.replace(TINY, epochs=2), repeats=2, device="cpu")
    one = classify(dataclasses.replace(job, name="one"))
    two = classify(dataclasses.replace(job, name="two", workers=2))
    assert [(r.name, r.seed, r.uar, r.best_epoch, r.val_uar) for r in two.folds] == [
        (r.name, r.seed, r.uar, r.best_epoch, r.val_uar) for r in one.folds]
    assert len(one.folds) == 6 and two.uar == one.uar
    with st.open_store(store) as f:
        a, b = f["results/one"], f["results/two"]
        assert list(a) == list(b) and a.attrs["config_hash"] == b.attrs["config_hash"]
        for key in a:
            assert np.array_equal(a[key]["confusion"][()], b[key]["confusion"][()]), key
            assert np.array_equal(a[key]["predictions/log_probs"][()], b[key]["predictions/log_probs"][()]), key
            assert a[key].attrs["uar"] == b[key].attrs["uar"] and a[key].attrs["seed"] == b[key].attrs["seed"]


def test_cli_workers_reach_the_job(ravdess_store, monkeypatch, one_thread):
    jobs: list[ClassifyJob] = []

    def record(job: ClassifyJob, progress: object) -> None:
        jobs.append(job)
        raise EmodiffError("job reached")

    monkeypatch.setattr("emodiff.classify.classify", record)
    result = CliRunner().invoke(app, ["classify", "--store", str(ravdess_store), "--workers", "2", "--threads", "2"])
    assert result.exit_code == 1 and "job reached" in result.stderr, result.output
    assert [job.workers for job in jobs] == [2]


def test_a_failure_in_a_worker_reaches_the_caller_and_adds_nothing(toy_with_synthetic, tmp_path, one_thread):
    store = tmp_path / "s.h5"
    shutil.copy(toy_with_synthetic, store)
    # The toy corpus has 4 emotions: training one-hot encodes its labels and fails, inside the worker.
    job = ClassifyJob(store=store, corpus="toy", classifier=dataclasses.replace(TINY, epochs=1, n_classes=2),
                      device="cpu", workers=2, name="bad")
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        classify(job)
    assert not st.has_group(store, "results/bad")
    assert not list(tmp_path.glob("*.partial"))


def test_the_shuffled_control_permutes_only_the_synthetic_labels(toy_with_synthetic, tmp_path):
    """``+shuffle``: the same synthetic segments, labels permuted by the run's seed; the real ones untouched."""
    from emodiff.classify import _synthetic_sets, plan_folds
    from emodiff.ser.folds import read_corpora, training_segments

    store = tmp_path / "s.h5"
    shutil.copy(toy_with_synthetic, store)
    job = ClassifyJob(store=store, corpus="toy", augment=Augment.parse("synthetic+shuffle"), allow_leak=True,
                      classifier=dataclasses.replace(TINY, epochs=1), device="cpu")
    data = read_corpora(store, ["toy"])
    fold = plan_folds(data, job)[0]
    with st.open_store(store) as f:
        labels = f["synthetic/tiny/emotion"][()]
    [synth] = _synthetic_sets(store, Augment.parse("synthetic:tiny"))
    plain = training_segments(fold, data, synth, {}, dataclasses.replace(job.fold_spec(), shuffle=False), seed=0)
    draws = [training_segments(fold, data, synth, {}, job.fold_spec(), seed=s) for s in (0, 0, 1)]
    n_real = len(plain) - len(labels)
    assert plain.labels[n_real:].tolist() == labels.tolist()
    for d in draws:
        assert d.labels[:n_real].tolist() == plain.labels[:n_real].tolist()  # real labels kept
        assert sorted(d.labels[n_real:].tolist()) == sorted(labels.tolist())  # a permutation of the same labels
        assert d.mel.equal(plain.mel)  # of the same segments, in the same order
    assert draws[0].labels.tolist() == draws[1].labels.tolist() != draws[2].labels.tolist()  # seeded by the run
    assert draws[0].labels[n_real:].tolist() != labels.tolist()

    result = classify(job)
    with st.open_store(store) as f:
        g = f["results/toy-loso-real-synthetic-shuffle"]
        assert g.attrs["augment"] == "synthetic+shuffle" and '"shuffle":true' in g.attrs["config"]
    assert result.group == "/results/toy-loso-real-synthetic-shuffle"
