"""``train`` and ``sample`` on a toy store: checkpoints, exact resume, DDP, provenance, errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from toy import tiny_recipe

from emodiff import store as st
from emodiff.checkpoint import MANIFEST, latest_checkpoint, load_checkpoint
from emodiff.errors import EmodiffError
from emodiff.progress import Quiet
from emodiff.sample import SampleJob, sample
from emodiff.train import TrainJob, train
from emodiff.write_lock import WriteLock


def _job(store: Path, out: Path, steps: int = 6, resume: bool = False, **kw) -> TrainJob:
    return TrainJob(store=store, recipe=tiny_recipe(steps), corpora=("toy",), out=out, resume=resume,
                    device="cpu", **kw)


def test_train_writes_checkpoints_metrics_and_run(store, tmp_path):
    out = tmp_path / "runs" / "tiny"
    result = train(_job(store, out))
    assert result.step == 6 and result.checkpoint == out / "ckpt-0000006.pt"
    assert sorted(p.name for p in out.glob("*.pt")) == ["ckpt-0000003.pt", "ckpt-0000006.pt"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest) == {"ckpt-0000003.pt", "ckpt-0000006.pt"}
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6]
    assert all(np.isfinite(r["loss"]) and "val_loss" in r and "steps_per_s" in r for r in lines)
    state = load_checkpoint(out / "ckpt-0000006.pt")
    assert state["step"] == 6 and state["corpora"] == ["toy"]
    assert state["training_speakers"] == ["toy:s1", "toy:s2", "toy:s3"]
    assert yaml.safe_load((out / "recipe.yaml").read_text())["denoiser"]["channels"] == 16
    with st.open_store(store) as f:
        run = f["runs/tiny"]
        assert run.attrs["checkpoint"] == str((out / "ckpt-0000006.pt").resolve())
        assert json.loads(run.attrs["training_speakers"]) == ["toy:s1", "toy:s2", "toy:s3"]


def test_resume_ends_with_the_same_weights(store, tmp_path):
    whole = train(_job(store, tmp_path / "whole"))
    train(_job(store, tmp_path / "split", steps=3))
    resumed = train(_job(store, tmp_path / "split", steps=6, resume=True))
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    assert torch.equal(a["generators"][0], b["generators"][0])
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [3, 6]


def test_a_resumed_run_logs_each_step_once(store, tmp_path):
    """A run killed after logging past its last checkpoint replays those steps: their old records go,
    and so does a line the kill cut off."""
    out = tmp_path / "killed"
    train(_job(store, out, steps=3))
    log = out / "metrics.jsonl"
    with open(log, "a") as f:
        f.write('{"step": 4, "loss": 0.5}\n{"step": 5, "loss": 0.4}\n{"step": 6, "lo')
    train(_job(store, out, steps=6, resume=True))
    assert [json.loads(ln)["step"] for ln in log.read_text().splitlines()] == [3, 6]
    # killed before its first checkpoint: started afresh, its log starts afresh too
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 8.0}\n')
    train(_job(store, fresh, steps=3))
    assert [json.loads(ln)["step"] for ln in (fresh / "metrics.jsonl").read_text().splitlines()] == [3]


def test_cosine_schedule_warms_up_then_decays_to_zero(store, tmp_path):
    """The logged lr and the optimizer's follow lr min(1, (t+1)/W) (1 + cos(pi (t-W)/(T-W))) / 2."""
    recipe = tiny_recipe(8, warmup_steps=2, schedule="cosine", log_every=1, val_every=8, checkpoint_every=4)
    out = tmp_path / "cosine"
    train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=out, device="cpu"))
    logged = [json.loads(ln)["lr"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [1e-3 * min(1.0, (t + 1) / 2) * 0.5 * (1 + np.cos(np.pi * max(0, t - 2) / 6)) for t in range(8)]
    assert logged == pytest.approx(expected, rel=1e-3)  # the log keeps 3-4 significant digits
    assert expected[1] == pytest.approx(1e-3) and expected[-1] < 1e-4
    for name, t in (("ckpt-0000004.pt", 3), ("ckpt-0000008.pt", 7)):
        groups = load_checkpoint(out / name)["optimizer"]["param_groups"]
        assert groups[0]["lr"] == pytest.approx(expected[t], abs=1e-12)


def test_resume_refuses_another_model_and_a_busy_out(store, tmp_path):
    out = tmp_path / "r"
    train(_job(store, out, steps=3))
    with pytest.raises(EmodiffError, match="pass --resume"):
        train(_job(store, out, steps=6))
    other = tiny_recipe(6).with_sections(denoiser=dataclasses.replace(tiny_recipe().denoiser, channels=32))
    with pytest.raises(EmodiffError, match="other generator/diffusion/denoiser settings"):
        train(TrainJob(store=store, recipe=other, corpora=("toy",), out=out, resume=True, device="cpu"))
    with pytest.raises(EmodiffError, match="no checkpoint to resume"):
        train(_job(store, tmp_path / "empty", resume=True))


def test_exclude_speakers(store, tmp_path):
    result = train(_job(store, tmp_path / "x", steps=3, exclude_speakers=("s1", "toy:s3")))
    assert result.training_speakers == ["toy:s2"]


def test_a_crop_longer_than_a_segment_is_refused_before_any_window_is_cut(store, tmp_path):
    recipe = tiny_recipe(3)
    recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, crop_frames=10_000_000))
    with pytest.raises(EmodiffError, match="train.crop_frames 10000000: expected 0 or at most the store's segment "
                                           "length, 32 frames"):
        train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "x", device="cpu"))
    assert latest_checkpoint(tmp_path / "x") is None


