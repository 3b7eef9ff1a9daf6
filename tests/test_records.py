"""``emodiff.records``: each record read back from a store the real steps wrote, listers, ``existing``,
the growable segment writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from toy import FRAMES, SPEAKERS, tiny_recipe

from emodiff import records as rec
from emodiff import store as st
from emodiff.augment import AugmentJob, augment
from emodiff.checkpoint import sha256_file
from emodiff.classify import ClassifyJob, classify
from emodiff.data import ravdess_sample
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareJob, prepare
from emodiff.quality import QualityJob, assess
from emodiff.sample import SampleJob, sample
from emodiff.ser.classifier import ClassifierConfig
from emodiff.train import TrainJob, train

QUICK = ClassifierConfig(channels=8, lstm_hidden=8, epochs=1, batch_size=32, seed=0)
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def pipeline(toy_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy store after train, sample, classify and quality: one group of every kind but augmented."""
    root = tmp_path_factory.mktemp("records")
    store = root / "s.h5"
    shutil.copy(toy_store, store)
    train(TrainJob(store=store, recipe=tiny_recipe(3), corpora=("toy",), out=root / "runs" / "tiny", device="cpu"))
    sample(SampleJob(store=store, n=8, options={"steps": 3}, device="cpu"))
    classify(ClassifyJob(store=store, corpus="toy", classifier=QUICK, device="cpu"))
    assess(QualityJob(store, classifier=QUICK, device="cpu"))
    return store


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four RAVDESS utterances prepared from audio, with a speed-perturbed copy of each."""
    store = tmp_path_factory.mktemp("ravdess") / "s.h5"
    prepare(PrepareJob(store, "ravdess", ravdess_sample(), limit=4, workers=1))
    augment(AugmentJob(store, "ravdess", "speed", factors=(0.9,), workers=1))
    return store


def test_corpus_from_the_toy_store(toy_store: Path) -> None:
    with st.open_store(toy_store) as f:
        c = rec.Corpus.read(f, "toy")
        g = f["corpora/toy"]
        table = st.read_table(g["utterances"])
        assert c.name == "toy" and c.corpus == "toy" and c.meta.path == "/corpora/toy"
        assert c.meta.config_hash == g.attrs["config_hash"] and c.meta.config == {"toy": 6}
        assert set(c.utterances) == set(table)
        for key, column in table.items():
            np.testing.assert_array_equal(c.utterances[key], column)
        np.testing.assert_array_equal(c.seg_utt, g["segments/utt"][()])
        np.testing.assert_array_equal(c.seg_frames, g["segments/frames"][()])
        np.testing.assert_array_equal(c.load_mel(f), g["segments/mel"][()])
        np.testing.assert_array_equal(c.seg_emotion, table["emotion"][g["segments/utt"][()]])
        assert c.mel_shape == (24, 80, FRAMES) and c.mel_dtype == "float16" and c.skipped == ()
        assert c.sample_rate is None and c.excluded == {}  # a hand-made group without prepare's attrs
        assert c.qualified_speakers().tolist()[:3] == [f"toy:{s}" for s in SPEAKERS]


def test_corpus_and_augmented_from_prepare_and_augment(ravdess: Path) -> None:
    with st.open_store(ravdess) as f:
        c = rec.Corpus.read(f, "ravdess")
        a = st.attrs_dict(f["corpora/ravdess"])
        assert (c.sample_rate, c.n_fft, c.hop, c.win, c.n_mels, c.segment_frames) == (22050, 1024, 256, 1024, 80, 256)
        assert c.log_min == pytest.approx(np.log(1e-5)) and c.log_max == 3.25 and (c.fmin, c.fmax) == (0.0, 8000.0)
        assert c.root == a["root"] and c.dtype == "float16" and c.calm == "drop"
        assert c.n_skipped == a["n_skipped"] == len(c.skipped)
        assert c.excluded == json.loads(a["excluded"]) and len(c.utterances["id"]) == 4
        assert c.mel_shape[0] == len(c.seg_utt) == len(c.seg_frames)
        aug = rec.Augmented.read(f, "ravdess", "speed")
        g = f["augmented/ravdess/speed"]
        assert rec.Augmented.names(f, "ravdess") == ["speed"] and rec.Augmented.exists(f, "ravdess", "speed")
        assert aug.params == pytest.approx((0.9,)) and aug.param_unit == "speed factor" and aug.seed == 0
        np.testing.assert_array_equal(aug.seg_utt, g["segments/utt"][()])
        np.testing.assert_array_equal(aug.seg_frames, g["segments/frames"][()])
        np.testing.assert_array_equal(aug.seg_param, g["segments/param"][()])
        np.testing.assert_array_equal(aug.load_mel(f), g["segments/mel"][()])
        assert sorted(set(aug.seg_utt.tolist())) == [0, 1, 2, 3]


def test_embeddings_from_embed(toy_store: Path) -> None:
    with st.open_store(toy_store) as f:
        e = rec.Embeddings.read(f, MODEL, "toy")
        g = f[f"embeddings/{MODEL}/toy"]
        assert rec.Embeddings.models(f) == [MODEL] and rec.Embeddings.names(f, MODEL) == ["toy"]
        assert (e.rows, e.width, e.dim) == (24, g["tokens"].shape[1], 384) and e.pooling == "mean"
        assert e.corpus_created == f["corpora/toy"].attrs["created"] and e.template == g.attrs["template"]
        np.testing.assert_array_equal(e.load_tokens(f), g["tokens"][()])
        np.testing.assert_array_equal(e.load_lengths(f), g["lengths"][()])
        np.testing.assert_array_equal(e.load_pooled(f), g["pooled"][()])
        with pytest.raises(EmodiffError, match=f"/embeddings/{MODEL}/nope is missing; run `emodiff embed"):
            rec.Embeddings.read(f, MODEL, "nope")


def test_run_and_synthetic_from_train_and_sample(pipeline: Path) -> None:
    with st.open_store(pipeline) as f:
        [name] = rec.Run.names(f)
        run = rec.Run.read(f, name)
        a = st.attrs_dict(f[f"runs/{name}"])
        assert run.checkpoint == a["checkpoint"] and run.sha256 == sha256_file(Path(run.checkpoint))
        assert run.folder == a["path"] and run.step == 3 and run.corpora == ("toy",)
        assert run.training_speakers == tuple(f"toy:{s}" for s in SPEAKERS) and run.exclude_speakers == ()
        assert run.embed_model == MODEL and set(run.final) >= {"loss"}
        assert rec.Run.latest(f) == run and rec.Run.of_checkpoint(f, Path(run.checkpoint)) == run
        assert rec.Run.of_checkpoint(f, Path("elsewhere.pt")) is None

        [set_name] = rec.Synthetic.names(f)
        s = rec.Synthetic.read(f, set_name)
        g = f[f"synthetic/{set_name}"]
        s.check(pipeline, speakers=True)
        p = s.provenance
        assert (p.run, p.checkpoint, p.checkpoint_sha256) == (name, run.checkpoint, run.sha256)
        assert p.drawing["steps"] == 3 and p.training_speakers == run.training_speakers and p.recipe is not None
        assert p.generator == "diffusion" and p.drawn_with == "eps ddpm, 3 steps"
        assert p.to_attrs() == {k: g.attrs[k] for k in p.to_attrs()}
        np.testing.assert_array_equal(s.emotion, g["emotion"][()])
        assert s.per_emotion == [2, 2, 2, 2] and s.mel_shape == (8, 80, FRAMES) and s.has_frames
        mel, frames = s.load_mel(f)
        np.testing.assert_array_equal(mel, g["mel"][()])
        np.testing.assert_array_equal(frames, g["frames"][()])


def test_results_and_quality_from_classify_and_quality(pipeline: Path) -> None:
    with st.open_store(pipeline) as f:
        [name] = rec.Results.names(f)
        r = rec.Results.read(f, name)
        g = f[f"results/{name}"]
        assert (r.corpus, r.train_corpus, r.protocol, r.train_on) == ("toy", "toy", "loso", "real")
        assert r.summary("uar")[0] == pytest.approx(g.attrs["uar_mean"]) and r.repeats == 1 and not r.leaky
        assert [x.name for x in r.folds] == [f"test={s}" for s in SPEAKERS]
        for fold in r.folds:
            assert fold.uar == pytest.approx(g[fold.name].attrs["uar"])
            np.testing.assert_array_equal(fold.confusion, g[fold.name]["confusion"][()])

        [set_name] = rec.Quality.names(f)
        q = rec.Quality.read(f, set_name)
        g = f[f"quality/{set_name}"]
        assert q.synthetic == set_name and q.corpus == "toy" and q.classifier == g.attrs["classifier"]
        assert q.table["emotion"].tolist() == ["neutral", "happy", "sad", "angry"]
        assert q.number("mad_mean") == pytest.approx(g.attrs["mad_mean"], nan_ok=True)


def test_listers_skip_writes_in_flight_and_foreign_datasets(store: Path) -> None:
    with h5py.File(store, "a") as f:
        f.create_group("corpora/.tmp-half-123")
        f["corpora/notes"] = np.arange(3)  # another tool's dataset where a corpus would be
        f.create_group("synthetic/ok")
        f["synthetic/junk"] = np.arange(3)
        f.create_dataset("quality", data=np.arange(2))  # a whole section that is not a group
    with h5py.File(store, "r") as f:  # h5py directly: open_store refuses the dataset at /quality
        assert rec.Corpus.names(f) == ["toy"]
        assert not rec.Corpus.exists(f, "notes") and not rec.Corpus.exists(f, ".tmp-half-123")
        assert rec.Synthetic.names(f) == ["ok"] and not rec.Synthetic.exists(f, "junk")
        assert rec.Quality.names(f) == [] and not rec.Quality.exists(f, "x")
        assert rec.Run.names(f) == [] and rec.Results.names(f) == [] and rec.Augmented.names(f, "toy") == []
        assert rec.group_at(f, "corpora/notes") is None and rec.group_at(f, "corpora/toy/utterances") is not None
        with pytest.raises(EmodiffError, match="corpus notes is not prepared; run `emodiff prepare notes ROOT`"):
            rec.Corpus.read(f, "notes")
        with pytest.raises(EmodiffError, match="no synthetic set 'junk'; sets: ok"):
            rec.Synthetic.read(f, "junk")


def test_existing_is_absent_same_or_different(store: Path, tmp_path: Path) -> None:
    assert rec.existing(tmp_path / "none.h5", "corpora/toy", {"toy": 6}) == rec.Absent("corpora/toy")
    assert isinstance(rec.existing(store, "/corpora/ravdess", {}), rec.Absent)
    same = rec.existing(store, "corpora/toy", {"toy": 6})
    assert isinstance(same, rec.Same) and same.attrs["config_hash"] == st.config_hash({"toy": 6})[1]
    other = rec.existing(store, "corpora/toy", {"toy": 7})
    assert isinstance(other, rec.Different)
    assert str(other.error(store)) == (
        f"{store}: /corpora/toy exists with other settings; pass --overwrite to replace it")
    assert str(other.error(store, fix="choose another --name")).endswith("other settings; choose another --name")
    with h5py.File(store, "a") as f:
        f.create_group("synthetic/.tmp-x-1").attrs["config_hash"] = st.config_hash({})[1]
    assert isinstance(rec.existing(store, "synthetic/.tmp-x-1", {}), rec.Absent)  # a write in flight is not there
    assert str(rec.taken(store, "results/r", instead="--name")) == (
        f"{store}: already holds /results/r; pass --overwrite to replace it or --name")


def test_run_and_synthetic_writers_round_trip(store: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt-0000003.pt"
    ckpt.write_bytes(b"weights")
    rec.Run.write(store, "r", config={"run": "r"}, folder=tmp_path, checkpoint=ckpt, sha256=sha256_file(ckpt), step=3,
                  corpora=["toy"], exclude_speakers=["toy:s3"], embed_model=MODEL,
                  training_speakers=["toy:s1", "toy:s2"], final={"loss": 0.5})
    provenance = rec.SyntheticAttrs(checkpoint=str(ckpt), checkpoint_sha256=sha256_file(ckpt), run="r",
                                    seed=1, drawn_with="eps ddim, 4 steps, eta 0",
                                    drawing={"sampler": "ddim", "steps": 4, "eta": 0.0, "parameterization": "eps"},
                                    training_speakers=("toy:s1", "toy:s2"), embed_model=MODEL, template="{text}",
                                    recipe={"name": "tiny"})
    rng = np.random.default_rng(0)
    mel = rng.uniform(-1, 1, (5, 80, 8)).astype(np.float16)
    with rec.write_synthetic(store, "set", config={"n": 5}, n=5, mel=(80, 8), cond_dim=3) as w:
        assert w.done == 0
        w.write(0, mel[:3], np.array([8, 8, 5]), np.ones((3, 3)))
        w.write(3, mel[3:], np.array([1, 8]), np.zeros((2, 3)))
        w.finish(emotion=np.array([0, 1, 2, 3, 0]), speaker=["toy:s1"] * 5, text=["t"] * 5,
                 source_utterance=["toy:u000"] * 5, provenance=provenance)
    with st.open_store(store) as f:
        run = rec.Run.read(f, "r")
        assert (run.folder, run.checkpoint, run.step, run.final) == (str(tmp_path), str(ckpt), 3, {"loss": 0.5})
        assert run.exclude_speakers == ("toy:s3",) and run.training_speakers == ("toy:s1", "toy:s2")
        s = rec.Synthetic.read(f, "set")
        assert s.provenance == provenance and "rows_done" not in s.attrs
        got, frames = s.load_mel(f)
        np.testing.assert_array_equal(got, mel)
        assert frames.tolist() == [8, 8, 5, 1, 8] and s.emotion.tolist() == [0, 1, 2, 3, 0]
        assert st.read_table(f["synthetic/set"])["source_utterance"].tolist() == ["toy:u000"] * 5


def test_quality_writer_round_trip(store: Path) -> None:
    table = {"emotion": list(("neutral", "happy")), "mad": np.array([0.1, np.nan]), "note": ["", "too few"]}
    rec.Quality.write(store, "s", table=table, attrs={"corpus": "toy", "mad_mean": 0.1}, config={"s": 1})
    with st.open_store(store) as f:
        q = rec.Quality.read(f, "s")
    assert q.corpus == "toy" and q.number("mad_mean") == 0.1 and q.meta.config == {"s": 1}
    assert q.table["note"].tolist() == ["", "too few"] and np.isnan(q.table["mad"][1])
    assert q.arrays == {}  # as in stores written before the per-bin vectors
    ratio = np.arange(3 * 80, dtype=np.float64).reshape(3, 80)
    rec.Quality.write(store, "v", table=table, attrs={}, config={}, arrays={"frame_change_ratio": ratio})
    with st.open_store(store) as f:
        np.testing.assert_array_equal(rec.Quality.read(f, "v").arrays["frame_change_ratio"], ratio)


@pytest.mark.parametrize("compressed", [False, True])
def test_segment_writer_matches_a_direct_computation(tmp_path: Path, compressed: bool) -> None:
    """Utterances of 1, 3 and 0 segments (one past the growth step) against np.concatenate."""
    rng = np.random.default_rng(1)
    sizes = [1, rec.GROW + 2, 0, 3]
    mels = [rng.uniform(-1, 1, (n, 4, 6)).astype(np.float16) for n in sizes]
    frames = [rng.integers(1, 7, n).astype(np.int32) for n in sizes]
    with h5py.File(tmp_path / "w.h5", "w") as f:
        w = rec.SegmentWriter(f.create_group("g"), (4, 6), "float16", extra={"param": np.float32})
        for row, (m, n) in enumerate(zip(mels, frames, strict=True)):
            if compressed:
                w.append_chunks(row, [rec.compress_segment(s) for s in m], n, param=row / 2)
            else:
                w.append(row, m.astype(np.float32), n, param=row / 2)
        assert w.close() == sum(sizes)
    with h5py.File(tmp_path / "w.h5", "r") as f:
        s = f["g/segments"]
        np.testing.assert_array_equal(s["mel"][()], np.concatenate(mels))
        np.testing.assert_array_equal(s["frames"][()], np.concatenate(frames))
        np.testing.assert_array_equal(s["utt"][()], np.repeat(np.arange(4), sizes))
        np.testing.assert_array_equal(s["param"][()], np.repeat(np.arange(4) / 2, sizes).astype(np.float32))
        mel = s["mel"]
        assert (mel.chunks, mel.maxshape, mel.compression, mel.shuffle) == ((1, 4, 6), (None, 4, 6), "gzip", True)
        assert s["utt"].dtype == np.int32 and s["frames"].dtype == np.int32 and mel.dtype == np.float16
