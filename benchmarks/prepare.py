"""Throughput and peak memory of ``emodiff prepare``, against a plain librosa mel path.

On the RAVDESS subset (``../shared/corpora/ravdess`` beside the repo, else the bundled
sample) it measures:

1. emodiff's ``prepare`` end to end (decode, resample, mel, segment, compress, write the HDF5
   group) into a fresh store, ``--workers`` threads, after one untimed warm-up run on 8 files;
   ``--repeats`` timed runs, best and median. It runs in a child process (this script with the
   hidden ``--child`` flag), whose ``ru_maxrss`` at its end is the peak RSS of the run; a second
   child does the same on 32 files, so the difference shows whether memory grows with the corpus.
2. A plain librosa baseline in this process, one file after another: ``librosa.load`` and
   ``librosa.feature.melspectrogram`` with the same mel definition, then the clamped log. It is
   checked against ``MelExtractor().log_mel`` on the first file before anything is timed.

Run: ``python benchmarks/prepare.py [--root DIR] [--workers N] [--repeats R] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emodiff.parallel import available_cores

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ravdess"
SMALL = 32  # files in the memory-comparison child
TARGET_RTF = 3000.0  # issue: ">3000x real time end to end on 2 cores"
TARGET_SPEEDUP = 3.0  # issue: ">= 3x the librosa path"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None,
                   help=f"RAVDESS root (default: {DEFAULT_ROOT}, else the bundled sample)")
    p.add_argument("--workers", type=int, default=available_cores(),
                   help="emodiff prepare worker threads (default: the available cores)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs of each path, best and median reported (default: 3)")
    p.add_argument("--limit", type=int, default=None, help="use only N files, spread over the corpus (default: all)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write every figure to this JSON file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # internal: one measured emodiff run
    args = p.parse_args(argv)
    if args.workers < 1 or args.repeats < 1 or (args.limit is not None and args.limit < 1):
        p.error("--workers, --repeats and --limit must be at least 1")
    if args.root is None:
        args.root = DEFAULT_ROOT
        if not DEFAULT_ROOT.is_dir() and not args.child:
            from emodiff.data import ravdess_sample

            args.root = ravdess_sample()
            print(f"note: {DEFAULT_ROOT} not found; using the bundled sample {args.root}")
    elif not args.root.is_dir():
        p.error(f"--root {args.root}: not a directory")
    return args


def child(args: argparse.Namespace) -> dict[str, object]:
    """Warm up, then time ``prepare`` ``repeats`` times into fresh stores; report figures and ru_maxrss."""
    from emodiff.prepare import PrepareJob, prepare

    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="emodiff-bench-") as tmp:
        prepare(PrepareJob(Path(tmp) / "warm.h5", "ravdess", args.root, workers=args.workers, limit=8))
        for i in range(args.repeats):
            store = Path(tmp) / f"run{i}.h5"
            start = time.perf_counter()
            result = prepare(PrepareJob(store, "ravdess", args.root, workers=args.workers, limit=args.limit))
            seconds.append(time.perf_counter() - start)
            store.unlink()
    return {"seconds": seconds, "files": result.stats.utterances, "segments": result.stats.segments,
            "audio_seconds": result.audio_seconds, "skipped": len(result.stats.skipped),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux


def run_child(args: argparse.Namespace, limit: int | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--root", str(args.root),
           "--workers", str(args.workers), "--repeats", str(args.repeats)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def librosa_log_mel(path: Path) -> np.ndarray:
    """The same mel, the plain way: librosa.load + melspectrogram on a reflect-padded signal."""
    import librosa

    y, sr = librosa.load(path, sr=22050, mono=True)
    pad = (1024 - 256) // 2
    y = np.pad(y, (pad, pad), mode="reflect")
    m = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=False,
        power=1.0, n_mels=80, fmin=0.0, fmax=8000.0, htk=False, norm="slaney",
    )
    return np.log(np.clip(m, 1e-5, None))


def check_same_mel(path: Path) -> float:
    """Max |librosa - emodiff| log-mel on ``path`` where the mel energy is above 1e-3."""
    import torch

    from emodiff.audio import MelConfig, MelExtractor, load_audio, resample

    wave, rate = load_audio(path)
    wave = resample(wave, rate, MelConfig().sample_rate)
    ours = MelExtractor().log_mel(torch.from_numpy(wave)).numpy()
    ref = librosa_log_mel(path)
    assert ours.shape == ref.shape, f"frames differ: emodiff {ours.shape}, librosa {ref.shape}"
    loud = ref > np.log(1e-3)
    diff = float(np.abs(ours - ref)[loud].max())
    assert diff < 1e-3, f"{path}: emodiff and librosa log-mels differ by {diff:.2e}; not the same mel"
    return diff


def baseline(paths: list[Path], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            librosa_log_mel(path)
        seconds.append(time.perf_counter() - start)
    return seconds


def stages(paths: list[Path]) -> dict[str, float]:
    """Seconds per stage of prepare's per-file work, on one thread over ``paths``."""
    import torch

    from emodiff.audio import MelExtractor, load_audio, resample, segment
    from emodiff.records import deflate, shuffle

    extractor, totals = MelExtractor(), dict.fromkeys(("decode", "resample", "mel", "segment", "deflate"), 0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in prepare: one intra-op thread per worker
    for path in paths:
        t0 = time.perf_counter()
        wave, rate = load_audio(path)
        t1 = time.perf_counter()
        wave = resample(wave, rate, extractor.cfg.sample_rate)
        t2 = time.perf_counter()
        mel = extractor(torch.from_numpy(wave)).to(torch.float16).numpy()
        t3 = time.perf_counter()
        shuffled = [shuffle(s) for s in segment(mel)[0]]
        t4 = time.perf_counter()
        [deflate(s) for s in shuffled]
        t5 = time.perf_counter()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            totals[key] += dt
    torch.set_num_threads(before)
    return totals


def summary(seconds: list[float], files: int, audio_s: float) -> dict[str, float]:
    best = min(seconds)
    return {"best_s": best, "median_s": statistics.median(seconds), "utt_per_s": files / best,
            "rtf": audio_s / best, "rtf_median": audio_s / statistics.median(seconds)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    from rich.console import Console
    from rich.table import Table

    from emodiff.corpora import list_corpus
    from emodiff.prepare import _limit  # the same even spread of files that prepare --limit takes

    full = run_child(args, args.limit)
    small = run_child(args, SMALL if args.limit is None else min(SMALL, args.limit))
    paths = [u.path for u in _limit(list_corpus("ravdess", args.root).utterances, args.limit)]
    mel_diff = check_same_mel(paths[0])  # also warms librosa (imports, filter cache) before timing
    ref_seconds = baseline(paths, args.repeats)
    per_stage = stages(paths)

    files, audio_s = full["files"], full["audio_seconds"]
    ours, ref = summary(full["seconds"], files, audio_s), summary(ref_seconds, len(paths), audio_s)
    speedup = ref["best_s"] / ours["best_s"]
    cpus = os.cpu_count() or 1
    figures = {
        "root": str(args.root), "files": files, "segments": full["segments"], "skipped": full["skipped"],
        "audio_hours": audio_s / 3600, "workers": args.workers, "cpu_count": cpus, "repeats": args.repeats,
        "emodiff": {**ours, "seconds": full["seconds"]}, "librosa": {**ref, "seconds": ref_seconds},
        "speedup_vs_librosa": speedup, "mel_max_abs_diff": mel_diff, "stages_one_thread_s": per_stage,
        "peak_rss_mib": {"full": full["peak_rss_mib"], f"{small['files']}_files": small["peak_rss_mib"],
                         "difference": full["peak_rss_mib"] - small["peak_rss_mib"]},
        "targets": {"rtf": {"target": TARGET_RTF, "measured": ours["rtf"], "pass": ours["rtf"] > TARGET_RTF},
                    "speedup": {"target": TARGET_SPEEDUP, "measured": speedup, "pass": speedup >= TARGET_SPEEDUP}},
    }

    console = Console()
    table = Table(title=f"prepare: {files} files, {audio_s / 3600:.3f} h of audio, {args.root}")
    for col in ("path", "seconds best / median", "utt/s", "x real time", "speed vs librosa"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, s, ratio in ((f"emodiff, {args.workers} threads", ours, f"{speedup:.2f}x"),
                           ("librosa, plain", ref, "1.00x")):
        table.add_row(name, f"{s['best_s']:.3f} / {s['median_s']:.3f}", f"{s['utt_per_s']:.0f}",
                      f"{s['rtf']:.0f}x", ratio)
    console.print(table)
    console.print(f"workers {args.workers}, cpu_count {cpus}, repeats {args.repeats}; "
                  "utt/s and x real time from the best run")
    console.print("emodiff: prepare() end to end (decode, mel, segment, deflate, HDF5 write) in a child process")
    console.print("librosa, plain: one process, one file after another, load + melspectrogram + log, nothing written")
    console.print(f"mel check on {paths[0].name}: max |librosa - emodiff| = {mel_diff:.2e} where energy > 1e-3")
    console.print("one thread, per stage: " + ", ".join(
        f"{k} {v:.3f} s ({audio_s / v:.0f}x)" if v > 0 else f"{k} 0 s" for k, v in per_stage.items()))
    rss = figures["peak_rss_mib"]
    console.print(f"peak RSS of the prepare child: {rss['full']:.0f} MiB ({files} files), "
                  f"{small['peak_rss_mib']:.0f} MiB ({small['files']} files), difference {rss['difference']:+.0f} MiB")
    for label, key, shown in ((f">{TARGET_RTF:.0f}x real time end to end on 2 cores", "rtf",
                               f"{ours['rtf']:.0f}x on {args.workers} workers / {cpus} cpus"),
                              (f">= {TARGET_SPEEDUP:.0f}x the librosa path", "speedup", f"{speedup:.2f}x")):
        ok = figures["targets"][key]["pass"]
        console.print(f"target {label}: measured {shown}  " + ("[green]PASS[/]" if ok else "[red]MISS[/]"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
