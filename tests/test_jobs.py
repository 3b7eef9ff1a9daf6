"""The job graph's driver (emodiff/jobs.py) and its local executors: order, one writer, retries, failures.

The jobs here are small module-level functions (a spawned worker imports this module to run them) that
write a group through the store's own writer, as every step does."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from emodiff import store as st
from emodiff.errors import EmodiffError
from emodiff.executors import InProcess, LocalProcesses, make_executor
from emodiff.jobs import Job, Retriable, check_graph, execute, run_graph


def _write(store: str, name: str, value: float, pid_file: str = "") -> bool:
    """A job: add /results/<name> holding ``value`` and the pid of the process that wrote it."""
    if st.has_group(Path(store), f"results/{name}"):
        return True
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    with st.write_group(Path(store), f"results/{name}", config={"value": value}) as g:
        g.attrs["value"] = value
        g.attrs["pid"] = os.getpid()
        g.attrs["saw"] = sorted(k for k in _names(store))  # what the store held when this job ran
    return False


def _names(store: str) -> list[str]:
    if not Path(store).exists():
        return []
    with st.open_store(Path(store)) as f:
        return list(f["results"]) if "results" in f else []


def _crash_once(store: str, name: str, marker: str) -> bool:
    """A job whose process dies (SIGKILL) the first time it runs, as a worker killed by the kernel would."""
    if not Path(marker).exists():
        Path(marker).write_text("tried")
        os.kill(os.getpid(), signal.SIGKILL)
    return _write(store, name, 2.0)


def _bad_input(store: str) -> bool:
    print("reading the corpus ... line 3 is not a wav file")
    raise EmodiffError(f"{store}: bad input")


def _bug(store: str) -> bool:
    print("about to divide")
    return bool(1 / 0)


def _job(tmp: Path, id: str, fn, *args, needs=()) -> Job:
    return Job(id, "classify", functools.partial(fn, str(tmp / "s.h5"), *args), tmp / "jobs" / id.replace(" ", "-"),
               needs=tuple(needs))


def _store(tmp: Path) -> Path:
    store = tmp / "s.h5"
    with st.write_group(store, "results/seed", config={}) as g:
        g.attrs["value"] = 0.0
    return store


@pytest.fixture(params=["in-process", "processes"])
def executor(request):
    return InProcess(1) if request.param == "in-process" else LocalProcesses(2)


def test_a_job_writes_only_its_folder_and_the_driver_adds_its_group(tmp_path):
    store = _store(tmp_path)
    job = _job(tmp_path, "classify a", _write, "a", 1.0)
    outcome = execute(job, log=False)
    assert not st.has_group(store, "results/a")  # the job left its group in its folder, not in the store
    assert [Path(o).name for o in outcome.outputs] == ["results.a.group.h5"]
    assert st.adopt(store, Path(outcome.outputs[0])) == "results/a"
    with st.open_store(store) as f:
        assert f["results/a"].attrs["value"] == 1.0 and "config_hash" in f["results/a"].attrs
    assert not st.job_outputs(job.folder)
    # the same group again (a driver killed after adding it, rerun): the file goes, the store stays
    blind = str(tmp_path / "elsewhere.h5")  # a job that ran before the group was there: it could not see it
    again = execute(dataclass_replace(job, run=functools.partial(_fresh_write, blind, "a", 1.0)), log=False)
    assert st.adopt(store, Path(again.outputs[0])) == "results/a" and not st.job_outputs(job.folder)
    # other settings under the same name: refused, and both kept
    other = execute(dataclass_replace(job, run=functools.partial(_fresh_write, blind, "a", 3.0)), log=False)
    with pytest.raises(EmodiffError, match=r"already holds /results/a made with other settings; .* is kept"):
        st.adopt(store, Path(other.outputs[0]))
    assert Path(other.outputs[0]).exists()
    with st.open_store(store) as f:
        assert f["results/a"].attrs["value"] == 1.0


def _fresh_write(store: str, name: str, value: float) -> bool:
    with st.write_group(Path(store), f"results/{name}", config={"value": value}) as g:
        g.attrs["value"] = value
    return False


def dataclass_replace(job: Job, **changes) -> Job:
    import dataclasses

    return dataclasses.replace(job, **changes)


def test_the_copy_into_the_store_waits_for_a_reader_and_a_reader_for_the_copy(tmp_path):
    store = _store(tmp_path)
    outcome = execute(_job(tmp_path, "classify a", _write, "a", 1.0), log=False)
    code = f"import h5py, sys, time; f = h5py.File({str(store)!r}, 'r'); print('open', flush=True); time.sleep(1.5)"
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open"
    start = time.monotonic()
    st.adopt(store, Path(outcome.outputs[0]))  # HDF5 refuses a writer while the reader holds the file: it waits
    assert time.monotonic() - start > 0.5 and reader.wait() == 0
    code = f"import h5py, time; f = h5py.File({str(store)!r}, 'a'); print('open', flush=True); time.sleep(1.5)"
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "open"
    with st.open_store(store) as f:  # and a reader waits for the writer
        assert "a" in f["results"]
    writer.wait()


def test_jobs_run_after_what_they_need_and_see_its_groups(tmp_path, executor):
    store = _store(tmp_path)
    jobs = [_job(tmp_path, "classify c", _write, "c", 3.0, needs=["classify a", "classify b"]),
            _job(tmp_path, "classify a", _write, "a", 1.0),
            _job(tmp_path, "classify b", _write, "b", 2.0, needs=["classify a"])]
    result = run_graph(jobs, executor, store)
    assert not result.failed and [d[0] for d in result.done] == ["classify c", "classify a", "classify b"]
    with st.open_store(store) as f:
        saw = {k: list(f[f"results/{k}"].attrs["saw"]) for k in "abc"}
        pids = {int(f[f"results/{k}"].attrs["pid"]) for k in "abc"}
    assert saw == {"a": ["seed"], "b": ["a", "seed"], "c": ["a", "b", "seed"]}
    assert (pids == {os.getpid()}) == isinstance(executor, InProcess)  # processes: none ran in the driver
    # run again: every job finds its group and is skipped
    again = run_graph(jobs, executor, store)
    assert all(skipped for _, _, skipped in again.done)


def test_progress_counts_each_stage_with_the_job_being_started_as_running(tmp_path):
    notes: list[str] = []
    progress = type("P", (), {"total": lambda s, n: None, "advance": lambda s, k=1: None,
                              "note": lambda s, t: notes.append(t)})()
    store = _store(tmp_path)
    jobs = [_job(tmp_path, "classify a", _write, "a", 1.0), _job(tmp_path, "classify b", _write, "b", 2.0),
            Job("quality a", "quality", functools.partial(_write, str(store), "q", 3.0), tmp_path / "q",
                needs=("classify a",))]
    run_graph(jobs, InProcess(1), store, progress)
    assert [n.partition("   ")[2] for n in notes] == [
        "[classify 0/2 (1 running) | quality 0/1]", "[classify 1/2 | quality 0/1]",
        "[classify 1/2 (1 running) | quality 0/1]", "[classify 2/2 | quality 0/1]",
        "[classify 2/2 | quality 0/1 (1 running)]", "[classify 2/2 | quality 1/1]"]


def test_a_job_whose_process_dies_is_tried_again(tmp_path):
    store = _store(tmp_path)
    jobs = [_job(tmp_path, "classify a", _crash_once, "a", str(tmp_path / "marker")),
            _job(tmp_path, "classify b", _write, "b", 1.0, needs=["classify a"])]
    notes = []
    progress = type("P", (), {"total": lambda s, n: None, "advance": lambda s, k=1: None,
                              "note": lambda s, t: notes.append(t)})()
    result = run_graph(jobs, LocalProcesses(2), store, progress)
    assert not result.failed and {d[0] for d in result.done} == {"classify a", "classify b"}
    assert any("classify a: its worker died" in n and "trying again" in n for n in notes)
    assert any(n.startswith("classify a: try 2") for n in notes)


def test_a_failed_job_fails_what_needs_it_and_the_rest_goes_on(tmp_path):
    store = _store(tmp_path)
    jobs = [_job(tmp_path, "classify bad", _bad_input),
            _job(tmp_path, "classify bug", _bug),
            _job(tmp_path, "classify after", _write, "after", 1.0, needs=["classify bad"]),
            _job(tmp_path, "classify ok", _write, "ok", 1.0)]
    result = run_graph(jobs, LocalProcesses(2), store, retries=1)
    assert [d[0] for d in result.done] == ["classify ok"] and st.has_group(store, "results/ok")
    assert result.failed["classify bad"] == f"{store}: bad input"  # the job's own error: not retried
    assert result.failed["classify after"] == "not run: it needs classify bad"
    bug = result.failed["classify bug"]  # a crash: tried again, then reported with the end of its log
    assert bug.startswith("ZeroDivisionError: division by zero (tried 2 times); the last lines of ")
    assert "about to divide" in bug and "1 / 0" in bug
    text = str(result.error())
    assert text.startswith("3 job(s) failed; the 1 finished are kept") and "classify bug:" in text


def test_a_killed_driver_adds_what_its_finished_jobs_left(tmp_path):
    store = _store(tmp_path)
    job = _job(tmp_path, "classify a", _write, "a", 1.0)
    execute(job, log=False)  # finished, but the driver died before adding its group
    ran = []
    result = run_graph([dataclass_replace(job, run=functools.partial(_note_run, ran, str(store)))], InProcess(1), store)
    assert st.has_group(store, "results/a") and ran == [True] and result.done[0][2]  # found done, not redone


def _note_run(ran: list, store: str) -> bool:
    ran.append(st.has_group(Path(store), "results/a"))
    return ran[-1]


@pytest.mark.parametrize(("needs", "message"), [
    ({"a": ["b"], "b": ["a"]}, "need each other in a cycle: a, b"),
    ({"a": ["z"]}, "job a needs z, which is no job of the study"),
])
def test_a_graph_that_could_not_finish_is_refused(tmp_path, needs, message):
    jobs = [Job(i, "train", functools.partial(_bug, ""), tmp_path / i, needs=tuple(n)) for i, n in needs.items()]
    with pytest.raises(EmodiffError, match=message):
        check_graph(jobs)


def test_the_local_executor_fits_jobs_to_the_cores(monkeypatch):
    monkeypatch.setattr("emodiff.executors.available_cores", lambda: 4)
    assert isinstance(make_executor("local", None, 4), InProcess)
    many = make_executor("local", None, 1)
    assert isinstance(many, LocalProcesses) and many.threads == 4
    assert make_executor("local", None, 2).threads == 4
    assert isinstance(make_executor("local", None, 1, jobs=1), InProcess)
    with pytest.raises(EmodiffError, match="--address is for --executor ray"):
        make_executor("local", "auto", 1)
    with pytest.raises(EmodiffError, match="--executor 'slurm': expected one of local, ray"):
        make_executor("slurm", None, 1)


def test_without_ray_the_ray_executor_says_so_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(EmodiffError, match=r"--executor ray needs Ray, an optional extra: pip install 'emodiff\[ray"):
        make_executor("ray", None, 1)


class _TaskError(Exception):
    """What Ray's ray.get raises for a task that raised on its worker: the worker's exception as ``cause``."""

    def __init__(self, cause: BaseException):
        super().__init__(f"ray::run() (pid=1, ip=10.0.0.1)\n{type(cause).__name__}: {cause}")
        self.cause = cause


# Ray 2.60's message for a task whose function does not unpickle on the worker (seen with a module only the driver had)
NOT_IMPORTABLE = ("The remote function failed to import on the worker. This may be because needed library dependencies "
                  "are not installed in the worker environment or cannot be found from sys.path ['/tmp', ...]")


@pytest.mark.parametrize(("raised", "kind", "message"), [
    (_TaskError(EmodiffError("s.h5: not an emodiff store")), EmodiffError, "s.h5: not an emodiff store"),
    (_TaskError(Retriable("ValueError: nan loss")), Retriable, "ValueError: nan loss"),
    (_TaskError(RuntimeError(NOT_IMPORTABLE)), Retriable,
     "Ray could not run it on its worker: RuntimeError: The remote function failed to import on the worker "
     "(is emodiff installed on every node"),
    (OSError("WorkerCrashedError: The worker died unexpectedly. Check the logs"), Retriable,
     "its Ray worker died (OSError: WorkerCrashedError: The worker died unexpectedly)"),
])
def test_ray_failures_reach_the_driver_saying_what_failed(raised, kind, message):
    from concurrent.futures import Future

    from emodiff.executors import _translate

    inner, outer = Future(), Future()
    inner.set_exception(raised)
    _translate(inner, outer)
    err = outer.exception()
    assert type(err) is kind and str(err).startswith(message), str(err)


def test_a_group_built_in_a_job_folder_reads_back_whole(tmp_path):
    store = _store(tmp_path)
    folder = tmp_path / "job"
    with st.writes_into(folder), st.write_group(store, "synthetic/x", config={"n": 3}) as g:
        g.create_dataset("mel", data=np.arange(6, dtype=np.float16).reshape(3, 2))
    [output] = st.job_outputs(folder)
    with h5py.File(output, "r") as f:
        assert f.attrs["emodiff_group"] == "synthetic/x" and "partial_config_hash" not in f["g"].attrs
    st.adopt(store, output)
    with st.open_store(store) as f:
        np.testing.assert_array_equal(f["synthetic/x/mel"][()], np.arange(6).reshape(3, 2))
