"""Where a diffusion run's frame-to-frame jitter and shallow pauses come from (docs/generator.md, issue 20).

    python benchmarks/sampler_end.py --store S.h5 --run RUN_FOLDER [--n 32] [--sigma-min 0.002,0.05,0.1,0.2,0.5]

Three measurements, all on the run's EMA denoiser at its recipe's sampler and guidance, against
real segments of the store's corpus (full 256-frame ones, where no padding is counted):

1. the sampler's trajectory: at each of its noise levels sigma_i, the denoised estimate D(x_i; sigma_i)
   as a mel: its mean frame-to-frame change |x[b, t+1] - x[b, t]| relative to real's, and its share of
   frames whose mean level is below -0.95 (emodiff.silence.SILENCE);
2. the denoiser on real segments plus noise of each sigma: does it remove the noise, or keep it?
3. the whole sampler stopped at each --sigma-min (the last level, whose D is the sample);
4. the sample at the recipe's sigma_min without the final clamp to [-1, 1] (the log floor), and drawn
   with the raw weights instead of the EMA's: whether either makes the pauses shallow.

Prints ratios, not times: it is a diagnostic, run on whatever machine holds the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import torch

from emodiff.generators import Conditions, family_for
from emodiff.generators.diffusion import guided_denoiser
from emodiff.metrics import frame_change, silence_fraction
from emodiff.sample import SampleJob, _plan
from emodiff.text import TextEncoder


def _stats(mel: np.ndarray, real_change: np.ndarray) -> str:
    """'change x.xx (bins 0-14 x.xx), silence 0.xxx' of mel [N, 80, F], all frames valid."""
    frames = np.full(len(mel), mel.shape[2])
    ratio = frame_change(mel, frames) / real_change
    return f"change {ratio.mean():.2f} (bins 0-14 {ratio[:15].mean():.2f}), silence {silence_fraction(mel, frames):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--sigma-min", default="0.002,0.05,0.1,0.2,0.5")
    args = ap.parse_args()
    plan = _plan(SampleJob(store=args.store, n=args.n, run=args.run, name="probe"))
    device = torch.device("cpu")
    drawer = family_for(plan.sampled).drawer(plan.sampled, plan.state, device, plan.checkpoint)
    trained = [str(s) for s in plan.state["training_speakers"]]
    _, tokens, lengths = TextEncoder(plan.text_model, device="cpu").encode(plan.texts)
    speaker = torch.tensor([trained.index(str(plan.utterances["speaker"][r])) for r in plan.rows])
    kwargs = Conditions(tokens, lengths, torch.from_numpy(plan.emotion).long(), speaker).tensors(device)
    diffusion, norm = drawer.diffusion, drawer.norm
    with h5py.File(args.store, "r") as f:
        seg = f[f"corpora/{args.corpus}/segments"]
        frames = seg["frames"][()]
        full = np.flatnonzero(frames == seg["mel"].shape[2])[:400]
        real = seg["mel"][np.sort(full)].astype(np.float32)
    real_change = frame_change(real, np.full(len(real), real.shape[2]))
    print(f"real ({len(real)} full segments): {_stats(real, real_change)}")

    def as_mel(y: torch.Tensor) -> np.ndarray:
        return norm.inverse(y.float()).clamp(-1, 1).detach().numpy()

    denoise = guided_denoiser(drawer.forward, diffusion, kwargs, drawer.guidance, norm)
    seen: list[tuple[float, np.ndarray]] = []

    def recording(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        d = denoise(x, sigma)
        seen.append((float(sigma[0]), as_mel(d)))
        return d

    noise = torch.randn((args.n, *drawer.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = diffusion.sample_loop(recording, noise, drawer.steps, sampler=drawer.sampler)
    print(f"1. {drawer.sampler}, {drawer.steps} steps, guidance {drawer.guidance:g}: D at each noise level")
    for sigma, d in seen:
        print(f"   sigma {sigma:8.3f}  {_stats(d, real_change)}")
    print(f"   sample          {_stats(as_mel(x), real_change)}")

    print("2. D on real segments plus noise (no guidance): the sample's change relative to the clean segments'")
    clean = torch.from_numpy(real[: args.n])
    plain = guided_denoiser(drawer.forward, diffusion, {k: v[: len(clean)] for k, v in kwargs.items()}, 0.0, norm)
    own = frame_change(clean.numpy(), np.full(len(clean), clean.shape[2]))
    gen = torch.Generator().manual_seed(1)
    for sigma in (0.002, 0.01, 0.03, 0.1, 0.3, 1.0):
        noisy = norm.forward(clean) + sigma * torch.randn(clean.shape, generator=gen)
        with torch.no_grad():
            d = plain(noisy, torch.full((len(clean),), sigma))
        print(f"   sigma {sigma:6.3f}  input {_stats(as_mel(noisy), own)}  ->  D {_stats(as_mel(d), own)}")

    print("3. the sampler stopped at sigma_min (D there is the sample)")
    for value in (float(v) for v in args.sigma_min.split(",")):
        diffusion.sigma_min = value
        with torch.no_grad():
            x = diffusion.sample_loop(denoise, noise, drawer.steps, sampler=drawer.sampler)
        print(f"   sigma_min {value:5.3f}  {_stats(as_mel(x), real_change)}")
    diffusion.sigma_min = drawer.sigma_min

    print("4. the sample without the final clamp, and with the raw weights instead of the EMA's")
    with torch.no_grad():
        x = diffusion.sample_loop(denoise, noise, drawer.steps, sampler=drawer.sampler)
    raw = norm.inverse(x.float()).numpy()
    print(f"   clamped (as stored)  {_stats(np.clip(raw, -1, 1), real_change)}")
    print(f"   not clamped          {_stats(raw, real_change)}; values below -1: {np.mean(raw < -1):.3f}")
    quiet = raw.mean(axis=1) < -0.9  # [N, F] frames near the floor
    print(f"   in frames whose mean is below -0.9 ({quiet.mean():.3f} of all): per-bin values' mean "
          f"{raw.transpose(0, 2, 1)[quiet].mean():.3f}, std {raw.transpose(0, 2, 1)[quiet].std():.3f}; "
          f"real: mean {real.transpose(0, 2, 1)[real.mean(axis=1) < -0.9].mean():.3f}, "
          f"std {real.transpose(0, 2, 1)[real.mean(axis=1) < -0.9].std():.3f}")
    plain_weights = family_for(plan.sampled).drawer(plan.sampled, dict(plan.state, ema=plan.state["model"]), device,
                                                    plan.checkpoint)
    denoise_raw = guided_denoiser(plain_weights.forward, diffusion, kwargs, drawer.guidance, norm)
    with torch.no_grad():
        x = diffusion.sample_loop(denoise_raw, noise, drawer.steps, sampler=drawer.sampler)
    print(f"   raw weights          {_stats(as_mel(x), real_change)}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
