"""Diagnose a trained generator (emodiff/diffusion/diagnose.py): error per noise level against the Gaussian denoiser,
condition sensitivity, and sample statistics against real mels. docs/generator.md keeps its numbers.

On real 256-frame windows of utterances (emodiff.segments.UtteranceWindows) of the speakers the run never saw
(all speakers when it saw every one), centred as the run centres them:
1. per noise level sigma: the EMA denoiser's error E||D - x_0||^2 per element, the closed-form Gaussian
   denoiser's (fitted on windows of the run's training speakers, blocks of 4 frames) and the noisy input's;
2. at sigma = --mid-sigma: the error with the true emotion and with the other three (same noise);
3. for each --synthetic set, and for real segments of held-out and training speakers: std, silent share,
   frame-to-frame change and correlation, spectral flatness; and in their pauses (frames whose bins 10-79 average
   below -0.9) the level of bins 0-7, beside the normalizer's per-bin centre.

Run: ``python benchmarks/generator.py --store S --run runs/NAME [--synthetic SET ...] [--windows 128]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from emodiff import store as st
from emodiff.batches import conditions
from emodiff.checkpoint import latest_checkpoint, load_checkpoint, load_weights
from emodiff.diffusion.diagnose import condition_gap, error_per_level, mel_statistics, sigma_denoiser
from emodiff.diffusion.normalize import MelNormalizer
from emodiff.diffusion.objectives import build_denoiser
from emodiff.diffusion.wiener import BlockWiener
from emodiff.generators import recipe_from_dict
from emodiff.segments import UtteranceWindows, load_segments, speaker_matches

PAUSE = -0.9  # a frame whose bins 10-79 average below this is a pause


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True, help="the store the run was trained from")
    p.add_argument("--run", type=Path, required=True, help="a run folder (its latest checkpoint) or a .pt file")
    p.add_argument("--synthetic", nargs="*", default=[], help="/synthetic sets whose statistics to show")
    p.add_argument("--windows", type=int, default=128, help="real windows per measurement (default 128)")
    p.add_argument("--mid-sigma", type=float, default=0.5, help="noise level of the condition gap (default 0.5)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = args.run if args.run.suffix == ".pt" else latest_checkpoint(args.run)
    if ckpt is None:
        sys.exit(f"{args.run}: no checkpoint")
    state = load_checkpoint(ckpt)
    recipe = recipe_from_dict(state["recipe"], f"{ckpt}:recipe")
    trained = [str(s) for s in state["training_speakers"]]
    model = build_denoiser(recipe, len(trained))
    load_weights(model, state["ema"], ckpt)
    model.eval()
    norm = MelNormalizer.from_state(state["normalizer"])
    denoise = sigma_denoiser(recipe, state, model)
    data, _ = load_segments(args.store, list(state["corpora"]), str(state["embed_model"]), load="memory")
    seen = np.array([speaker_matches(s, trained) for s in data.speaker])[data.utt.numpy()]
    held = data.subset(np.flatnonzero(~seen)) if (~seen).any() else data.subset(np.flatnonzero(seen))
    frames = int(state.get("segment_frames", 256))
    gen = torch.Generator().manual_seed(0)
    train_windows, _ = UtteranceWindows(data.subset(np.flatnonzero(seen)), frames).draw(4 * args.windows, gen)
    gaussian = BlockWiener.fit(norm.forward(train_windows.float()))
    mel, utt = UtteranceWindows(held, frames).draw(args.windows, gen)
    x0 = norm.forward(mel.float())
    index = {s: i for i, s in enumerate(trained)}
    kw = conditions(held, utt, index, torch.device("cpu"))
    which = "held-out" if (~seen).any() else "training"
    print(f"# {ckpt}: {recipe.diffusion.parameterization} / {recipe.denoiser.kind}, {args.windows} windows of "
          f"{which} speakers\n")
    print("| sigma | model | Gaussian denoiser | noisy input | model / Gaussian |\n|---|---|---|---|---|")
    with torch.no_grad():
        for r in error_per_level(lambda x, s: denoise(x, s, **kw), x0, gaussian):
            print(f"| {r.sigma:g} | {r.model:.4f} | {r.gaussian:.4f} | {r.noisy:.4f} | {r.model / r.gaussian:.2f} |")
        if recipe.denoiser.kind == "unet":
            def with_emotion(x: torch.Tensor, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
                return denoise(x, s, **{**kw, "emotion": e})

            true, other = condition_gap(with_emotion, x0, kw["emotion"], args.mid_sigma)
        else:  # the flat model hears emotion only through the text; swap whole conditions between emotions
            true, other = _text_gap(denoise, x0, kw, held, utt, args.mid_sigma)
    print(f"\ncondition gap at sigma {args.mid_sigma:g}: error {true:.5f} with the true emotion, {other:.5f} with "
          f"another ({100 * (other - true) / true:+.1f} %)\n")
    rows = [(f"real, {which} speakers", *_real(held)), ("real, training speakers", *_real(data.subset(
        np.flatnonzero(seen))))]
    with st.open_store(args.store) as f:
        for name in args.synthetic:
            g = f[f"synthetic/{name}"]
            rows.append((f"synthetic {name}", g["mel"][()], g["frames"][()] if "frames" in g else None))
    print("| mels | std | silent frames | frame change | frame correlation | spectral flatness |")
    print("|---|---|---|---|---|---|")
    for label, m, fr in rows:
        s = mel_statistics(m, fr)
        print(f"| {label} | {s['std']:.3f} | {s['silent']:.3f} | {s['change']:.3f} | {s['correlation']:.3f} | "
              f"{s['flatness']:.4f} |")
    # The low band: in pauses (frames whose bins 10-79 are at the floor on average), where do bins 0-7 sit, beside
    # the per-bin centre the model's inputs are measured from (diffusion.normalize: center)?
    print(f"\n| pauses (valid frames, mean of bins 10-79 < {PAUSE}) | share of frames | "
          + " | ".join(f"bin {b}" for b in range(8)) + " |\n|---|---|" + "---|" * 8)
    centre = getattr(norm, "mean", None)
    if centre is not None:
        values = torch.as_tensor(centre).float().reshape(-1)[:8].tolist()
        print("| the normalizer's centre, per bin | | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    for label, m, fr in rows:
        share, level = pause_levels(m, fr, bins=8)
        print(f"| {label} | {share:.3f} | " + " | ".join(f"{v:.3f}" for v in level) + " |")


def pause_levels(mel: np.ndarray, frames: np.ndarray | None, bins: int) -> tuple[float, np.ndarray]:
    """(share of valid frames that are pauses, mean level of bins 0..bins-1 over those frames)."""
    valid = [m[:, : (m.shape[1] if frames is None else int(frames[i]))].astype(np.float32) for i, m in enumerate(mel)]
    joined = np.concatenate(valid, axis=1)
    pause = joined[10:].mean(axis=0) < PAUSE
    return float(pause.mean()), joined[:bins, pause].mean(axis=1)


def _real(data) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    return data.mel.numpy(), data.frames.numpy()


def _text_gap(denoise, x0, kw, data, utt, sigma):  # type: ignore[no-untyped-def]
    """Flat (text-only) models: the error with each window's own text vs a text of another emotion."""
    gen = torch.Generator().manual_seed(1)
    x = x0 + sigma * torch.randn(x0.shape, generator=gen)
    s = torch.full((len(x0),), sigma)
    true = float(((denoise(x, s, **kw) - x0) ** 2).mean())
    donors = torch.stack([torch.nonzero(data.emotion != e)[0, 0] for e in data.emotion[utt].tolist()])
    other = float(((denoise(x, s, **conditions(data, donors, {}, x0.device)) - x0) ** 2).mean())
    return true, other


if __name__ == "__main__":
    main()
