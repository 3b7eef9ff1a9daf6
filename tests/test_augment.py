"""``emodiff augment``: speed perturbation and additive noise, checked on signals and on real RAVDESS audio."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from toy import tiny_recipe
from typer.testing import CliRunner

from emodiff import store as st
from emodiff.augment import AugmentJob, add_noise, augment, coloured_noise, speed_perturb
from emodiff.batches import split
from emodiff.checkpoint import load_checkpoint
from emodiff.cli import app
from emodiff.config import TrainConfig
from emodiff.data import ravdess_sample
from emodiff.embed import EmbedJob, embed
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareJob, prepare
from emodiff.records import Augmented
from emodiff.segments import load_segments
from emodiff.train import TrainJob, train

SR = 22050


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_scales_pitch_and_duration_together(factor):
    t = np.arange(2 * 16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    y = speed_perturb(tone, 16000, factor, SR)
    assert len(y) == pytest.approx(2 * SR / factor, abs=2)
    assert _peak_hz(y, SR) == pytest.approx(440.0 * factor, abs=1.0)


@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0])
def test_noise_is_added_at_the_asked_snr(snr):
    rng = np.random.default_rng(0)
    speech = (0.1 * np.sin(np.linspace(0, 400, 40000))).astype(np.float32)
    noise = coloured_noise(len(speech), "white", rng)
    y = add_noise(speech, noise, snr)
    residual = y.astype(np.float64) - speech
    assert 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(residual**2)) == pytest.approx(snr, abs=1e-3)


def test_loud_noise_is_scaled_down_not_clipped():
    speech = np.full(1000, 0.9, np.float32)
    y = add_noise(speech, coloured_noise(1000, "white", np.random.default_rng(1)), -10.0)
    assert np.max(np.abs(y)) == pytest.approx(1.0)


def test_pink_noise_falls_by_one_decade_of_power_per_decade_of_frequency():
    x = coloured_noise(2**16, "pink", np.random.default_rng(0)).astype(np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x))
    band = (f > 1e-3) & (f < 0.4)
    slope = np.polyfit(np.log10(f[band]), np.log10(power[band]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("aug")
    shutil.copytree(ravdess_sample(), root / "ravdess")  # a copy: one test removes a file
    prepare(PrepareJob(root / "s.h5", "ravdess", root / "ravdess", limit=6))
    return root / "s.h5"


@pytest.fixture()
def store(small_store, tmp_path) -> Path:
    path = tmp_path / "s.h5"
    shutil.copy(small_store, path)
    return path


def _valid_frames(g) -> dict[tuple[int, float], int]:
    out: dict[tuple[int, float], int] = {}
    for u, p, n in zip(g["segments/utt"][()], g["segments/param"][()], g["segments/frames"][()], strict=True):
        out[(int(u), float(np.float32(p)))] = out.get((int(u), float(np.float32(p))), 0) + int(n)
    return out


def test_speed_copies_of_real_audio_in_the_store(store):
    result = augment(AugmentJob(store, "ravdess", "speed", factors=(0.9, 1.1), workers=2))
    assert result.group == "/augmented/ravdess/speed" and result.utterances == 6 and not result.already_there
    with st.open_store(store) as f:
        g, corpus = f["augmented/ravdess/speed"], f["corpora/ravdess"]
        assert g["segments/mel"].shape[1:] == (80, 256) and g["segments/mel"].dtype == corpus["segments/mel"].dtype
        original: dict[int, int] = {}
        for u, n in zip(corpus["segments/utt"][()], corpus["segments/frames"][()], strict=True):
            original[int(u)] = original.get(int(u), 0) + int(n)
        copies = _valid_frames(g)
        for u, frames in original.items():
            for factor in (0.9, 1.1):
                assert copies[(u, float(np.float32(factor)))] == pytest.approx(frames / factor, rel=0.01, abs=2)
        mel = g["segments/mel"][()]
        assert mel.min() >= -1.0 and mel.max() <= 1.0 and np.isfinite(mel).all()
        assert list(g.attrs["params"]) == pytest.approx([0.9, 1.1]) and g.attrs["kind"] == "speed"
    again = augment(AugmentJob(store, "ravdess", "speed", factors=(0.9, 1.1)))
    assert again.already_there
    with pytest.raises(EmodiffError, match="exists with other settings"):
        augment(AugmentJob(store, "ravdess", "speed", factors=(0.8,)))


def test_noise_copies_move_further_from_the_original_at_lower_snr(store):
    augment(AugmentJob(store, "ravdess", "noise", snrs=(30.0, 5.0), colour="pink"))
    with st.open_store(store) as f:
        g, corpus = f["augmented/ravdess/noise"], f["corpora/ravdess"]
        mel, utt, param = g["segments/mel"][()].astype(np.float32), g["segments/utt"][()], g["segments/param"][()]
        orig, orig_utt = corpus["segments/mel"][()].astype(np.float32), corpus["segments/utt"][()]
        first = {int(u): int(np.flatnonzero(orig_utt == u)[0]) for u in set(orig_utt.tolist())}
        err = {snr: np.mean([np.abs(mel[i] - orig[first[int(utt[i])]]).mean()
                             for i in np.flatnonzero(param == snr) if i == np.flatnonzero((utt == utt[i]) &
                                                                                           (param == snr))[0]])
               for snr in (30.0, 5.0)}
    assert 0 < err[30.0] < err[5.0]


def test_noise_from_a_folder_of_recordings(store, tmp_path):
    folder = tmp_path / "noise"
    folder.mkdir()
    sf.write(folder / "hum.wav", 0.3 * np.sin(np.arange(8000) * 2 * np.pi * 50 / 8000), 8000)
    result = augment(AugmentJob(store, "ravdess", "noise", snrs=(10.0,), noise_dir=folder))
    assert result.segments >= 6


def test_bad_input_gets_one_line_and_leaves_the_store_alone(store, tmp_path):
    runner = CliRunner()
    before = store.read_bytes()
    for args, message in (
        (["pitch"], "unknown augmentation 'pitch'"),
        (["speed", "--factors", "3"], "expected speed factors in [0.5, 2]"),
        (["speed", "--factors", "x"], "expected comma-separated numbers"),
        (["noise", "--colour", "brown"], "expected one of white, pink"),
        (["noise", "--noise-dir", str(tmp_path / "none")], "not a folder"),
        (["speed", "--corpus", "crema-d"], "corpus crema-d is not prepared"),
    ):
        bad = runner.invoke(app, ["augment", *args, "--store", str(store)])
        assert bad.exit_code == 1 and "Traceback" not in bad.output, (args, bad.output)
        assert message in " ".join(bad.stderr.split()), (args, bad.stderr)
    with st.open_store(store) as f:
        missing = Path(str(st.read_table(f["corpora/ravdess/utterances"])["path"][0]))
    moved = tmp_path / "moved.flac"
    shutil.move(missing, moved)
    bad = runner.invoke(app, ["augment", "speed", "--store", str(store)])
    shutil.move(moved, missing)
    assert bad.exit_code == 1 and f"{missing}: audio file not found" in " ".join(bad.stderr.split())
    assert store.read_bytes() == before
    done = runner.invoke(app, ["augment", "speed", "--store", str(store)])
    assert done.exit_code == 0 and "/augmented/ravdess/speed" in done.stdout


def test_copies_of_an_earlier_preparation_are_refused_not_misread(tmp_path):
    """Re-preparing the corpus renumbers its utterances: copies (and text embeddings) made before would carry other
    utterances' labels (or index past the table), so every reader refuses them with one line naming the command that
    makes them again."""
    root = tmp_path / "ravdess"
    shutil.copytree(ravdess_sample(), root)
    store = tmp_path / "s.h5"
    prepare(PrepareJob(store, "ravdess", root, limit=6))
    embed(EmbedJob(store))
    augment(AugmentJob(store, "ravdess", "speed"))
    prepare(PrepareJob(store, "ravdess", root, limit=4, overwrite=True))
    stale = "/augmented/ravdess/speed was made from an earlier preparation of /corpora/ravdess; make it again with " \
            "`emodiff augment speed --corpus ravdess --overwrite`"
    runner = CliRunner()
    for args in (["augment", "speed"], ["classify", "--folds", "groups:3", "--augment", "speed", "--epochs", "1"]):
        before = store.read_bytes()
        bad = runner.invoke(app, [*args, "--store", str(store)])
        assert bad.exit_code == 1 and "Traceback" not in bad.output, (args, bad.output)
        assert stale in " ".join(bad.stderr.split()), (args, bad.stderr)
        assert store.read_bytes() == before
    with pytest.raises(EmodiffError, match=r"/embeddings/all-MiniLM-L6-v2/ravdess was made from an earlier "
                                           r"preparation of /corpora/ravdess \(6 rows for its 4 utterances\); re-run "
                                           r"`emodiff embed --corpus ravdess --overwrite`"):
        load_segments(store, ["ravdess"], "all-MiniLM-L6-v2")  # the text conditions are stale too
    embed(EmbedJob(store, overwrite=True))
    with pytest.raises(EmodiffError, match="/augmented/ravdess/speed was made from an earlier preparation"):
        load_segments(store, ["ravdess"], "all-MiniLM-L6-v2", augmented=("speed",))
    assert not augment(AugmentJob(store, "ravdess", "speed", overwrite=True)).already_there
    assert len(load_segments(store, ["ravdess"], "all-MiniLM-L6-v2", augmented=("speed",))[0].speaker) == 12
    # copies written before they recorded their corpus: judged by age (made before the corpus: stale)
    with h5py.File(store, "a") as f:
        g = f["augmented/ravdess/speed"]
        del g.attrs["corpus_created"]
        assert Augmented.read(f, "ravdess", "speed").corpus_created == ""  # younger than the corpus: fresh
        g.attrs["created"] = "2000-01-01T00:00:00+00:00"
        with pytest.raises(EmodiffError, match="made from an earlier preparation"):
            Augmented.read(f, "ravdess", "speed")


@pytest.fixture(scope="module")
def copies_store(small_store, tmp_path_factory) -> Path:
    """The six utterances with their text embeddings and their 0.9 / 1.1 speed copies."""
    path = tmp_path_factory.mktemp("copies") / "s.h5"
    shutil.copy(small_store, path)
    embed(EmbedJob(path))
    augment(AugmentJob(path, "ravdess", "speed", factors=(0.9, 1.1)))
    return path


def test_speed_copies_join_the_generators_training_data_as_utterances_of_their_own(copies_store):
    """``train.augmented: [speed]``: each factor's copy of utterance u is a row with u's text, speaker and emotion,
    its segments the stored copy's, and ``source`` points back at u."""
    plain, _ = load_segments(copies_store, ["ravdess"], "all-MiniLM-L6-v2", load="memory")
    data, fingerprint = load_segments(copies_store, ["ravdess"], "all-MiniLM-L6-v2", load="memory",
                                      augmented=("speed",))
    assert "augmented/ravdess/speed" in fingerprint and plain.source is None
    with st.open_store(copies_store) as f:
        g = f["augmented/ravdess/speed"]
        copy_mel, copy_utt, copy_param = g["segments/mel"][()], g["segments/utt"][()], g["segments/param"][()]
    u = len(plain.speaker)
    assert len(data) == len(plain) + len(copy_mel) and len(data.speaker) == 3 * u
    assert torch.equal(data.mel[:len(plain)], plain.mel) and torch.equal(data.utt[:len(plain)], plain.utt)
    rows = data.utt[len(plain):].numpy()
    factor = np.where(np.isclose(copy_param, 0.9), 1, 2)
    assert (rows == factor * u + copy_utt).all()
    assert np.array_equal(data.mel[len(plain):].numpy(), copy_mel.astype(np.float16))
    assert (data.source[rows] == copy_utt).all() and (data.source[:u] == np.arange(u)).all()
    for row in (u + 2, 2 * u + 5):
        original = row % u
        assert data.speaker[row] == plain.speaker[original] and data.emotion[row] == plain.emotion[original]
        assert torch.equal(data.tokens[row], plain.tokens[original]) and data.lengths[row] == plain.lengths[original]
    assert data.speakers() == plain.speakers()
    chunks, _ = load_segments(copies_store, ["ravdess"], "all-MiniLM-L6-v2", load="chunks", augmented=("speed",))
    picked = np.array([len(plain) + 3, 1, len(data) - 1])  # read on demand from both datasets
    assert torch.equal(chunks.mel[picked], data.mel[picked]) and torch.equal(chunks.utt, data.utt)
    # validation: whole original utterances, never a copy; no copy of a held-out utterance is trained on
    train_set, val_set = split(data, 0.34, 0, 256)
    held = set(val_set.utt.numpy().tolist())
    assert held and held <= set(range(u)) and not held & set(train_set.originals().tolist())
    assert len(train_set) + len(val_set) < len(data)  # the held-out utterances' copies are nobody's


