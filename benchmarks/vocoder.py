"""HiFi-GAN against Griffin-Lim on real RAVDESS speech: log-mel fidelity and CPU speed, one process.

For ``--files`` utterances spread over the corpus (``../shared/corpora/ravdess`` beside the repo,
else the bundled sample) it computes the store's mel (MelExtractor, then the [-1, 1] scaling),
vocodes it with each vocoder, takes the mel of the result again and reports

1. MAD: mean over bins and frames of |log-mel(original) - log-mel(vocoded)|, natural-log units;
2. speed: ``--repeats`` timed calls per file and vocoder after one untimed warm-up call each;
   x real time = seconds of audio / best seconds of compute, summed over the files; and the ratio
   of HiFi-GAN's speed to Griffin-Lim's;
3. HiFi-GAN on a batch of 8 stored-size segments (80 x 256 frames), the report's usual input;
4. the cold load of the HiFi-GAN generator (model code, checkpoint, weight-norm folding).

Run: ``python benchmarks/vocoder.py [--root DIR] [--files N] [--repeats R] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ravdess"
SEGMENTS = 8  # the batched-segment measurement: 8 x 256 frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None,
                   help=f"RAVDESS root (default: {DEFAULT_ROOT}, else the bundled sample)")
    p.add_argument("--files", type=int, default=12, help="utterances, spread over the corpus (default: 12)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per file and vocoder, best kept (default: 3)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    if args.files < 1 or args.repeats < 1:
        p.error("--files and --repeats must be at least 1")
    if args.root is None:
        args.root = DEFAULT_ROOT
        if not DEFAULT_ROOT.is_dir():
            from emodiff.data import ravdess_sample

            args.root = ravdess_sample()
            print(f"note: {DEFAULT_ROOT} not found; using the bundled sample {args.root}")
    elif not args.root.is_dir():
        p.error(f"--root {args.root}: not a directory")
    return args


def spread(paths: list[Path], n: int) -> list[Path]:
    """``n`` paths evenly spread over the sorted list, so that speakers and emotions vary."""
    if n >= len(paths):
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]


def store_mels(paths: list[Path]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, natural-log mel [80, F], store-scaled mel [80, F]) per file, resampled to 22050 Hz."""
    import torch

    from emodiff.audio import MelConfig, MelExtractor, load_audio, resample, scale_log_mel

    extractor, rate = MelExtractor(), MelConfig().sample_rate
    out = []
    for path in paths:
        wave, source_rate = load_audio(path)
        log_mel = extractor.log_mel(torch.from_numpy(resample(wave, source_rate, rate)))
        out.append((path.name, log_mel.numpy(), scale_log_mel(log_mel).numpy()))
    return out


def mad(log_mel: np.ndarray, wave: np.ndarray) -> float:
    """mean_{bins, frames} |log-mel(original) - log-mel(vocoded)|, natural-log units."""
    import torch

    from emodiff.audio import MelExtractor

    return float(np.abs(log_mel - MelExtractor().log_mel(torch.from_numpy(wave)).numpy()).mean())


def best_seconds(fn, repeats: int) -> tuple[float, float]:
    """(best, median) wall seconds of ``repeats`` calls of ``fn()``."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def measure(vocoder, mels: list[tuple[str, np.ndarray, np.ndarray]], repeats: int) -> dict[str, object]:
    """MAD per file and the summed best / median seconds over the files for one vocoder."""
    vocoder(mels[0][2])  # warm-up: first-call set-up (oneDNN primitives, librosa caches) is not timed
    per_file, best, median = [], 0.0, 0.0
    for name, log_mel, scaled in mels:
        b, m = best_seconds(lambda s=scaled: vocoder(s), repeats)
        per_file.append({"file": name, "frames": int(scaled.shape[1]), "mad": mad(log_mel, vocoder(scaled)),
                         "best_s": b})
        best, median = best + b, median + m
    return {"name": vocoder.name, "files": per_file, "best_s": best, "median_s": median,
            "mad_mean": statistics.fmean(f["mad"] for f in per_file),
            "mad_median": statistics.median(f["mad"] for f in per_file)}


def segment_batch(mels: list[tuple[str, np.ndarray, np.ndarray]]) -> np.ndarray:
    """[SEGMENTS, 80, 256] store-size segments cut from the files' scaled mels, as the store holds them."""
    from emodiff.audio import segment

    segments = np.concatenate([segment(scaled)[0] for _, _, scaled in mels])
    return np.resize(segments, (SEGMENTS, *segments.shape[1:]))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from rich.console import Console
    from rich.table import Table

    from emodiff.audio import MelConfig
    from emodiff.corpora import list_corpus
    from emodiff.vocoder import load_vocoder

    paths = spread(sorted(u.path for u in list_corpus("ravdess", args.root).utterances), args.files)
    mels = store_mels(paths)
    cfg = MelConfig()
    audio_s = sum(scaled.shape[1] for _, _, scaled in mels) * cfg.hop / cfg.sample_rate

    start = time.perf_counter()
    hifigan = load_vocoder("hifigan")
    load_s = time.perf_counter() - start
    results = [measure(hifigan, mels, args.repeats), measure(load_vocoder("griffin-lim"), mels, args.repeats)]
    batch = segment_batch(mels)
    hifigan(batch[:1])  # warm-up at this shape
    batch_best, batch_median = best_seconds(lambda: hifigan(batch), args.repeats)
    batch_audio_s = batch.shape[0] * batch.shape[2] * cfg.hop / cfg.sample_rate
    for r in results:
        r["rtf"], r["rtf_median"] = audio_s / r["best_s"], audio_s / r["median_s"]
    speed_ratio = results[0]["rtf"] / results[1]["rtf"]

    console = Console()
    table = Table(title=f"vocoders: {len(mels)} RAVDESS files, {audio_s:.1f} s of audio, {args.root}")
    for col in ("vocoder", "MAD mean / median (nats)", "seconds best / median", "x real time"):
        table.add_column(col, justify="left" if col == "vocoder" else "right")
    for r in results:
        table.add_row(r["name"], f"{r['mad_mean']:.3f} / {r['mad_median']:.3f}",
                      f"{r['best_s']:.2f} / {r['median_s']:.2f}", f"{r['rtf']:.2f}x")
    console.print(table)
    for r in results:
        console.print(f"{r['name']} MAD per file: " + ", ".join(f"{f['mad']:.3f}" for f in r["files"]))
    wins = sum(h["mad"] < g["mad"] for h, g in zip(results[0]["files"], results[1]["files"], strict=True))
    console.print(f"HiFi-GAN's MAD below Griffin-Lim's on {wins} of {len(mels)} files")
    console.print(f"speed HiFi-GAN / Griffin-Lim: {speed_ratio:.2f}x")
    console.print(f"HiFi-GAN, batch of {SEGMENTS} segments x 256 frames ({batch_audio_s:.1f} s): "
                  f"{batch_best:.2f} / {batch_median:.2f} s best / median, {batch_audio_s / batch_best:.2f}x real time")
    console.print(f"HiFi-GAN cold load: {load_s:.2f} s; torch {torch.__version__}, {torch.get_num_threads()} threads, "
                  f"cpu_count {os.cpu_count()}, repeats {args.repeats}")
    if args.json:
        figures = {"root": str(args.root), "audio_s": audio_s, "repeats": args.repeats, "vocoders": results,
                   "speed_ratio_hifigan_over_griffin_lim": speed_ratio, "hifigan_load_s": load_s,
                   "hifigan_batch": {"segments": SEGMENTS, "best_s": batch_best, "median_s": batch_median,
                                     "rtf": batch_audio_s / batch_best},
                   "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
