"""One study, two ways to run its jobs: in this process one by one, and as Ray tasks in worker processes of a real
local Ray cluster started here (skipped where Ray is not installed). The stored numbers must not depend on the
way: the same UAR per fold and seed, the same synthetic mels. (The local executor's processes run the same
``execute``: tests/test_jobs.py; benchmarks/study.py compared its stored UARs with Ray's on the demo.)"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_jobs import _write
from test_study import _recipe

from emodiff import store as st
from emodiff.jobs import Job, run_graph
from emodiff.study import StudyJob, plan_study, run_study


def _numbers(store: Path) -> dict[str, object]:
    """Every stored UAR per (result, fold, seed) and every synthetic set's mels."""
    out: dict[str, object] = {}
    with st.open_store(store) as f:
        for name in f["results"]:
            for fold in f[f"results/{name}"]:
                g = f[f"results/{name}/{fold}"]
                out[f"{name}/{fold}"] = float(g.attrs["uar"])
        for name in f["synthetic"]:
            out[f"synthetic/{name}"] = f[f"synthetic/{name}/mel"][()]
    return out


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _study(tmp: Path, name: str, **how) -> StudyJob:
    return StudyJob(store=tmp / f"{name}.h5", recipe=_recipe("real, real+synthetic"), runs=tmp / f"runs-{name}",
                    report=tmp / f"report-{name}", device="cpu", **how)


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict[str, object]:
    """The study in this process, one job at a time (as it ran before it had executors)."""
    tmp = tmp_path_factory.mktemp("serial")
    run_study(_study(tmp, "serial", jobs=1))
    return _numbers(tmp / "serial.h5")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real local Ray cluster of 2 CPUs, started as a user would (``ray start --head``), and its address."""
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'emodiff[ray]')")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    # the workers import this folder's modules for the jobs of the kill test (emodiff itself is installed)
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": path, "RAY_AUTH_MODE": "disabled"}
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    f"--temp-dir={temp}", "--object-store-memory=100000000", "--disable-usage-stats"],
                   check=True, env=env, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True)


def test_a_study_on_a_ray_cluster_stores_the_same_numbers(tmp_path, serial, cluster):
    job = _study(tmp_path, "ray", executor="ray", address=cluster)
    before = plan_study(job)
    assert before.jobs == [] and "run `emodiff prepare ravdess ROOT" in before.note  # the jobs follow from the corpus
    result = run_study(job)
    _same(_numbers(job.store), serial)
    assert (tmp_path / "report-ray" / "index.html").is_file() and len(result.generators) == 3
    plan = plan_study(job)
    assert [j.id for j in plan.jobs if j.stage == "train"] == [
        "train without-01-02-03-04", "train without-01-02-05-06", "train without-03-04-05-06"]
    assert dict((j.id, j.needs) for j in plan.jobs)["classify study-real-synthetic"] == (
        "sample without-01-02-03-04", "sample without-01-02-05-06", "sample without-03-04-05-06",
        "classify study-real")
    assert all(j.done() for j in plan.jobs if j.done) and all(done for _, done in plan.steps if done is not None)
    logs = sorted(p.parent.name for p in (job.runs / "tiny" / "jobs").glob("*/job.log"))
    assert logs == sorted(j.id.replace(" ", "-") for j in plan.jobs)  # each job ran in a Ray worker, logged there
    assert [s for s, _, _ in result.steps][2:-1] == [j.id for j in plan.jobs]  # after prepare and embed


def _slow_then_quick(store: str, name: str, pid_file: str) -> bool:
    """A job that, on its first try, records its worker's pid and works until it is killed."""
    if not Path(pid_file).exists():
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(120)
    return _write(store, name, 1.0)


def test_a_ray_worker_killed_mid_job_is_retried_and_the_rest_kept(tmp_path, cluster):
    from emodiff.executors import RayExecutor

    store = tmp_path / "s.h5"
    pid_file = tmp_path / "pid"
    jobs = [Job("classify a", "classify", functools.partial(_write, str(store), "a", 1.0), tmp_path / "a"),
            Job("classify b", "classify", functools.partial(_slow_then_quick, str(store), "b", str(pid_file)),
                tmp_path / "b"),
            Job("classify c", "classify", functools.partial(_write, str(store), "c", 1.0), tmp_path / "c",
                needs=("classify b",))]

    def kill() -> None:
        deadline = time.monotonic() + 90
        while (not pid_file.exists() or not pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    notes: list[str] = []
    progress = type("P", (), {"total": lambda s, n: None, "advance": lambda s, k=1: None,
                              "note": lambda s, t: notes.append(t)})()
    executor = RayExecutor(cluster)
    try:
        result = run_graph(jobs, executor, store, progress)
    finally:
        executor.close()
    killer.join()
    assert not result.failed and [d[0] for d in result.done] == ["classify a", "classify b", "classify c"]
    assert any(n.startswith("classify b: its Ray worker died") and "trying again" in n for n in notes)
    with st.open_store(store) as f:
        assert sorted(f["results"]) == ["a", "b", "c"]
        assert int(f["results/b"].attrs["pid"]) != int(pid_file.read_text())  # done by another worker
