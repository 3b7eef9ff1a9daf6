"""``prepare`` end to end: real RAVDESS, the miniature layouts, bad input, kills and reruns."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
from miniature import expected_problems, make_crema_d, make_iemocap, make_msp_improv, make_ravdess, write_tone

from emodiff import store as st
from emodiff.audio import LOG_MAX, LOG_MIN
from emodiff.data import ravdess_sample
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.prepare import PrepareJob, prepare

SHARED_RAVDESS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ravdess"


def _utterances(path: Path, corpus: str) -> dict[str, np.ndarray]:
    with st.open_store(path) as f:
        return st.read_table(f[f"corpora/{corpus}/utterances"])


def _check_segments(group: h5py.Group, n_utt: int) -> None:
    """Segments are (N, 80, 256) in [-1, 1], contiguous per utterance, padded with -1."""
    mel = group["segments/mel"]
    utt = group["segments/utt"][()]
    frames = group["segments/frames"][()]
    assert mel.ndim == 3 and mel.shape[1:] == (80, 256) and mel.shape[0] == len(utt) == len(frames)
    assert mel.chunks == (1, 80, 256) and mel.compression == "gzip" and mel.shuffle
    assert np.all(np.diff(utt) >= 0) and set(utt.tolist()) == set(range(n_utt))
    assert frames.min() >= 1 and frames.max() <= 256
    data = mel[()].astype(np.float32)
    assert data.min() >= -1.0 and data.max() <= 1.0
    for i in np.flatnonzero(frames < 256)[:20]:
        assert (data[i, :, frames[i]:] == -1.0).all()
    # all but the last segment of an utterance are full
    last = np.r_[utt[1:] != utt[:-1], True]
    assert (frames[~last] == 256).all()


@pytest.mark.skipif(not SHARED_RAVDESS.is_dir(), reason="../shared/corpora/ravdess not present")
def test_real_ravdess_subset(tmp_path):
    path = tmp_path / "s.h5"
    result = prepare(PrepareJob(path, "ravdess", SHARED_RAVDESS, workers=2))
    stats = result.stats
    assert stats.utterances == 672 and stats.speakers == 24
    assert {k: v[0] for k, v in stats.per_emotion.items()} == {"neutral": 96, "happy": 192, "sad": 192, "angry": 192}
    assert stats.skipped == [] and stats.hours == pytest.approx(0.69, abs=0.01)
    with st.open_store(path) as f:
        g = f["corpora/ravdess"]
        _check_segments(g, 672)
        assert g["segments/mel"].dtype == np.float16
        assert g.attrs["log_min"] == pytest.approx(LOG_MIN) and g.attrs["log_max"] == LOG_MAX
        assert g.attrs["sample_rate"] == 22050 and g.attrs["n_mels"] == 80 and g.attrs["segment_frames"] == 256
        utt = st.read_table(g["utterances"])
    assert set(utt["source_rate"].tolist()) == {22050}
    assert sorted(set(utt["text"].tolist())) == ["Dogs are sitting by the door", "Kids are talking by the door"]
    # frames in an utterance = its samples // 256
    info = sf.info(utt["path"][0])
    with st.open_store(path) as f:
        rows = f["corpora/ravdess/segments/utt"][()] == 0
        assert f["corpora/ravdess/segments/frames"][()][rows].sum() == info.frames // 256


def test_stored_mel_matches_a_direct_computation(tmp_path):
    """What the threads stream into the store is exactly the mel of each file, in order."""
    import torch

    from emodiff.audio import MelExtractor, load_audio, segment

    path = tmp_path / "s.h5"
    prepare(PrepareJob(path, "ravdess", ravdess_sample(), workers=2, limit=12, dtype="float32"))
    utt = _utterances(path, "ravdess")
    extractor = MelExtractor()
    with st.open_store(path) as f:
        g = f["corpora/ravdess/segments"]
        for row in (0, 5, 11):
            wave, _ = load_audio(Path(utt["path"][row]))
            expected, frames = segment(extractor(torch.from_numpy(wave)).numpy())
            rows = g["utt"][()] == row
            np.testing.assert_array_equal(g["mel"][()][rows], expected)
            np.testing.assert_array_equal(g["frames"][()][rows], frames)


@pytest.mark.parametrize(
    "corpus,make",
    [("iemocap", make_iemocap), ("msp-improv", make_msp_improv), ("crema-d", make_crema_d), ("ravdess", make_ravdess)],
)
def test_miniature_layouts_end_to_end(tmp_path, corpus, make):
    root = tmp_path / corpus
    expected = make(root)
    path = tmp_path / "s.h5"
    result = prepare(PrepareJob(path, corpus, root, workers=2))
    utt = _utterances(path, corpus)
    assert utt["id"].tolist() == [u.id for u in expected]
    assert utt["speaker"].tolist() == [u.speaker for u in expected]
    assert utt["gender"].tolist() == [u.gender for u in expected]
    assert utt["session"].tolist() == [u.session for u in expected]
    assert utt["emotion"].tolist() == [u.emotion for u in expected]
    assert utt["text"].tolist() == [u.text for u in expected]
    assert utt["path"].tolist() == [str(u.path) for u in expected]
    for u, stored in zip(expected, utt["duration_s"], strict=True):
        seconds = sf.info(str(u.path)).duration
        assert stored == pytest.approx(seconds, abs=2e-3)
    assert [(p, r) for p, r in result.stats.skipped] == [(p.path, p.reason) for p in expected_problems(corpus, root)]
    with st.open_store(path) as f:
        _check_segments(f[f"corpora/{corpus}"], len(expected))
        assert f[f"corpora/{corpus}"].attrs["n_skipped"] == len(result.stats.skipped)


def _bad_corpus(root: Path) -> None:
    """A RAVDESS-layout folder with every kind of bad file beside three good ones."""
    actor = root / "Actor_01"
    write_tone(actor / "03-01-01-01-01-01-01.wav", 0.5, 8000)
    write_tone(actor / "03-01-03-01-01-01-01.wav", 0.5, 44100, channels=2)
    write_tone(actor / "03-01-04-01-01-01-01.flac", 0.5, 48000)
    (actor / "03-01-05-01-01-01-01.flac").write_bytes(os.urandom(3000))
    (actor / "03-01-05-01-01-02-01.wav").write_bytes(b"")
    sf.write(actor / "03-01-05-01-02-01-01.wav", np.zeros(16000), 16000, subtype="PCM_16")
    sf.write(actor / "03-01-05-01-02-02-01.wav", np.array([0.1, np.nan] * 8000), 16000, subtype="FLOAT")
    write_tone(actor / "03-01-05-02-01-01-01.wav", 0.02, 16000)
    write_tone(actor / "03-01-09-01-01-01-01.wav", 0.5, 16000)  # emotion 09 does not exist
    write_tone(root / "copy" / "Actor_01" / "03-01-01-01-01-01-01.wav", 0.5, 16000)


BAD_REASONS = {
    "Actor_01/03-01-05-01-01-01-01.flac": "cannot decode audio",
    "Actor_01/03-01-05-01-01-02-01.wav": "cannot decode audio",
    "Actor_01/03-01-05-01-02-01-01.wav": "all-silent audio",
    "Actor_01/03-01-05-01-02-02-01.wav": "NaN or infinite",
    "Actor_01/03-01-05-02-01-01-01.wav": "shorter than one STFT window",
    "Actor_01/03-01-09-01-01-01-01.wav": "unknown label",
    "copy/Actor_01/03-01-01-01-01-01-01.wav": "duplicate utterance id",
}


def test_bad_files_are_skipped_with_reasons(tmp_path):
    root = tmp_path / "bad"
    _bad_corpus(root)
    path = tmp_path / "s.h5"
    result = prepare(PrepareJob(path, "ravdess", root, workers=2))
    utt = _utterances(path, "ravdess")
    assert utt["id"].tolist() == ["03-01-01-01-01-01-01", "03-01-03-01-01-01-01", "03-01-04-01-01-01-01"]
    assert utt["source_rate"].tolist() == [8000, 44100, 48000]
    assert utt["duration_s"] == pytest.approx([0.5, 0.5, 0.5], abs=1e-3)
    skipped = {str(Path(p).relative_to(root.resolve())): r for p, r in result.stats.skipped}
    assert set(skipped) == set(BAD_REASONS)
    for name, reason in BAD_REASONS.items():
        assert reason in skipped[name], (name, skipped[name])
    with st.open_store(path) as f:
        table = st.read_table(f["corpora/ravdess/skipped"])
        assert len(table["path"]) == len(BAD_REASONS) == f["corpora/ravdess"].attrs["n_skipped"]


def test_strict_makes_bad_files_fatal_and_changes_nothing(tmp_path):
    path = tmp_path / "s.h5"
    prepare(PrepareJob(path, "ravdess", ravdess_sample(), limit=4))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    root = tmp_path / "bad"
    _bad_corpus(root)
    with pytest.raises(EmodiffError, match=r"--strict"):
        prepare(PrepareJob(path, "ravdess", root, strict=True, overwrite=True))
    # problems found by the recipe and problems found while decoding are both fatal
    for name in ("copy", "Actor_01/03-01-09-01-01-01-01.wav"):
        target = root / name
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        else:
            target.unlink()
    with pytest.raises(EmodiffError, match=r"03-01-05-01-01-01-01\.flac: cannot decode audio.*--strict"):
        prepare(PrepareJob(path, "ravdess", root, strict=True, overwrite=True))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not list(tmp_path.glob("*.partial"))


def test_nothing_readable_is_an_error_and_writes_nothing(tmp_path):
    root = tmp_path / "r"
    (root / "Actor_01").mkdir(parents=True)
    (root / "Actor_01" / "03-01-05-01-01-01-01.wav").write_bytes(b"")
    path = tmp_path / "s.h5"
    with pytest.raises(EmodiffError, match=r"none of the 1 ravdess files could be read"):
        prepare(PrepareJob(path, "ravdess", root))
    assert not path.exists() or "corpora" not in h5py.File(path, "r")


def test_second_run_is_already_there_and_overwrite_replaces(tmp_path):
    path = tmp_path / "s.h5"
    first = prepare(PrepareJob(path, "ravdess", ravdess_sample(), limit=8))
    again = prepare(PrepareJob(path, "ravdess", ravdess_sample(), limit=20))
    assert again.already_there and again.stats.utterances == 8
    assert again.stats.attrs["config_hash"] == first.stats.attrs["config_hash"]
    replaced = prepare(PrepareJob(path, "ravdess", ravdess_sample(), limit=20, overwrite=True))
    assert not replaced.already_there and replaced.stats.utterances == 20
    assert replaced.stats.attrs["config_hash"] != first.stats.attrs["config_hash"]
    with st.open_store(path) as f:
        assert st.visible(f["corpora"]) == ["ravdess"] and list(f["corpora"].keys()) == ["ravdess"]


def test_limit_spreads_over_speakers_and_emotions(tmp_path):
    path = tmp_path / "s.h5"
    stats = prepare(PrepareJob(path, "ravdess", ravdess_sample(), limit=24)).stats
    assert stats.utterances == 24 and stats.speakers == 6
    assert all(n > 0 for n, _ in stats.per_emotion.values())


def test_bad_settings_are_rejected():
    with pytest.raises(EmodiffError, match="dtype"):
        PrepareJob(Path("s.h5"), "ravdess", Path("."), dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(EmodiffError, match="--workers"):
        PrepareJob(Path("s.h5"), "ravdess", Path("."), workers=0)
    with pytest.raises(EmodiffError, match="--calm applies to RAVDESS only"):
        PrepareJob(Path("s.h5"), "iemocap", Path("."), calm="neutral").reader_options()


def test_calm_merged_into_neutral(tmp_path):
    root = tmp_path / "r"
    expected = make_ravdess(root, calm="neutral")
    path = tmp_path / "s.h5"
    prepare(PrepareJob(path, "ravdess", root, calm="neutral"))
    utt = _utterances(path, "ravdess")
    assert utt["id"].tolist() == [u.id for u in expected]
    with st.open_store(path) as f:
        assert f["corpora/ravdess"].attrs["calm"] == "neutral"


def _store_with_one_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "s.h5"
    make_crema_d(tmp_path / "crema")
    prepare(PrepareJob(path, "crema-d", tmp_path / "crema"))
    return path


def test_prepare_killed_mid_run_leaves_no_half_group(tmp_path):
    path = _store_with_one_corpus(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    cmd = [sys.executable, "-m", "emodiff", "prepare", "ravdess", str(ravdess_sample()), "--store", str(path),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = path.with_name(path.name + ".corpora.ravdess.partial")
    deadline = time.monotonic() + 60
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "prepare finished before it could be killed"
    time.sleep(0.2)  # well inside the 168 files' processing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with st.open_store(path) as f:
        assert list(f["corpora"].keys()) == ["crema-d"]
    rerun = prepare(PrepareJob(path, "ravdess", ravdess_sample()))
    assert rerun.stats.utterances == 168 and not rerun.already_there
    assert not partial.exists()
    with st.open_store(path) as f:
        assert list(f["corpora"].keys()) == ["crema-d", "ravdess"]
        assert len(f["corpora/crema-d/utterances/id"]) > 0


def test_store_held_by_another_writer(tmp_path):
    path = tmp_path / "s.h5"
    with st.write_group(path, "corpora/x", config={}, what="prepare x"):
        with pytest.raises(EmodiffError, match="held by another writer"):
            prepare(PrepareJob(path, "ravdess", ravdess_sample(), limit=2))


def test_per_emotion_counts_are_in_emotion_order(tmp_path):
    stats = prepare(PrepareJob(tmp_path / "s.h5", "ravdess", ravdess_sample())).stats
    assert list(stats.per_emotion) == list(EMOTIONS)
    assert stats.utterances == 168 and stats.speakers == 6
    assert {k: v[0] for k, v in stats.per_emotion.items()} == {"neutral": 24, "happy": 48, "sad": 48, "angry": 48}