def test_sample_refuses_a_set_the_disk_cannot_hold_before_any_work(store, tmp_path, monkeypatch):
    import collections

    import emodiff.sample

    train(_job(store, tmp_path / "r", steps=3))
    with pytest.raises(EmodiffError, match="--n 1000000000: the set needs about .* GB free; draw fewer"):
        sample(SampleJob(store=store, n=10**9, run=str(tmp_path / "r"), device="cpu"))
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(emodiff.sample.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(EmodiffError, match="--n 8: the set needs about"):
        sample(SampleJob(store=store, n=8, run=str(tmp_path / "r"), device="cpu"))
    assert not st.has_group(store, "synthetic/r") and not list(tmp_path.glob("*.partial"))


def test_checkpoint_errors(store, tmp_path):
    out = tmp_path / "c"
    train(_job(store, out, steps=3))
    ckpt = out / "ckpt-0000003.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(EmodiffError, match="sha256 differs"):
        load_checkpoint(ckpt)
    (out / MANIFEST).unlink()
    with pytest.raises(EmodiffError, match="not a loadable emodiff checkpoint"):
        load_checkpoint(ckpt)
    (out / "model-final.pt").write_bytes(b"x")
    with pytest.raises(EmodiffError, match="not a checkpoint name"):
        latest_checkpoint(out)


def test_checkpoint_of_another_configuration(store, tmp_path):
    out = tmp_path / "o"
    train(_job(store, out, steps=3))
    state = load_checkpoint(out / "ckpt-0000003.pt")
    from emodiff.checkpoint import load_weights
    from emodiff.diffusion.denoiser import Denoiser

    bigger = Denoiser(dataclasses.replace(tiny_recipe().denoiser, channels=32), learn_sigma=True)
    with pytest.raises(EmodiffError, match="another model configuration"):
        load_weights(bigger, state["model"], out / "ckpt-0000003.pt")


def test_sample_writes_provenance(store, tmp_path):
    train(_job(store, tmp_path / "runs" / "tiny"))
    result = sample(SampleJob(store=store, n=10, options={"steps": 5}, seed=3, device="cpu"))
    assert result.group == "/synthetic/tiny" and result.n == 10
    with st.open_store(store) as f:
        g = f["synthetic/tiny"]
        assert g["mel"].shape == (10, 80, 32) and np.isfinite(g["mel"][()]).all()
        assert np.abs(g["mel"][()]).max() <= 1.0
        assert g["cond"].shape == (10, 384)
        table = st.read_table(g)
        assert table["emotion"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
        assert set(table["speaker"].tolist()) <= {"toy:s1", "toy:s2", "toy:s3"}
        assert all("sounds" in t for t in table["text"])
        assert g.attrs["steps"] == 5 and g.attrs["sampler"] == "ddpm" and g.attrs["seed"] == 3
        assert len(g.attrs["checkpoint_sha256"]) == 64
        assert json.loads(g.attrs["training_speakers"]) == ["toy:s1", "toy:s2", "toy:s3"]


def test_interrupted_sampling_resumes_and_matches(store, tmp_path):
    train(_job(store, tmp_path / "runs" / "tiny"))
    whole = SampleJob(store=store, n=10, options={"steps": 4, "batch_size": 4}, name="whole", device="cpu")
    sample(whole)

    class StopAfterFirstBatch(Quiet):
        seen = 0

        def advance(self, k: int = 1) -> None:
            self.seen += k
            if self.seen >= 4:
                raise KeyboardInterrupt

    cut = dataclasses.replace(whole, name="cut")
    with pytest.raises(KeyboardInterrupt):
        sample(cut, StopAfterFirstBatch())
    assert not st.has_group(store, "synthetic/cut")
    again = sample(cut)
    assert again.resumed_from == 4
    with st.open_store(store) as f:
        np.testing.assert_array_equal(f["synthetic/cut/mel"][()], f["synthetic/whole/mel"][()])


def test_ddp_on_two_cpu_processes(store, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(4).to_dict()))
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "emodiff", "train", "--recipe", str(recipe), "--store", str(store), "--out", str(out),
           "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    state = load_checkpoint(out / "ckpt-0000004.pt")
    assert state["world_size"] == 2 and len(state["generators"]) == 2
    assert not torch.equal(state["generators"][0], state["generators"][1])  # each rank draws its own batches


def test_reading_chunks_from_the_store_trains_the_same_model(store, tmp_path):
    """train.load: chunks (for sets larger than memory) draws the very same batches as memory."""
    in_memory = train(_job(store, tmp_path / "memory", steps=3))
    recipe = tiny_recipe(3, load="chunks")
    chunked = train(TrainJob(store=store, recipe=recipe, corpora=("toy",), out=tmp_path / "chunks", device="cpu"))
    a, b = load_checkpoint(in_memory.checkpoint), load_checkpoint(chunked.checkpoint)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_cli_train_and_sample(store, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from emodiff.cli import app

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(2).to_dict()))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["train", "--recipe", str(recipe), "--store", str(store), "--device", "cpu"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "runs" / "tiny" / "ckpt-0000002.pt").is_file()
    done = runner.invoke(app, ["sample", "--n", "6", "--emotion", "angry", "--speaker", "s2", "--steps", "3",
                               "--store", str(store), "--device", "cpu"])
    assert done.exit_code == 0, done.output
    with st.open_store(store) as f:
        table = st.read_table(f["synthetic/tiny"])
    assert table["emotion"].tolist() == [3] * 6 and set(table["speaker"].tolist()) == {"toy:s2"}
    shown = runner.invoke(app, ["inspect", "--store", str(store)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "synthetic sets" in shown.stdout and "/runs/tiny" in shown.stdout
    bad = runner.invoke(app, ["sample", "--n", "2", "--speaker", "nobody", "--store", str(store), "--name", "x"])
    assert bad.exit_code == 1 and "not among the run's training speakers" in " ".join(bad.stderr.split())
    bad = runner.invoke(app, ["sample", "--n", "2", "--emotion", "bored", "--store", str(store), "--name", "x"])
    assert bad.exit_code == 1 and "expected one of neutral, happy, sad, angry" in " ".join(bad.stderr.split())
    bad = runner.invoke(app, ["train", "--recipe", str(tmp_path / "nope.yaml"), "--store", str(store)])
    assert bad.exit_code == 1 and "no such recipe file" in bad.stderr


def test_sampling_again_is_already_there_unless_settings_differ(store, tmp_path):
    train(_job(store, tmp_path / "runs" / "tiny", steps=3))
    job = SampleJob(store=store, n=4, options={"steps": 3}, device="cpu")
    assert not sample(job).already_there
    assert sample(job).already_there
    with pytest.raises(EmodiffError, match="exists with other settings; pass --overwrite to replace it"):
        sample(dataclasses.replace(job, seed=1))
    with pytest.raises(EmodiffError, match="exists with other settings; the study's advice$"):  # a study's words
        sample(dataclasses.replace(job, n=5, on_conflict="the study's advice"))
    assert not sample(dataclasses.replace(job, seed=1, overwrite=True)).already_there


def test_resuming_a_finished_run_returns_at_once(store, tmp_path):
    out = tmp_path / "done"
    first = train(_job(store, out, steps=3))
    again = train(_job(store, out, steps=3, resume=True))
    assert again.checkpoint == first.checkpoint and again.step == 3


def test_train_refuses_a_read_only_store_before_any_work(store, tmp_path, monkeypatch):
    """A store that cannot take /runs is found out before training, not after (root ignores chmod, so the
    permission check itself is what is made to fail)."""
    real_access = st.os.access
    monkeypatch.setattr(st.os, "access", lambda p, mode: False if Path(p) == store else real_access(p, mode))
    out = tmp_path / "runs" / "ro"
    with pytest.raises(EmodiffError, match="read-only"):
        train(_job(store, out))
    assert not out.exists()  # no step ran, no checkpoint was written


def test_a_finished_run_waits_for_another_writer(store, tmp_path, monkeypatch):
    """Another writer holding the lock when a run starts is no error; when it still holds it at the end,
    the run waits for it (up to LOCK_WAIT_S) and then records itself in /runs."""
    import threading

    from emodiff import train as train_module

    monkeypatch.setattr(train_module, "LOCK_WAIT_S", 30.0)
    holder = WriteLock(store, "a long classify")
    holder.__enter__()
    timers = []

    class ReleaseAfterLastStep(Quiet):  # the other writer finishes 1 s after the last step
        steps = done = 0

        def total(self, n: int) -> None:
            self.steps = n

        def advance(self, k: int = 1) -> None:
            self.done += k
            if k and self.done == self.steps:
                timers.append(threading.Timer(1.0, holder.__exit__, args=(None, None, None)))
                timers[-1].start()

    try:
        result = train(_job(store, tmp_path / "runs" / "waits", steps=3), ReleaseAfterLastStep())
    finally:
        for t in timers:
            t.join()
        holder.__exit__(None, None, None)
    assert st.has_group(store, "runs/waits") and result.step == 3
    with pytest.raises(EmodiffError, match="held by another writer"):  # without waiting: one line at once
        with WriteLock(store, "first"), WriteLock(store, "second"):
            pass
