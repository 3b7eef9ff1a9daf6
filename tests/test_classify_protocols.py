"""``classify`` across corpora (cross-corpus, adaptation), with repeats, with per-fold synthetic sets."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from miniature import make_crema_d
from toy import class_means, make_toy_store
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.classify import Augment, ClassifyJob, classify
from emodiff.cli import app
from emodiff.data import ravdess_sample
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareJob, prepare
from emodiff.ser.classifier import ClassifierConfig

ONE_EPOCH = ClassifierConfig(channels=16, lstm_hidden=16, epochs=1, lr=1e-3, batch_size=32)


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory) -> Path:
    """The bundled RAVDESS sample (6 actors, 168 files) and a miniature CREMA-D (3 actors, 5 files)."""
    root = tmp_path_factory.mktemp("two")
    make_crema_d(root / "crema")
    path = root / "s.h5"
    prepare(PrepareJob(path, "ravdess", ravdess_sample()))
    prepare(PrepareJob(path, "crema-d", root / "crema"))
    return path


@pytest.fixture()
def store(two_corpora, tmp_path) -> Path:
    path = tmp_path / "s.h5"
    shutil.copy(two_corpora, path)
    return path


def _speakers(g, key: str) -> set[str]:
    return set(json.loads(g.attrs[key]))


def test_cross_corpus_trains_on_the_source_and_splits_the_target_by_speaker(store):
    result = classify(ClassifyJob(store=store, corpus="ravdess", train_corpus="crema-d", classifier=ONE_EPOCH,
                                  device="cpu"))
    assert result.protocol == "cross-corpus" and [r.name for r in result.folds] == ["cross-corpus"]
    with st.open_store(store) as f:
        g = f["results/crema-d-to-ravdess-real"]
        assert (g.attrs["protocol"], g.attrs["train_corpus"], g.attrs["corpus"]) == ("cross-corpus", "crema-d",
                                                                                     "ravdess")
        fold = g["cross-corpus"]
        test, val = _speakers(fold, "test_speakers"), _speakers(fold, "val_speakers")
        assert test and val and not test & val and all(s.startswith("ravdess:") for s in test | val)
        assert fold.attrs["n_train"] == 5  # every CREMA-D utterance, no RAVDESS one
        # 30 % of the target's utterances select the model: 2 of 6 actors, 28 files each.
        assert fold.attrs["n_val"] == 56 and fold.attrs["n_test"] == 112
        preds = st.read_table(fold["predictions"])
        assert set(preds["corpus"].tolist()) == {"ravdess"} and len(preds["id"]) == 112


def test_adaptation_sweep_keeps_the_test_half_fixed_and_grows_training(store):
    seen = []
    for fraction in (0.0, 0.5, 1.0):
        job = ClassifyJob(store=store, corpus="ravdess", train_corpus="crema-d", target_fraction=fraction,
                          classifier=ONE_EPOCH, device="cpu")
        result = classify(job)
        assert result.group == f"/results/crema-d-to-ravdess-adapt{fraction:g}-real"
        with st.open_store(store) as f:
            g = f[result.group]
            fold = g[next(iter(g))]
            assert g.attrs["protocol"] == "adaptation" and g.attrs["target_fraction"] == fraction
            seen.append((_speakers(fold, "test_speakers"), fold.attrs["n_train"]))
    assert seen[0][0] == seen[1][0] == seen[2][0] and len(seen[0][0]) == 3  # half of 6 actors, the same each time
    assert seen[0][1] == 5 < seen[1][1] < seen[2][1]  # source only, then more and more of the target


def test_repeats_store_each_seed_and_the_spread_over_seeds(store):
    job = ClassifyJob(store=store, corpus="ravdess", folds="groups:3", classifier=ONE_EPOCH, repeats=2, device="cpu")
    result = classify(job)
    assert len(result.folds) == 6 and sorted({r.seed for r in result.folds}) == [0, 1]
    with st.open_store(store) as f:
        g = f["results/ravdess-groups3-real"]
        assert sorted(g) == sorted(f"group={k}@seed{s}" for k in range(3) for s in (0, 1))
        uars = np.array([[g[f"group={k}@seed{s}"].attrs["uar"] for k in range(3)] for s in (0, 1)])
        assert g.attrs["uar_mean"] == pytest.approx(uars.mean())
        assert g.attrs["uar_std"] == pytest.approx(np.std(uars.mean(axis=0), ddof=1))  # over folds
        assert g.attrs["uar_seed_std"] == pytest.approx(np.std(uars.mean(axis=1), ddof=1))  # over seeds
        assert g.attrs["repeats"] == 2 and json.loads(g.attrs["seeds"]) == [0, 1]


def _write_synthetic(store: Path, name: str, speakers: list[str], shape=(80, 32), n: int = 8) -> None:
    emotion = np.arange(n) % 4
    with st.write_group(store, f"synthetic/{name}", config={"name": name}) as g:
        g.create_dataset("mel", data=np.resize(class_means(shape[1])[emotion], (n, *shape)).astype(np.float16))
        g.create_dataset("emotion", data=emotion.astype(np.int8))
        g.attrs["training_speakers"] = json.dumps(speakers)


def test_each_fold_takes_a_set_whose_generator_never_saw_its_speakers(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5")  # speakers s1, s2, s3; LOSO folds test s_i, validate s_i+1
    _write_synthetic(store, "without-s1-s2", ["toy:s3"])
    _write_synthetic(store, "without-s2-s3", ["toy:s1"])
    _write_synthetic(store, "without-s3-s1", ["toy:s2"])
    job = ClassifyJob(store=store, corpus="toy", augment=Augment(synthetic=""), classifier=ONE_EPOCH, device="cpu")
    result = classify(job)
    assert {r.name: r.synthetic for r in result.folds} == {
        "test=s1": "without-s1-s2", "test=s2": "without-s2-s3", "test=s3": "without-s3-s1"}
    assert not result.leaky
    with st.open_store(store) as f:
        g = f["results/toy-loso-real-synthetic"]
        assert g.attrs["train_on"] == "real+synthetic" and g.attrs["augment"] == "synthetic"
        assert g["test=s2"].attrs["synthetic"] == "without-s2-s3" and not g["test=s2"].attrs["leaky"]


def test_leak_guard_names_the_fold_when_no_set_qualifies(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5")
    _write_synthetic(store, "all", ["toy:s1", "toy:s2", "toy:s3"])
    _write_synthetic(store, "without-s1-s2", ["toy:s3"])
    job = ClassifyJob(store=store, corpus="toy", augment=Augment(synthetic=""), classifier=ONE_EPOCH, device="cpu")
    leak = r"fold test=s2: every synthetic set.s generator was trained on toy:s3.*--exclude-speakers toy:s2,toy:s3"
    with pytest.raises(EmodiffError, match=leak):
        classify(job)
    assert not st.has_group(store, "results/toy-loso-real-synthetic")


def test_synthetic_set_of_the_wrong_shape_is_refused(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5")
    _write_synthetic(store, "long", [], shape=(80, 64))
    job = ClassifyJob(store=store, corpus="toy", train_on="synthetic", classifier=ONE_EPOCH, device="cpu")
    with pytest.raises(EmodiffError, match=r"/synthetic/long segments are \(80, 64\), the corpus's are \(80, 32\)"):
        classify(job)


def test_an_empty_training_set_is_refused(tmp_path):
    store = make_toy_store(tmp_path / "toy.h5")
    _write_synthetic(store, "empty", [], n=0)
    job = ClassifyJob(store=store, corpus="toy", train_on="synthetic", classifier=ONE_EPOCH, device="cpu")
    with pytest.raises(EmodiffError, match="fold test=s1: no training segments"):
        classify(job)
    assert not st.has_group(store, "results/toy-loso-synthetic")


def test_job_settings_are_checked():
    base = {"store": Path("s.h5"), "corpus": "ravdess"}
    with pytest.raises(EmodiffError, match="needs --train SOURCE"):
        ClassifyJob(**base, target_fraction=0.3)
    with pytest.raises(EmodiffError, match="30 % is 0.3"):
        ClassifyJob(**base, train_corpus="crema-d", target_fraction=30)
    with pytest.raises(EmodiffError, match="both ravdess"):
        ClassifyJob(**base, train_corpus="ravdess")
    with pytest.raises(EmodiffError, match="needs --train-on real or real"):
        ClassifyJob(**base, train_on="synthetic", augment=Augment(offline=("speed",)))
    assert ClassifyJob(**base, augment=Augment(synthetic="x", mixup=0.2)).default_name() == \
        "ravdess-loso-real-synthetic-mixup"


def test_cross_corpus_target_splits_rotate_over_target_speakers_or_split_utterances(store):
    job = ClassifyJob(store=store, corpus="crema-d", train_corpus="ravdess", classifier=ONE_EPOCH, device="cpu",
                      target_split="groups:3")
    assert job.default_name() == "ravdess-to-crema-d-groups3-real" and job.config()["target_split"] == "groups:3"
    assert "target_split" not in dataclasses.replace(job, target_split="speakers").config()  # old hashes stay
    result = classify(job)
    assert [r.name for r in result.folds] == [f"target.group={i}" for i in range(3)]
    with st.open_store(store) as f:
        g = f["results/ravdess-to-crema-d-groups3-real"]
        tested = [_speakers(g[f"target.group={i}"], "test_speakers") for i in range(3)]
        assert sorted(s for t in tested for s in t) == ["crema-d:1001", "crema-d:1002", "crema-d:1076"]
        assert all(g[f"target.group={i}"].attrs["n_train"] == 168 for i in range(3))  # the source only
    paper = classify(dataclasses.replace(job, target_split="random", name="paper"))
    with st.open_store(store) as f:
        fold = f["results/paper/cross-corpus.random"]
        assert (fold.attrs["n_val"], fold.attrs["n_test"]) == (2, 3)  # round(0.3 * 5) of the 5 utterances
    assert [r.name for r in paper.folds] == ["cross-corpus.random"]
    with pytest.raises(EmodiffError, match="only cross-corpus"):
        ClassifyJob(store=store, corpus="ravdess", target_split="groups:3")
    with pytest.raises(EmodiffError, match="expected speakers, random, loso or groups:K"):
        dataclasses.replace(job, target_split="groups")


def test_cli_cross_corpus_adaptation_sweep_and_bad_input(store):
    runner = CliRunner()
    common = ["--store", str(store), "--epochs", "1", "--device", "cpu"]
    done = runner.invoke(app, ["classify", "--train", "crema-d", "--test", "ravdess", *common], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "cross-corpus" in done.stdout
    sweep = runner.invoke(app, ["classify", "--train", "crema-d", "--test", "ravdess", "--target-fraction", "0,1",
                                *common])
    assert sweep.exit_code == 0, sweep.output
    with st.open_store(store) as f:
        assert {"crema-d-to-ravdess-adapt0-real", "crema-d-to-ravdess-adapt1-real"} <= set(f["results"])
    for args, message in (
        (["--train", "crema-d"], "needs both --train SOURCE and --test TARGET"),
        (["--train", "crema-d", "--test", "ravdess"], "already holds /results/crema-d-to-ravdess-real"),
        (["--train", "CREMA_D", "--test", "RAVDESS"], "already holds /results/crema-d-to-ravdess-real"),  # as prepared
        (["--corpus", "../ravdess"], "--corpus '../ravdess': expected a corpus name of"),
        (["--train", "crema-d", "--test", "ravdess", "--corpus", "ravdess"], "its own protocol"),
        (["--target-fraction", "0.5"], "--target-fraction needs --train"),
        (["--train", "crema-d", "--test", "ravdess", "--target-fraction", "x"], "comma-separated numbers"),
        (["--train", "nosuch", "--test", "ravdess"], "unknown corpus 'nosuch'"),
        (["--train", "iemocap", "--test", "ravdess"], "corpus iemocap is not prepared"),
        (["--corpus", "crema-d", "--folds", "groups:5"], "k=5 groups, expected 3..3"),
        (["--corpus", "ravdess", "--repeats", "0"], "--repeats must be at least 1"),
    ):
        bad = runner.invoke(app, ["classify", *common, *args])
        assert bad.exit_code == 1 and "Traceback" not in bad.output, (args, bad.output)
        assert message in " ".join(bad.stderr.split()), (args, bad.stderr)


def test_offline_augmentation_adds_only_training_utterances(store):
    from emodiff.augment import AugmentJob, augment
    from emodiff.classify import plan_folds
    from emodiff.ser.folds import read_corpora, read_offline, training_segments

    augment(AugmentJob(store, "crema-d", "speed", factors=(0.9, 1.1)))
    job = ClassifyJob(store=store, corpus="ravdess", train_corpus="crema-d", target_fraction=0.5,
                      augment=Augment(offline=("speed",)), classifier=ONE_EPOCH, device="cpu")
    data = read_corpora(store, ["crema-d", "ravdess"])
    fold = plan_folds(data, job)[0]
    offline = {"speed": read_offline(store, "speed", data, ["crema-d", "ravdess"])}
    assert set(offline["speed"].utt.tolist()) == set(range(5))  # the CREMA-D rows come first
    train = training_segments(fold, data, None, offline, job.fold_spec())
    real = data.rows_of(fold.train)
    assert len(train) == len(real) + len(offline["speed"].utt)  # RAVDESS has no speed set: CREMA-D's copies only
    job_ravdess = dataclasses.replace(job, train_corpus=None, target_fraction=None, corpus="ravdess")
    with pytest.raises(EmodiffError, match="run `emodiff augment speed --corpus ravdess` first"):
        classify(job_ravdess)


def test_target_folds_that_train_alike_share_one_training_with_the_results_of_separate_runs(store, monkeypatch):
    """The folds of a speaker-disjoint target split all train on the source alone: one training per seed serves
    them, and each fold's result (its own epoch choice on its own development speakers, its test UAR and
    predictions) is what training it alone gives, here or in worker processes."""
    from emodiff.ser import folds as folds_module

    job = ClassifyJob(store=store, corpus="crema-d", train_corpus="ravdess", device="cpu", target_split="loso",
                      classifier=dataclasses.replace(ONE_EPOCH, steps=6, eval_every=2))
    trainings = []
    real_fit = folds_module.fit_selecting

    def counting_fit(*args, **kwargs):  # one call per training; its length is the folds it served
        fitted = real_fit(*args, **kwargs)
        trainings.append(len(fitted))
        return fitted

    monkeypatch.setattr(folds_module, "fit_selecting", counting_fit)
    classify(dataclasses.replace(job, name="shared"))
    assert trainings == [3]  # one training, three folds

    trainings.clear()
    monkeypatch.setattr(folds_module, "shared_trainings", lambda runs, cfg: [(i,) for i in range(len(runs))])
    classify(dataclasses.replace(job, name="alone"))
    assert trainings == [1] * 3
    monkeypatch.undo()
    classify(dataclasses.replace(job, name="workers", workers=2))

    def folds(name: str) -> dict:
        with st.open_store(store) as f:
            g = f[f"results/{name}"]
            return {k: ({a: g[k].attrs[a] for a in ("uar", "val_uar", "best_step", "seed")},
                        {d: g[k]["predictions"][d][()].tolist() for d in g[k]["predictions"]})
                    for k in g if "confusion" in g[k]}

    shared = folds("shared")
    assert len(shared) == 3 and shared == folds("alone") == folds("workers")


def test_shared_trainings_group_only_runs_with_the_same_data_and_seed():
    from emodiff.ser.folds import FoldRun, shared_trainings
    from emodiff.ser.protocols import Fold

    a, b, c = Fold("a", (0, 1), (2,), (3,)), Fold("b", (0, 1), (3,), (2,)), Fold("c", (0, 2), (1,), (3,))
    runs = [FoldRun(a, None, 0), FoldRun(b, None, 0), FoldRun(c, None, 0), FoldRun(a, None, 1), FoldRun(b, None, 1)]
    assert shared_trainings(runs, ONE_EPOCH) == [(0, 1), (2,), (3, 4)]
    assert shared_trainings(runs, dataclasses.replace(ONE_EPOCH, patience=2)) == [(i,) for i in range(5)]
