"""Speed of the CNN-BLSTM classifier: training epoch time, utterances/s, and batched scoring against a baseline.

On a prepared corpus (default: the bundled RAVDESS sample, prepared into a temporary store), for each
classifier size (the recipes' ``classifier`` sections): (1) one training epoch over every segment with
``emodiff.ser.training.train_epoch`` (the loop ``classify`` runs, mixup on), after one untimed warm-up epoch:
seconds per epoch, segments/s and utterances/s; (2) scoring every utterance, batched as ``classify`` does
(``utterance_scores``) against the baseline of one utterance per forward call, in this process, with the ratio;
(3) the time a LOSO run of the demo protocol would take, folds x (epochs x epoch time + scoring); (4) for a size
with ``time_pool`` > 1 (the ravdess recipe), the epoch time of the same size unpooled, in this process, with the ratio.

Run: ``python benchmarks/classify.py [--store S --corpus C] [--sizes demo,ravdess,paper] [--device auto|cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from emodiff import store as st
from emodiff.data import ravdess_sample
from emodiff.devices import resolve_device
from emodiff.generators import load_recipe
from emodiff.prepare import PrepareJob, prepare
from emodiff.ser.classifier import ClassifierConfig, CnnBlstm, count_parameters
from emodiff.ser.metrics import pool_segments
from emodiff.ser.training import Segments, segment_logits, train_epoch, utterance_scores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, default=None, help="a prepared store (default: the bundled sample, prepared)")
    p.add_argument("--corpus", default="ravdess", help="corpus in the store (default: ravdess)")
    p.add_argument("--sizes", default="demo,ravdess,paper", help="comma-separated recipes (default: all three)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if available")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p.parse_args(argv)


def load(store: Path, corpus: str) -> tuple[Segments, np.ndarray, int]:
    with st.open_store(store) as f:
        g = f[f"corpora/{corpus}"]
        mel = torch.from_numpy(g["segments/mel"][()].astype(np.float16))
        frames = torch.from_numpy(g["segments/frames"][()].astype(np.int64))
        utt = g["segments/utt"][()].astype(np.int64)
        emotion = st.read_table(g["utterances"])["emotion"].astype(np.int64)
        speakers = len(set(st.read_table(g["utterances"])["speaker"].tolist()))
    return Segments(mel, frames, torch.from_numpy(emotion[utt])), utt, speakers


def one_at_a_time(model: CnnBlstm, data: Segments, utt: np.ndarray, device: torch.device) -> np.ndarray:
    """The baseline: each utterance's segments in their own forward call."""
    n = int(utt.max()) + 1
    rows = [np.flatnonzero(utt == u) for u in range(n)]
    logits = np.concatenate([segment_logits(model, data.mel[r], data.frames[r], device) for r in rows])
    return pool_segments(logits, np.concatenate([utt[r] for r in rows]), n)


def timed_epoch(cfg: ClassifierConfig, data: Segments, device: torch.device) -> tuple[CnnBlstm, float]:
    """A fresh model after one warm-up epoch, and the seconds of the next epoch (mixup on, as in classify)."""
    torch.manual_seed(0)
    model = CnnBlstm(cfg).to(device)
    if cfg.normalize:
        model.set_normalization(data.mel, data.frames)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    train_epoch(model, opt, data, cfg.batch_size, device, gen, mixup_alpha=0.2)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    train_epoch(model, opt, data, cfg.batch_size, device, gen, mixup_alpha=0.2)
    sync(device)
    return model, time.perf_counter() - t0


def measure(size: str, data: Segments, utt: np.ndarray, speakers: int, device: torch.device) -> dict:
    cfg = load_recipe(size).classifier
    n_utts = int(utt.max()) + 1
    model, epoch_s = timed_epoch(cfg, data, device)
    # The same size without time pooling: what pooling saves, measured in this process.
    unpooled_s = timed_epoch(replace(cfg, time_pool=1), data, device)[1] if cfg.time_pool > 1 else epoch_s
    t0 = time.perf_counter()
    batched = utterance_scores(model, data.mel, data.frames, utt, n_utts, device, cfg.batch_size)
    sync(device)
    score_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    baseline = one_at_a_time(model, data, utt, device)
    sync(device)
    base_s = time.perf_counter() - t0
    assert np.allclose(batched, baseline, atol=1e-4), "batched and one-at-a-time scores disagree"
    return {"size": size, "parameters": count_parameters(model), "epochs": cfg.epochs, "batch": cfg.batch_size,
            "segments": len(data), "utterances": n_utts, "epoch_s": epoch_s, "time_pool": cfg.time_pool,
            "unpooled_epoch_s": unpooled_s, "pool_speedup": unpooled_s / epoch_s,
            "train_segments_per_s": len(data) / epoch_s,
            "train_utts_per_s": n_utts / epoch_s, "score_utts_per_s": n_utts / score_s,
            "baseline_score_utts_per_s": n_utts / base_s, "score_speedup": base_s / score_s,
            # LOSO: each fold trains on about (speakers - 2) / speakers of the data and scores the rest.
            "loso_estimate_s": speakers * (cfg.epochs * epoch_s * (speakers - 2) / speakers + 2 * score_s / speakers)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "bench.h5"
            prepare(PrepareJob(store, "ravdess", ravdess_sample()))
        data, utt, speakers = load(store, args.corpus)
    print(f"{args.corpus}: {int(utt.max()) + 1} utterances, {len(data)} segments, {speakers} speakers; "
          f"device {device}, {torch.get_num_threads()} threads")
    rows = [measure(size, data, utt, speakers, device) for size in args.sizes.split(",")]
    for r in rows:
        print(f"{r['size']:>6}: {r['parameters'] / 1e6:.2f} M parameters, epoch {r['epoch_s']:.2f} s "
              f"({r['train_segments_per_s']:.0f} segments/s, {r['train_utts_per_s']:.0f} utt/s, batch {r['batch']}); "
              f"scoring {r['score_utts_per_s']:.0f} utt/s batched vs {r['baseline_score_utts_per_s']:.0f} one at a "
              f"time ({r['score_speedup']:.1f}x); LOSO x {r['epochs']} epochs ~ {r['loso_estimate_s'] / 60:.1f} min")
        if r["time_pool"] > 1:
            print(f"{'':>8}time_pool {r['time_pool']}: epoch {r['epoch_s']:.2f} s against "
                  f"{r['unpooled_epoch_s']:.2f} s unpooled ({r['pool_speedup']:.1f}x faster)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
