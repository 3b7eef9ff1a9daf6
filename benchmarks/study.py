"""Wall time of the demo study run three ways on this machine (issue 23): serial, ``--executor local``, and a local
Ray cluster. docs/performance.md keeps its numbers.

Each way runs ``emodiff study --recipe demo`` (the bundled 6-actor RAVDESS sample: 6 generators, 4 experiments,
6 quality jobs, the report) from a fresh store and runs folder, as a child process timed from outside:
1. ``serial``: ``--jobs 1 --threads T`` (T: every available core), one job at a time in the driver, each on
   all the cores: how the study ran before it had executors;
2. ``local``: ``--executor local``, the default: one thread per job, as many jobs at once as there are cores;
3. ``ray``: ``--executor ray --address ADDR``, a Ray cluster started with ``ray start --head --num-cpus C``
   before the run (not timed) and stopped after it.
It prints each way's wall time and its speed-up over ``serial``, and the stored UARs of the three, which are
the same for ``local`` and ``ray`` (one thread per job both) and differ from ``serial`` only where a job on more
threads sums in another order.

Run: ``python benchmarks/study.py [--train-steps 200] [--samples 64] [--ways serial,local,ray] [--json OUT]``.
With the defaults (the demo's generators trained 200 steps rather than 800) it takes about 20 minutes on 2
cores; ``--train-steps 0`` keeps the demo's own 800.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = ("serial", "local", "ray")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-steps", type=int, default=200, help="steps per generator (default: 200; 0: the demo "
                   "recipe's 800)")
    p.add_argument("--samples", type=int, default=0, help="segments per generator (default 0: the demo's 128)")
    p.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, from {', '.join(WAYS)} (default: all)")
    p.add_argument("--keep", type=Path, default=None, help="keep each way's store, runs and report under this folder")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    args.ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    if not args.ways or not set(args.ways) <= set(WAYS):
        p.error(f"--ways {','.join(args.ways)}: expected a comma-separated subset of {', '.join(WAYS)}")
    if args.train_steps < 0 or args.samples < 0:
        p.error("--train-steps and --samples must be at least 0")
    return args


def _recipe(folder: Path, train_steps: int, samples: int) -> Path:
    """The demo recipe with the benchmark's generator steps and sample count."""
    import yaml

    from emodiff.generators import load_recipe

    data = load_recipe("demo").to_dict()
    if train_steps:
        data["study"]["train_steps"] = train_steps
    if samples:
        data["study"]["samples"] = samples
    path = folder / "demo-bench.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uars(store: Path) -> dict[str, float]:
    from emodiff import store as st

    with st.open_store(store) as f:
        return {f"{name}/{fold}": round(float(f[f"results/{name}/{fold}"].attrs["uar"]), 6)
                for name in f["results"] for fold in f[f"results/{name}"]}


def _run(way: str, recipe: Path, folder: Path, cores: int) -> dict[str, object]:
    """One study, timed from outside; returns its wall time and stored UARs."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "emodiff", "study", "--recipe", str(recipe), "--store", str(folder / "s.h5"),
           "--runs", str(folder / "runs"), "--out", str(folder / "report"), "--device", "cpu"]
    # a cluster on this machine only: no usage report, and no auth token for the driver to find
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    started = False
    if way == "serial":
        cmd += ["--jobs", "1", "--threads", str(cores)]
    elif way == "ray":
        port = _free_port()
        subprocess.run([ray_bin, "start", "--head", f"--port={port}", f"--num-cpus={cores}",
                        "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env,
                       capture_output=True)
        started = True
        cmd += ["--executor", "ray", "--address", f"127.0.0.1:{port}"]
    try:
        start = time.perf_counter()
        with open(folder / "study.log", "w") as log:
            subprocess.run(cmd, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
    finally:
        if started:
            subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True)
    return {"seconds": round(seconds, 1), "uars": _uars(folder / "s.h5")}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from emodiff.parallel import available_cores

    cores = available_cores()
    root = args.keep or Path(tempfile.mkdtemp(prefix="emodiff-bench-study-"))
    root.mkdir(parents=True, exist_ok=True)
    recipe = _recipe(root, args.train_steps, args.samples)
    print(f"# demo study, {args.train_steps or 800} steps per generator; {cores} available cores; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, dict[str, object]] = {}
    for way in args.ways:
        results[way] = _run(way, recipe, root / way, cores)
        base = results.get("serial", results[args.ways[0]])["seconds"]
        print(f"{way:>6}: {results[way]['seconds']:7.1f} s   {base / results[way]['seconds']:.2f}x "
              f"against {'serial' if 'serial' in results else args.ways[0]}", flush=True)
    uars = {way: r["uars"] for way, r in results.items()}
    if "local" in uars and "ray" in uars:
        print(f"local and ray stored the same UARs: {uars['local'] == uars['ray']}")
    if "serial" in uars and "local" in uars:
        same = sum(uars["serial"][k] == uars["local"].get(k) for k in uars["serial"])
        print(f"serial and local: {same} of {len(uars['serial'])} (fold, seed) UARs the same")
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "train_steps": args.train_steps or 800, **results},
                                        indent=1))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