def test_copies_follow_their_speakers_out_and_a_missing_kind_is_named(copies_store):
    speaker = str(load_segments(copies_store, ["ravdess"], "all-MiniLM-L6-v2")[0].speaker[0])  # "ravdess:01"
    data, _ = load_segments(copies_store, ["ravdess"], "all-MiniLM-L6-v2", [speaker], augmented=("speed",))
    assert speaker not in data.speakers() and len(data.originals()) == len(data)
    assert all(str(s) != speaker for s in data.speaker[data.utt.numpy()])
    with pytest.raises(EmodiffError, match=r"no /augmented/ravdess/noise; run `emodiff augment noise --corpus rav"):
        load_segments(copies_store, ["ravdess"], "all-MiniLM-L6-v2", augmented=("noise",))


def test_a_generator_trains_on_speed_copies_and_records_it(copies_store, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(copies_store, store)
    recipe = tiny_recipe(3, crop_frames=64, augmented=("speed",))
    result = train(TrainJob(store=store, recipe=recipe, corpora=("ravdess",), out=tmp_path / "run", device="cpu"))
    state = load_checkpoint(result.checkpoint)
    assert state["recipe"]["train"]["augmented"] == ["speed"]
    assert "augmented/ravdess/speed" in state["store_fingerprint"]
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["augmented"] == ["speed"]
    assert "augmented" not in dataclasses.replace(recipe, train=TrainConfig()).to_dict()["train"]  # old hashes kept
    with pytest.raises(ValueError, match=r"train.augmented: expected a list of distinct offline copies"):
        TrainConfig(augmented=("speed", "speed"))
