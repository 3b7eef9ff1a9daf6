"""emodiff.quality: the maths against independent computations, and /quality/<set> on a toy store."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import pdist
from toy import SPEAKERS, class_means, make_toy_store

from emodiff import metrics as m
from emodiff import quality as q
from emodiff import quality_inputs as qi
from emodiff import store as st
from emodiff import study_graph
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.quality_fidelity import TABLE_FIELDS
from emodiff.ser.classifier import ClassifierConfig, CnnBlstm
from emodiff.ser.training import Segments

RNG = np.random.default_rng


# ---------------------------------------------------------------------------------------------- Frechet distance


def _exact_moments(n: int, mu: np.ndarray, var: np.ndarray, seed: int) -> np.ndarray:
    """n samples whose empirical mean is mu and empirical covariance (ddof 1) is diag(var), exactly."""
    z = RNG(seed).normal(size=(n, len(mu)))
    z -= z.mean(0)
    chol = np.linalg.cholesky(np.cov(z, rowvar=False))
    white = np.linalg.solve(chol, z.T).T  # covariance I
    return white * np.sqrt(var) + mu


def test_frechet_closed_form_for_diagonal_gaussians() -> None:
    rng = RNG(0)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    var_a, var_b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert m.frechet_from_moments(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(expected, rel=1e-10)
    a, b = _exact_moments(50, mu_a, var_a, 1), _exact_moments(80, mu_b, var_b, 2)
    assert m.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_matches_sqrtm_for_full_covariances() -> None:
    rng = RNG(3)
    a, b = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5)), rng.normal(size=(150, 5)) @ rng.normal(size=(5, 5))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb).real
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * root)
    assert m.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_in_one_dimension_is_mean_and_std_difference() -> None:
    a, b = RNG(4).normal(1.0, 2.0, size=(30, 1)), RNG(5).normal(-1.0, 0.5, size=(40, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert m.frechet_distance(a, b) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n", [5, 300])  # fewer samples than dimensions: singular covariances
def test_frechet_of_a_set_with_itself_is_zero(n: int) -> None:
    x = RNG(6).normal(size=(n, 64)) * 3 + 1
    assert m.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8 * np.trace(np.cov(x, rowvar=False)))


def test_frechet_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=">= 2 samples"):
        m.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        m.frechet_distance(np.zeros((4, 3)), np.zeros((5, 2)))


# ---------------------------------------------------------------------------------------------- diversity


def test_mean_pairwise_distance_matches_pdist() -> None:
    x = RNG(7).normal(size=(23, 9))
    assert m.mean_pairwise_distance(x) == pytest.approx(pdist(x).mean(), rel=1e-12)
    assert m.mean_pairwise_distance(np.repeat(x[:1], 10, axis=0)) == 0.0
    with pytest.raises(ValueError, match="N >= 2"):
        m.mean_pairwise_distance(x[:1])


def test_collapse_has_no_diversity_and_a_worse_frechet_than_a_faithful_set() -> None:
    rng = RNG(8)
    real, faithful = rng.normal(size=(60, 8)), rng.normal(size=(60, 8))
    collapsed = np.repeat(real[3:4], 60, axis=0)
    assert m.mean_pairwise_distance(collapsed) == 0.0
    assert m.mean_pairwise_distance(faithful) == pytest.approx(m.mean_pairwise_distance(real), rel=0.15)
    assert m.frechet_distance(real, collapsed) > 3 * m.frechet_distance(real, faithful)


# ---------------------------------------------------------------------------------------------- MAD


def _w1_hand(u: list[float], v: list[float]) -> float:
    """W1 = int |F_u - F_v| over the merged support, walked point by point."""
    points = sorted(set(u) | set(v))
    total = 0.0
    for lo, hi in zip(points[:-1], points[1:], strict=True):
        fu = sum(1 for x in u if x <= lo) / len(u)
        fv = sum(1 for x in v if x <= lo) / len(v)
        total += abs(fu - fv) * (hi - lo)
    return total


def _mad_hand(real: np.ndarray, frames: np.ndarray, synth: np.ndarray, equal: bool) -> float:
    per_bin = []
    for b in range(real.shape[1]):
        r = [float(real[n, b, t]) for n in range(len(real)) for t in range(int(frames[n]))
             if real[n, :, t].max() > q.SILENCE]
        s = [float(synth[m, b, t]) for m in range(len(synth)) for t in range(synth.shape[2])
             if synth[m, :, t].max() > q.SILENCE]
        # Equal sizes: W1 is the mean absolute difference of sorted (matched) values.
        per_bin.append(float(np.mean(np.abs(np.sort(r) - np.sort(s)))) if equal else _w1_hand(r, s))
    return float(np.mean(per_bin))


def test_mad_matches_a_hand_loop() -> None:
    rng = RNG(9)
    real = rng.uniform(-0.9, 1, size=(3, 5, 8))
    synth = rng.uniform(-0.9, 1, size=(4, 5, 6)) * 0.7
    frames = np.array([8, 8, 8])
    assert m.mad(real, frames, synth[:3, :, :]) != 0
    assert m.mad(real[:, :, :6], np.full(3, 6), synth[:3]) == pytest.approx(
        _mad_hand(real[:, :, :6], np.full(3, 6), synth[:3], equal=True), rel=1e-12)
    frames = np.array([8, 3, 5])  # unequal counts on the two sides
    assert m.mad(real, frames, synth) == pytest.approx(_mad_hand(real, frames, synth, equal=False), rel=1e-12)


def test_mad_ignores_padded_and_silent_frames() -> None:
    rng = RNG(10)
    real = rng.uniform(-0.9, 1, size=(4, 80, 40)).astype(np.float32)
    synth = rng.uniform(-0.9, 1, size=(5, 80, 40)).astype(np.float32)
    frames = np.array([40, 25, 10, 1])
    base = m.mad(real, frames, synth)
    other = real.copy()
    for n, f in enumerate(frames):
        other[n, :, f:] = rng.uniform(-1, 1, size=(80, 40 - f))  # anything in the padding
    assert m.mad(other, frames, synth) == base
    # A generator that draws the padding too (silence at -1) is not charged for it.
    padded = np.concatenate([synth, np.full((5, 80, 30), -1.0, np.float32)], axis=2)
    assert m.mad(real, frames, padded) == base
    assert q.silence_share(padded) == pytest.approx(30 / 70)
    assert q.silence_share(real, frames) == pytest.approx(1 - frames.sum() / 160)


def test_mad_is_zero_for_identical_sets_and_rewards_spread_not_just_the_mean() -> None:
    rng = RNG(11)
    # Segments that differ by a loudness offset, as recordings do.
    real = (rng.uniform(-0.3, 0.3, size=(30, 1, 1)) + rng.normal(0, 0.05, size=(30, 80, 20))).astype(np.float32)
    frames = np.full(30, 20)
    assert m.mad(real, frames, real) == 0.0
    mean_copies = np.repeat(real.mean(axis=0, keepdims=True), 30, axis=0)
    # The difference of mean mels is 0 for copies of the mean segment; MAD is not.
    assert np.abs(real.mean(0) - mean_copies.mean(0)).mean() < 1e-6
    faithful = (rng.uniform(-0.3, 0.3, size=(30, 1, 1)) + rng.normal(0, 0.05, size=(30, 80, 20))).astype(np.float32)
    assert m.mad(real, frames, mean_copies) > 2 * m.mad(real, frames, faithful)


def test_mad_without_sound_is_nan() -> None:
    silent = np.full((2, 80, 10), -1.0)
    assert math.isnan(m.mad(silent, np.array([10, 10]), np.zeros((2, 80, 10))))


def test_synthetic_frames_trims_trailing_silence() -> None:
    mel = np.full((3, 80, 10), -1.0, np.float32)
    mel[0, :, :4] = 0.0
    mel[1, 5, 7] = 0.2  # one loud bin is enough
    assert q.synthetic_frames(mel).tolist() == [4, 8, 1]


def test_imitated_corpus_is_the_most_seen() -> None:
    assert qi.imitated_corpus(["a:1", "b:1", "b:2"]) == "b"
    assert qi.imitated_corpus(["b:1", "a:1"]) == "a"  # ties: sorted order
    assert qi.imitated_corpus([]) is None


def test_embed_is_forward_before_the_output_layer() -> None:
    torch.manual_seed(0)
    model = CnnBlstm(ClassifierConfig(channels=8, lstm_hidden=6)).eval()
    mel, frames = torch.randn(3, 80, 20), torch.tensor([20, 7, 1])
    emb = model.embed(mel, frames)
    assert emb.shape == (3, 12)
    torch.testing.assert_close(model.out(emb), model(mel, frames), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- the store

PER_CLASS = 8
# The toy classes are noiseless copies of four patterns: in batches of a few segments, batch norm
# learns features of the batch's class mix and eval mode (running statistics) then misreads them.
# One batch of the whole set (32 segments) makes both modes see the same statistics.
CFG = ClassifierConfig(channels=16, lstm_hidden=16, conv_dropout=0.0, lstm_dropout=0.0, epochs=50, lr=1e-2,
                       batch_size=4 * PER_CLASS, seed=0)
TRAINED_ON = json.dumps([f"toy:{s}" for s in SPEAKERS])


def _add_set(store: Path, name: str, mel: np.ndarray, emotion: np.ndarray, training: str | None = TRAINED_ON) -> None:
    """A synthetic set by hand, in emodiff sample's layout."""
    with st.write_group(store, f"synthetic/{name}", config={"name": name}) as g:
        g.create_dataset("mel", data=mel.astype(np.float16))
        st.write_table(g, {"emotion": emotion.astype(np.int8),
                           "speaker": [f"toy:{SPEAKERS[i % 3]}" for i in range(len(emotion))],
                           "text": ["a toy sentence"] * len(emotion)})
        if training is not None:
            g.attrs["training_speakers"] = training


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy corpus alone."""
    return make_toy_store(tmp_path_factory.mktemp("bare") / "bare.h5", per_class=PER_CLASS)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, bare: Path) -> dict[str, Path]:
    """A bare toy store and one with five sets assessed (one yardstick for all), read back."""
    root = tmp_path_factory.mktemp("quality")
    store = root / "toy.h5"
    shutil.copy(bare, store)
    rng = np.random.default_rng(0)
    emotion = np.repeat(np.arange(4), 10)
    noisy = class_means()[emotion] + rng.normal(0, 0.05, size=(40, 80, 32))
    _add_set(store, "faithful", noisy, emotion)
    _add_set(store, "swapped", noisy, (emotion + 1) % 4)  # each class pattern labelled as another class
    with h5py.File(bare) as f:
        real_mel, real_emotion = f["corpora/toy/segments/mel"][()], f["corpora/toy/utterances/emotion"][()]
    _add_set(store, "copy", real_mel.astype(np.float32), real_emotion)
    _add_set(store, "collapsed", np.repeat(noisy[:1], 40, axis=0), np.zeros(40, np.int64))
    thin = np.concatenate([np.arange(3).repeat(5), [3]])  # one angry sample only
    _add_set(store, "thin", class_means()[thin], thin)
    results = q.assess(q.QualityJob(store, classifier=CFG, device="cpu"))
    return {"bare": bare, "store": store, "results": results}  # type: ignore[dict-item]


def _read(store: Path, name: str) -> tuple[dict[str, np.ndarray], dict]:
    with st.open_store(store) as f:
        g = f[f"quality/{name}"]
        return st.read_table(g["per_emotion"]), st.attrs_dict(g)


def test_store_layout(stores: dict) -> None:
    assert [r.synthetic for r in stores["results"]] == ["collapsed", "copy", "faithful", "swapped", "thin"]
    table, attrs = _read(stores["store"], "faithful")
    assert set(table) == {"emotion", "mad", "frechet", "frechet_real", "consistency", "diversity_synthetic",
                          "diversity_real",
                          "n_real", "n_synthetic", "recall_real", "silence_real", "silence_synthetic", "note",
                          *TABLE_FIELDS}
    assert table["frame_change_worst_bin"].dtype == np.int64 and attrs["nearest_k"] == 5
    assert {k: attrs[k] for k in TABLE_FIELDS} == pytest.approx(stores["results"][2].overall.scalars(), nan_ok=True)
    assert table["emotion"].tolist() == list(EMOTIONS)
    assert table["n_real"].tolist() == [PER_CLASS] * 4 and table["n_synthetic"].tolist() == [10] * 4
    assert table["mad"].dtype == np.float64 and table["n_real"].dtype == np.int64
    assert attrs["corpus"] == "toy" and attrs["synthetic"] == "faithful" and attrs["seed"] == 0
    assert json.loads(attrs["classifier"]) == CFG.recorded()
    assert attrs["classifier_source"] == "job" and attrs["mad_definition"] == q.MAD_DEFINITION
    assert json.loads(attrs["real_speakers"]) == [f"toy:{s}" for s in SPEAKERS]
    assert attrs["mad_mean"] == pytest.approx(table["mad"].mean())
    assert attrs["consistency_mean"] == pytest.approx(table["consistency"].mean())
    assert attrs["real_accuracy_on_train"] == 1.0  # the yardstick reads the toy patterns perfectly
    assert "config_hash" in attrs
    # The generator saw every toy speaker: nothing is held out, so no TSTR and no real-vs-real floor.
    assert math.isnan(attrs["tstr_uar"]) and math.isnan(attrs["trtr_uar"])
    assert json.loads(attrs["held_out_speakers"]) == [] and np.isnan(table["frechet_real"]).all()
    assert np.isnan(table["coverage_real"]).all() and math.isnan(attrs["density_real"])
    assert 0.0 <= attrs["two_sample_auc"] <= 1.0


def test_consistency_is_high_for_faithful_sets_and_low_for_swapped_labels(stores: dict) -> None:
    faithful, _ = _read(stores["store"], "faithful")
    swapped, _ = _read(stores["store"], "swapped")
    assert faithful["consistency"].min() >= 0.75
    assert swapped["consistency"].max() <= 0.25
    assert faithful["mad"].max() < 0.05  # noise of std 0.05 around the right patterns
    assert (faithful["recall_real"] == 1.0).all()


def test_identical_set_scores_zero(stores: dict) -> None:
    table, attrs = _read(stores["store"], "copy")
    assert (table["mad"] == 0.0).all()
    assert np.allclose(table["frechet"], 0.0, atol=1e-6)
    assert np.array_equal(table["diversity_synthetic"], table["diversity_real"])
    assert attrs["mad_mean"] == 0.0
    # Every real of an emotion is the same segment: its balls have radius 0, and every copy lies in all
    # of them: coverage 1, density N / k.
    assert (table["coverage"] == 1.0).all() and table["density"] == pytest.approx(PER_CLASS / 5)
    assert np.array_equal(table["silence_fraction_synthetic"], table["silence_fraction_real"])
    # Nor does any bin change in time: no frame-change ratio is defined.
    assert (table["frame_change_worst_bin"] == -1).all() and np.isnan(table["frame_change_low"]).all()


def test_collapsed_set_has_no_diversity(stores: dict) -> None:
    collapsed, _ = _read(stores["store"], "collapsed")
    faithful, _ = _read(stores["store"], "faithful")
    assert collapsed["emotion"].tolist() == ["neutral"]  # only emotions present in both sets
    # (The toy's real classes are copies of one pattern, with no spread of their own: the
    # Frechet side of collapse is tested above, on sets that have one.)
    assert collapsed["diversity_synthetic"][0] == 0.0 < faithful["diversity_synthetic"][0]


def test_an_emotion_with_one_sample_is_nan_with_a_reason(stores: dict) -> None:
    table, _ = _read(stores["store"], "thin")
    angry = table["emotion"].tolist().index("angry")
    assert table["n_synthetic"][angry] == 1
    assert math.isnan(table["frechet"][angry]) and math.isnan(table["diversity_synthetic"][angry])
    assert not math.isnan(table["mad"][angry]) and not math.isnan(table["consistency"][angry])
    assert "frechet: needs >= 2" in table["note"][angry]
    assert table["note"][0] == "" and not math.isnan(table["frechet"][0])


def test_assess_missing_skips_assessed_sets(stores: dict) -> None:
    assert q.assess(q.QualityJob(stores["store"], device="cpu", allow_empty=True)) == []
    assert q.assess(q.QualityJob(stores["bare"], device="cpu", allow_empty=True)) == []  # no set: nothing to do


def test_among_limits_the_sets_a_study_assesses_to_its_own(stores: dict) -> None:
    store = stores["store"]
    assert q._set_names(store, q.QualityJob(store, overwrite=True)) == ["collapsed", "copy", "faithful", "swapped",
                                                                        "thin"]
    assert q._set_names(store, q.QualityJob(store, overwrite=True, among=("thin", "copy", "gone"))) == ["copy", "thin"]
    assert q._set_names(store, q.QualityJob(store, among=("thin",))) == []  # assessed already, not redone


def _one_line_error(job: q.QualityJob, match: str) -> None:
    with pytest.raises(EmodiffError, match=match) as err:
        q.assess(job)
    assert "\n" not in str(err.value) and str(job.store) in str(err.value)


def test_bad_input_errors(stores: dict, tmp_path: Path) -> None:
    store = tmp_path / "bad.h5"
    shutil.copy(stores["bare"], store)
    _one_line_error(q.QualityJob(store, classifier=CFG), "holds no synthetic set")
    means = class_means()
    _add_set(store, "short", means[:, :, :16], np.arange(4))
    _add_set(store, "elsewhere", means, np.arange(4), json.dumps(["iemocap:Ses01F"]))
    _add_set(store, "anonymous", means, np.arange(4), training=None)
    _add_set(store, "stranger", means, np.arange(4), json.dumps(["toy:s9"]))
    _add_set(store, "unknown", means, np.array([0, 1, 2, 7]))
    _one_line_error(q.QualityJob(store, classifier=CFG), "records no training_speakers")  # all sets checked first
    _one_line_error(q.QualityJob(store, synthetic="nope", classifier=CFG), "no synthetic set 'nope'")
    _one_line_error(q.QualityJob(store, synthetic="short", classifier=CFG), r"expected the same shape")
    _one_line_error(q.QualityJob(store, synthetic="elsewhere", classifier=CFG), "corpus iemocap is not prepared")
    _one_line_error(q.QualityJob(store, synthetic="anonymous", classifier=CFG), "records no training_speakers")
    _one_line_error(q.QualityJob(store, synthetic="stranger", classifier=CFG), "holds none of the speakers")
    _one_line_error(q.QualityJob(store, synthetic="unknown", classifier=CFG), "ids outside 0..3")
    _one_line_error(q.QualityJob(stores["store"], synthetic="copy", classifier=CFG), "already holds /quality/copy")
    with h5py.File(store) as f:
        assert "quality" not in f


@pytest.mark.parametrize("n", [1, q.MIN_SEGMENTS - 1])
def test_a_set_too_small_to_measure_is_refused_before_any_training(bare: Path, tmp_path: Path, monkeypatch,
                                                                   n: int) -> None:
    """With fewer segments than the two-sample AUC's folds, a fold trains on no synthetic segment (1 segment:
    on nothing at all) and the AUC of a few scores is 0 or 1 by chance: refused, naming the minimum."""
    from cli_checks import one_line_error
    from typer.testing import CliRunner

    from emodiff.cli import app

    assert q.MIN_SEGMENTS == 3  # one synthetic segment in each of the 3 folds' test parts
    store = tmp_path / "tiny.h5"
    shutil.copy(bare, store)
    emotion = np.arange(n) % 4
    _add_set(store, "one", class_means()[emotion], emotion)
    monkeypatch.setattr(q, "_train_yardstick", lambda *a: pytest.fail("trained before refusing"))
    plural = "segment" if n == 1 else "segments"
    words = f"synthetic set 'one' has {n} {plural}; quality needs at least 3 per set (the two-sample AUC's 3-fold"
    _one_line_error(q.QualityJob(store, synthetic="one", classifier=CFG, device="cpu"), re.escape(words))
    result = CliRunner().invoke(app, ["quality", "--synthetic", "one", "--store", str(store), "--device", "cpu",
                                      "--threads", "1"])
    one_line_error(result, words, first=True)
    with h5py.File(store) as f:
        assert "quality" not in f


def test_default_classifier_is_the_sets_recipe_else_the_demo_recipe(stores: dict) -> None:
    synth = qi.read_synthetic(stores["store"], "faithful")
    job = q.QualityJob(stores["store"])
    assert q._classifier(job, synth) == (q.load_recipe("demo").classifier, "demo recipe")
    recipe = q.load_recipe("paper").to_dict()
    with_recipe = qi.AssessedSet(**{**synth.__dict__, "recipe": recipe})
    assert q._classifier(job, with_recipe) == (q.load_recipe("paper").classifier, "/synthetic/faithful recipe")
    assert q._classifier(q.QualityJob(stores["store"], classifier=CFG), with_recipe) == (CFG, "job")


# ---------------------------------------------------------------------------------------------- held-out speakers


def test_roc_auc_matches_scikit_learn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(float)  # many ties
    labels = rng.integers(0, 2, size=200)
    assert q.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert q.roc_auc(np.array([3.0, 1.0]), np.array([1, 0])) == 1.0
    assert q.roc_auc(np.array([1.0, 1.0]), np.array([1, 0])) == 0.5
    assert math.isnan(q.roc_auc(np.array([1.0]), np.array([1])))


def test_held_out_speakers_give_tstr_trtr_and_an_out_of_sample_floor(stores: dict, tmp_path: Path) -> None:
    """A generator that saw s1 and s2: the yardstick trains on them alone; s3 is where TSTR, TRTR, recall
    and the FD are judged (one speaker: no real-vs-real floor)."""
    store = tmp_path / "held.h5"
    shutil.copy(stores["bare"], store)
    rng = np.random.default_rng(1)
    emotion = np.repeat(np.arange(4), 10)
    _add_set(store, "faithful", class_means()[emotion] + rng.normal(0, 0.05, size=(40, 80, 32)), emotion,
             training=json.dumps(["toy:s1", "toy:s2"]))
    _add_set(store, "swapped", class_means()[emotion] + rng.normal(0, 0.05, size=(40, 80, 32)), (emotion + 1) % 4,
             training=json.dumps(["toy:s1", "toy:s2"]))
    results = {r.synthetic: r for r in q.assess(q.QualityJob(store, classifier=CFG, device="cpu"))}
    faithful, swapped = results["faithful"].held_out, results["swapped"].held_out
    assert faithful.speakers == swapped.speakers == ["toy:s3"]
    assert faithful.trtr_uar == swapped.trtr_uar == 1.0  # the same yardstick, on s3's real utterances
    assert faithful.tstr_uar == 1.0  # trained on the faithful samples alone, it reads s3 perfectly
    assert swapped.tstr_uar == 0.0  # the swapped labels teach every class as another
    table, attrs = _read(store, "faithful")
    assert attrs["tstr_uar"] == 1.0 and json.loads(attrs["held_out_speakers"]) == ["toy:s3"]
    # Not asked for (--held-out-auc): neither measured nor written, and the config (so its hash) as before it existed
    assert math.isnan(faithful.two_sample_auc_held) and math.isnan(faithful.two_sample_auc_floor)
    assert "two_sample_auc_held" not in attrs and "held_out_auc" not in json.loads(attrs["config"])
    n_s3 = sum(1 for i in range(4 * PER_CLASS) if SPEAKERS[i % 3] == "s3")
    assert table["n_real"].sum() == n_s3  # recall and FD are judged on the held-out speaker only
    for r in results.values():
        assert 0.0 <= r.held_out.two_sample_auc <= 1.0


def test_held_out_auc_compares_with_the_held_out_speakers_beside_a_speaker_change_floor(bare: Path,
                                                                                          tmp_path: Path) -> None:
    """A corpus where the held-out speaker s3 sounds different (every value 0.3 higher) and a generator that saw s1
    and s2. The floor (s1 and s2 against s3) is then high, whatever the set; a set that sounds like s1 and s2 is
    told from s3 as easily as the floor, one that sounds like s3 is not; the AUC against the generator's own
    speakers says the opposite. (Without --held-out-auc: the test above.)"""
    store = tmp_path / "held.h5"
    shutil.copy(bare, store)
    s3 = np.array([SPEAKERS[i % 3] == "s3" for i in range(4 * PER_CLASS)])
    with h5py.File(store, "a") as f:  # the speaker effect, written over the stored segments
        mel = f["corpora/toy/segments/mel"]
        mel[np.flatnonzero(s3)] = mel[np.flatnonzero(s3)] + np.float16(0.3)
    emotion = np.repeat(np.arange(4), 10)
    trained = json.dumps(["toy:s1", "toy:s2"])
    _add_set(store, "like-s1-s2", class_means()[emotion], emotion, training=trained)
    _add_set(store, "like-s3", class_means()[emotion] + 0.3, emotion, training=trained)
    fast = dataclasses.replace(CFG, epochs=20)  # a level shift is learnt in a few steps; 19 fits here in all
    results = {r.synthetic: r.held_out for r in q.assess(q.QualityJob(store, classifier=fast, device="cpu",
                                                                      held_out_auc=True))}
    near, far = results["like-s1-s2"], results["like-s3"]
    assert near.two_sample_auc_floor == far.two_sample_auc_floor >= 0.9  # the same real segments, the same seeds
    assert near.two_sample_auc_held >= 0.9 and far.two_sample_auc_held <= 0.75
    assert near.two_sample_auc <= 0.75 and far.two_sample_auc >= 0.9  # against s1 and s2: the other way round
    attrs = _read(store, "like-s3")[1]
    assert attrs["two_sample_auc_held"] == far.two_sample_auc_held
    assert attrs["two_sample_auc_floor"] == far.two_sample_auc_floor
    assert json.loads(attrs["config"])["held_out_auc"] is True
    assert study_graph._assessed(store, ("like-s1-s2", "like-s3"), held_out_auc=True)  # a study finds them done
    from emodiff.records import Quality
    from emodiff.report.quality_table import _table, number

    with st.open_store(store) as f:  # the report's Table 1 says it in words, not among the set-level values
        notes = " ".join(_table(Quality.read(f, "like-s3")).notes)
    assert (f"never saw: two-sample AUC {number(far.two_sample_auc_held)}, beside the floor that the change of "
            f"speaker alone sets, {number(far.two_sample_auc_floor)}") in notes and "two_sample_auc_held" not in notes


def test_a_study_with_held_out_auc_assesses_again_the_sets_assessed_without_it(stores: dict, monkeypatch) -> None:
    """study.held_out_auc: the study's quality job counts a set assessed without the held-out AUC as not done and
    assesses it again (overwrite, with held_out_auc); without the switch the same sets are done."""
    from emodiff.generators import load_recipe

    jobs: list[q.QualityJob] = []
    monkeypatch.setattr(q, "assess", lambda job: jobs.append(job) or [job])
    store, names = stores["store"], ("faithful", "swapped")
    recipe = load_recipe("demo")
    for held_out_auc in (False, True):
        study = dataclasses.replace(recipe.study, held_out_auc=held_out_auc)
        s = study_graph.GraphSettings(store, dataclasses.replace(recipe, study=study), store.parent, "cpu", 1, 0)
        assert study_graph._assessed(store, names, held_out_auc) is not held_out_auc
        study_graph._quality(s, names)
        job = jobs.pop()
        assert (job.held_out_auc, job.overwrite) == (held_out_auc, held_out_auc) and set(job.among) == set(names)


def test_quality_command_passes_held_out_auc_and_prints_it(stores: dict, monkeypatch) -> None:
    """--held-out-auc reaches the job; the summary prints the held-out AUC beside its floor when measured."""
    from rich.console import Console
    from typer.testing import CliRunner

    from emodiff.cli import app
    from emodiff.cli.render import quality_summary

    jobs: list[q.QualityJob] = []
    monkeypatch.setattr(q, "assess", lambda job: jobs.append(job) or [])
    for flags, expected in (([], False), (["--held-out-auc"], True)):
        out = CliRunner().invoke(app, ["quality", "--store", str(stores["store"]), "--device", "cpu", *flags])
        assert out.exit_code == 0, out.output
        assert jobs.pop().held_out_auc is expected
    result = dataclasses.replace(stores["results"][2], held_out=q.HeldOut(
        two_sample_auc=0.9, two_sample_auc_held=0.97, two_sample_auc_floor=0.95, speakers=["toy:s3"]))
    console = Console(record=True, width=200)
    quality_summary(console, [result])
    assert "two-sample AUC against the held-out speakers 0.97, floor 0.95" in console.export_text()
    console = Console(record=True, width=200)
    quality_summary(console, stores["results"][2:3])  # not measured: no such line
    assert "against the held-out speakers" not in console.export_text()


def test_fidelity_and_diversity_are_written_and_reported(bare: Path, tmp_path: Path) -> None:
    """A generator that saw s1 alone: s2 and s3 are the real halves. The real segments get noise (the toy's are
    noiseless copies, whose bins never change), and the synthetic set the same noise with frames 10-17 silent."""
    from emodiff.report.blocks import Document, Section
    from emodiff.report.collect import collect
    from emodiff.report.markdown import render_markdown
    from emodiff.report.quality_table import quality_blocks

    store = tmp_path / "separated.h5"
    shutil.copy(bare, store)
    rng = np.random.default_rng(4)
    with h5py.File(store, "r+") as f:
        mel = f["corpora/toy/segments/mel"]
        emotion = f["corpora/toy/utterances/emotion"][()]
        mel[...] = (class_means()[emotion] + rng.normal(0, 0.05, size=mel.shape)).astype(np.float16)
    asked = np.repeat(np.arange(4), 10)
    gappy = class_means()[asked] + rng.normal(0, 0.05, size=(40, 80, 32))
    gappy[:, :, 10:18] = -1.0
    _add_set(store, "gappy", gappy, asked, training=json.dumps(["toy:s1"]))
    cfg = dataclasses.replace(CFG, epochs=2)  # any yardstick embeds; these metrics do not need a good one
    [result] = q.assess(q.QualityJob(store, classifier=cfg, device="cpu", nearest_k=2))
    table, attrs = _read(store, "gappy")
    assert attrs["nearest_k"] == 2 and result.overall is not None
    # 8 of 32 frames are silent in every synthetic segment, none in the real ones.
    assert table["silence_fraction_synthetic"].tolist() == [0.25] * 4 and attrs["silence_fraction_synthetic"] == 0.25
    assert table["silence_fraction_real"].tolist() == [0.0] * 4 and attrs["silence_fraction_real"] == 0.0
    # The gap's edges are jumps of 1.6 in the loud bins 60-79: the worst bins. Two real halves of the same
    # noise change alike: their ratio is near 1.
    assert (table["frame_change_worst_bin"] >= 60).all() and (table["frame_change_worst"] > 2).all()
    assert attrs["frame_change_worst_bin"] >= 60 and attrs["frame_change_worst"] > 2
    assert abs(attrs["frame_change_low_real"] - 1) < 0.1 and abs(attrs["frame_change_worst_real"] - 1) < 0.5
    for key in ("density", "density_real", "coverage", "coverage_real"):
        assert np.isfinite(table[key]).all() and np.isfinite(attrs[key]), key
        assert attrs[key] >= 0 and (key.startswith("density") or attrs[key] <= 1), key
    with st.open_store(store) as f:
        arrays = q.Quality.read(f, "gappy").arrays
    assert arrays["frame_change_ratio"].shape == arrays["frame_change_ratio_real"].shape == (5, 80)
    np.testing.assert_array_equal(arrays["frame_change_ratio"][-1], result.overall.ratio)
    # Table 1: a "synthetic / real" cell per metric, a row per emotion and one for the whole set.
    [block] = quality_blocks(collect(store))
    header = "silence fraction, synthetic / real"
    assert header in block.headers and block.rows[-1][0] == "all emotions"
    assert [r[block.headers.index(header)] for r in block.rows] == ["0.25 / 0"] * 5
    worst = block.rows[-1][block.headers.index("frame change ratio, worst bin, synthetic / real-vs-real")]
    assert f"(bin {attrs['frame_change_worst_bin']}) / " in worst
    assert not any("never saw" in n for n in block.notes)  # assessed without --held-out-auc: no such sentence
    assert "silence fraction, synthetic / real" in render_markdown(Document("r", [], [Section("q", "Q", [block])]))


def test_two_sample_auc_is_near_chance_for_one_distribution_and_high_for_another() -> None:
    cfg = dataclasses.replace(CFG, epochs=30, batch_size=16)
    rng = np.random.default_rng(2)
    emotion = np.repeat(np.arange(4), 16)
    frames = np.full(64, 32)

    def draw(noise: float) -> Segments:
        mel = (class_means()[emotion] + rng.normal(0, noise, size=(64, 80, 32))).astype(np.float32)
        return Segments(torch.from_numpy(mel).half(), torch.from_numpy(frames), torch.from_numpy(emotion))

    real = draw(0.05)
    same = q.two_sample_auc(cfg, real, draw(0.05), torch.device("cpu"))
    other = q.two_sample_auc(cfg, real, draw(0.3), torch.device("cpu"))
    assert same == pytest.approx(0.5, abs=0.15)
    assert other > 0.95
    # Exact copies are a tell of their own: a copy's twin sits in the training folds with the other label,
    # so the test misreads it, and the AUC falls below 0.5 (memorisation shows as AUC < 0.5).
    assert q.two_sample_auc(cfg, real, real, torch.device("cpu")) < 0.5


def test_quality_command_prints_its_tables_and_refuses_an_assessed_set(stores: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from emodiff.cli import app

    store = tmp_path / "cli.h5"
    shutil.copy(stores["store"], store)
    runner = CliRunner()
    again = runner.invoke(app, ["quality", "--synthetic", "faithful", "--store", str(store), "--device", "cpu"])
    assert again.exit_code == 1 and "already holds /quality/faithful" in again.output
    result = runner.invoke(app, ["quality", "--synthetic", "faithful", "--overwrite", "--store", str(store),
                                 "--device", "cpu"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "/quality/faithful against toy" in result.output and "two-sample AUC" in result.output
    assert "all emotions, synthetic (real): density" in " ".join(result.output.split())
    assert "…" not in result.output  # at 80 columns headers and values fold; nothing is cut


def test_two_sample_folds_keep_an_utterances_segments_together() -> None:
    """Real utterances of two identical segments each: split across folds, the classifier recognises the
    utterance and calls its twin real; kept in one fold, real and same-distribution synthetic are a coin toss."""
    cfg = dataclasses.replace(CFG, epochs=30, batch_size=16)
    rng = np.random.default_rng(3)
    emotion = np.repeat(np.arange(4), 16)

    def draw() -> np.ndarray:
        return (class_means()[emotion] + rng.normal(0, 0.3, size=(64, 80, 32))).astype(np.float32)

    once = draw()[::2]  # 32 utterances ...
    real_mel, utt = np.repeat(once, 2, axis=0), np.repeat(np.arange(32), 2)  # ... of two identical segments
    frames = np.full(64, 32)
    real = Segments(torch.from_numpy(real_mel).half(), torch.from_numpy(frames), torch.from_numpy(emotion))
    synth = Segments(torch.from_numpy(draw()).half(), torch.from_numpy(frames), torch.from_numpy(emotion))
    split = q.two_sample_auc(cfg, real, synth, torch.device("cpu"))
    grouped = q.two_sample_auc(cfg, real, synth, torch.device("cpu"), real_groups=utt)
    assert split > 0.7, split
    assert grouped == pytest.approx(0.5, abs=0.15), grouped
