"""Training and sampling speed of the paper's IDDPM denoiser (the flat res-block stack), eager fp32 against the
fast path. (The shipped demo and ravdess recipes are U-Nets; their speed is in docs/generator.md.)

On synthetic inputs (mels [B, 80, 256] uniform in [-1, 1], token vectors [B, 20, text_dim] with a full mask;
no store needed), for each size: (1) training steps/s, the step of ``emodiff train`` (uniform t,
``training_losses``, backward, clip_grad_norm, AdamW, EMA lerp) after ``--warmup`` untimed steps; (2) sampling
segments/s, ``p_sample_loop`` respaced to S steps after an untimed 2-step loop, and the seconds 5000 segments at
S = 100 would take (linear in S); (3) both as "eager fp32" (the baseline) and "fast" (bf16 autocast +
torch.compile, CUDA only) in this process, with the ratio, and the model FLOPs utilisation on a GPU (forward
FLOPs by FlopCounterMode at batch 1, x3 for a training step) or the achieved GFLOP/s on a CPU.

Run: ``python benchmarks/diffusion.py [--sizes paper] [--device auto|cpu|cuda] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from emodiff.diffusion import create_diffusion, create_named_schedule_sampler
from emodiff.diffusion.denoiser import Denoiser, count_parameters
from emodiff.generators import load_recipe
from emodiff.train import EMA

SIZES = ("paper",)  # recipes with the flat IDDPM denoiser
FRAMES, TOKENS = 256, 20  # segment frames, text tokens per condition
CPU_PAPER_BATCH, CPU_PAPER_SAMPLE_STEPS, CPU_SAMPLE_BATCH = 2, 10, 8  # keeps a CPU run to a few minutes
TARGET_MFU, TARGET_TRAIN_STEPS, TARGET_TRAIN_S = 0.40, 120_000, 3600.0  # issue: paper training >= 40 % MFU, < 1 h
TARGET_SEGMENTS, TARGET_S, TARGET_SAMPLE_S = 5000, 100, 60.0  # issue: 5000 segments at S = 100 in under 60 s


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="paper", help="comma-separated flat-denoiser recipes to measure (default: paper)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if available")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"training batch (default: the recipe's; on CPU the paper size uses {CPU_PAPER_BATCH})")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first (default: 2)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default: 5 on CPU, 20 on GPU)")
    p.add_argument("--sample-steps", type=int, default=None, metavar="S", help=f"respaced sampling steps "
                   f"(default: the recipe's; on CPU the paper size uses {CPU_PAPER_SAMPLE_STEPS})")
    p.add_argument("--sample-batch", type=int, default=None,
                   help=f"segments per sampling loop (default: {CPU_SAMPLE_BATCH} on CPU, the recipe's on GPU)")
    p.add_argument("--noise-on", choices=("cpu", "device"), default="cpu", help="the sampler's noise generator: "
                   "cpu (seeded CPU generator, as emodiff sample does) or device (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, the core count)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak dense bf16 TFLOP/s (default: 989, H100)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    args.sizes = [s.strip() for s in args.sizes.split(",")]
    if not set(args.sizes) <= set(SIZES):
        p.error(f"--sizes {','.join(args.sizes)}: expected a comma-separated subset of {', '.join(SIZES)}")
    if any(v is not None and v < 1 for v in (args.batch_size, args.steps, args.sample_steps, args.sample_batch,
                                              args.threads)):
        p.error("--batch-size, --steps, --sample-steps, --sample-batch and --threads must be at least 1")
    if args.warmup < 0 or args.peak_tflops <= 0:
        p.error("--warmup must be >= 0 and --peak-tflops > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(args.device)
    return args


def timed(fn, warmup: int, repeats: int, device: torch.device) -> float:
    """Seconds for ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, the GPU's queue drained at both ends."""
    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return time.perf_counter() - start


def synthetic(cfg, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x0 [B, 80, F] in [-1, 1] and tokens [B, L, D], float16 on the CPU as the store holds them; mask [B, L]."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand((batch, cfg.mel_channels, FRAMES), generator=gen).mul(2).sub(1).half()
    tokens = torch.randn((batch, TOKENS, cfg.text_dim), generator=gen).half()
    return x0, tokens, torch.ones(batch, TOKENS, dtype=torch.bool)


def size_of(recipe, device: torch.device) -> tuple[int, int]:
    """(parameters, FLOPs of one forward at batch 1: matmuls, convolutions, attention, counted by FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = Denoiser(recipe.denoiser, recipe.diffusion.learn_sigma).to(device)
    x0, tokens, mask = synthetic(recipe.denoiser, 1)
    t = torch.zeros(1, dtype=torch.long, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x0.float().to(device), t, tokens.float().to(device), mask.to(device))
    return count_parameters(model), counter.get_total_flops()


def wrapped(model: torch.nn.Module, device: torch.device, fast: bool):
    """The model as train.py calls it: compiled and under bf16 autocast on the fast path, output in float32."""
    # dynamic=False: training and sampling batches differ, and a dynamic-shape recompile would be slower.
    net = torch.compile(model, dynamic=False) if fast else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast)

    def forward(x: torch.Tensor, t: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
        with autocast:
            return net(x, t, **kw).float()
    return forward


def measure(recipe, device: torch.device, fast: bool, plan: dict, args: argparse.Namespace) -> dict[str, float]:
    """Training steps/s, then sampling segments/s, on one freshly initialised model."""
    cfg, tc, batch = recipe.denoiser, recipe.train, plan["batch"]
    torch.manual_seed(0)
    diffusion = create_diffusion(recipe.diffusion)
    model = Denoiser(cfg, recipe.diffusion.learn_sigma).to(device)
    ema = EMA(model, tc.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sampler = create_named_schedule_sampler("uniform", diffusion)
    gen = torch.Generator().manual_seed(0)
    x0, tokens, mask = synthetic(cfg, batch)
    forward = wrapped(model, device, fast)

    def step() -> None:  # the body of train.py's loop, less logging and checkpoints
        x = x0.to(device, torch.float32)
        kwargs = {"tokens": tokens.to(device), "mask": mask.to(device)}
        t, weights = sampler.sample(batch, device, generator=gen)
        noise = torch.randn(x.shape, generator=gen).to(device)
        losses = diffusion.training_losses(forward, x, t, model_kwargs=kwargs, noise=noise)
        loss = (losses["loss"] * weights).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        ema.update(model)

    train_s = timed(step, args.warmup, plan["steps"], device)
    model.zero_grad(set_to_none=True)  # free the gradients before sampling
    model.eval()
    S, sb = plan["sample_steps"], plan["sample_batch"]
    forward = wrapped(model, device, fast)
    x0, tokens, mask = synthetic(cfg, sb)
    kwargs = {"tokens": tokens.float().to(device), "mask": mask.to(device)}
    warm, process = create_diffusion(recipe.diffusion, respace=min(2, S)), create_diffusion(recipe.diffusion, S)

    def loop(diffusion) -> None:
        gen = torch.Generator(device="cpu" if args.noise_on == "cpu" else device).manual_seed(0)
        diffusion.p_sample_loop(forward, (sb, cfg.mel_channels, FRAMES), model_kwargs=kwargs, generator=gen,
                                device=device)

    loop(warm)  # warm-up (and compilation on the fast path)
    sample_s = timed(lambda: loop(process), 0, 1, device)
    steps_per_s, segments_per_s = plan["steps"] / train_s, sb / sample_s
    return {"train_steps_per_s": steps_per_s, "train_segments_per_s": steps_per_s * batch,
            "train_flops_per_s": 3 * plan["fwd_flops"] * batch * steps_per_s,
            "train_projected_120k_s": TARGET_TRAIN_STEPS / steps_per_s,
            "sample_segments_per_s": segments_per_s, "sample_flops_per_s": plan["fwd_flops"] * sb * S / sample_s,
            "sample_projected_5000_at_100_s": TARGET_SEGMENTS / segments_per_s * TARGET_S / S}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads or torch.get_num_threads())
    device, gpu, console, notes = args.device, args.device.type == "cuda", Console(), []
    name, peak = (torch.cuda.get_device_name(device), args.peak_tflops * 1e12) if gpu else ("cpu", None)
    paths = ("eager fp32", "fast") if gpu else ("eager fp32",)
    steps = args.steps or (20 if gpu else 5)
    figures: dict = {"device": str(device), "device_name": name, "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "peak_tflops": args.peak_tflops if gpu else None,
                     "warmup": args.warmup, "noise_on": args.noise_on, "sizes": {}, "notes": notes}
    if not gpu:
        notes.append("the fast path (bf16 autocast + torch.compile) needs a GPU: emodiff enables both on CUDA only, "
                     "so on CPU it equals eager fp32 and only that row is shown")
    for size in args.sizes:
        recipe = load_recipe(size)
        small = not gpu and size == "paper"
        params, flops = size_of(recipe, device)
        plan = {"batch": args.batch_size or (CPU_PAPER_BATCH if small else recipe.train.batch_size),
                "recipe_batch": recipe.train.batch_size, "steps": steps, "params": params, "fwd_flops": flops,
                "sample_steps": args.sample_steps or (CPU_PAPER_SAMPLE_STEPS if small else recipe.sample.steps),
                "sample_batch": args.sample_batch or (recipe.sample.batch_size if gpu else CPU_SAMPLE_BATCH)}
        if small and (args.batch_size is None or args.sample_steps is None):
            notes.append(f"paper size on CPU, to finish in minutes: training batch {plan['batch']} (recipe: "
                         f"{recipe.train.batch_size}), S = {plan['sample_steps']} (recipe: {recipe.sample.steps}); "
                         "--batch-size and --sample-steps override")
        fig = figures["sizes"][size] = {**plan, "paths": {}}
        for path in paths:
            console.print(f"measuring {size}, {path} ...")
            r = fig["paths"][path] = measure(recipe, device, path == "fast", plan, args)
            if gpu:
                r.update(train_mfu=r["train_flops_per_s"] / peak, sample_mfu=r["sample_flops_per_s"] / peak)
                torch.cuda.empty_cache()
        base = fig["paths"]["eager fp32"]
        for r in fig["paths"].values():
            r.update(train_vs_eager=r["train_steps_per_s"] / base["train_steps_per_s"],
                     sample_vs_eager=r["sample_segments_per_s"] / base["sample_segments_per_s"])

    def rate(f: float) -> str:
        return f"{f / 1e12:.1f} TFLOP/s, {100 * f / peak:.1f} % MFU" if gpu else f"{f / 1e9:.1f}"

    unit = "FLOP/s, MFU" if gpu else "GFLOP/s"
    train = Table(title=f"training: {FRAMES}-frame segments, {steps} timed steps after {args.warmup}, {name}")
    sample = Table(title=f"sampling: p_sample_loop, noise drawn on {args.noise_on}, {name}")
    for table, cols in ((train, ("size, path", "params", "batch", "steps/s", "seg/s", "vs eager", unit, "120k steps")),
                        (sample, ("size, path", "S x batch", "seg/s", "vs eager", "5000 @ S=100", unit))):
        for col in cols:
            table.add_column(col, justify="left" if col == "size, path" else "right")
    for size, fig in figures["sizes"].items():
        for path, r in fig["paths"].items():
            train.add_row(f"{size}, {path}", f"{fig['params'] / 1e6:.2f} M", str(fig["batch"]),
                          f"{r['train_steps_per_s']:.2f}", f"{r['train_segments_per_s']:.1f}",
                          f"{r['train_vs_eager']:.2f}x", rate(r["train_flops_per_s"]),
                          f"{r['train_projected_120k_s'] / 3600:.1f} h")
            sample.add_row(f"{size}, {path}", f"{fig['sample_steps']} x {fig['sample_batch']}",
                           f"{r['sample_segments_per_s']:.2f}", f"{r['sample_vs_eager']:.2f}x",
                           f"{r['sample_projected_5000_at_100_s']:.0f} s", rate(r["sample_flops_per_s"]))
    console.print(train, sample)
    console.print(f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; forward FLOPs "
                  "per segment: " + ", ".join(f"{s} {f['fwd_flops'] / 1e9:.2f} G" for s, f in figures["sizes"].items()))
    console.print("training FLOPs = 3 x forward; 120k steps: the paper's run at the measured rate; 5000 @ S=100 = "
                  "5000 / (seg/s) x 100 / S; fast sampling wraps the model as train.py does (emodiff sample: eager)")
    for note in notes:
        console.print(f"note: {note}")

    paper = figures["sizes"].get("paper")
    figures["targets"] = {}
    for key, label, target, scale, unit in (  # a target below which a figure passes, or above it for MFU
            ("train_mfu", "paper-size training >= 40 % MFU", TARGET_MFU, 100, "%"),
            ("train_projected_120k_s", "120k paper steps in under an hour", TARGET_TRAIN_S, 1 / 3600, "h"),
            ("sample_projected_5000_at_100_s", "5000 segments at S=100 in under 60 s", TARGET_SAMPLE_S, 1, "s")):
        v = paper["paths"]["fast"][key] if gpu and paper else None
        ok = None if v is None else (v >= target if key == "train_mfu" else v < target)
        figures["targets"][key] = {"target": target, "measured": v, "pass": ok}
        if v is None:
            console.print(f"target {label}: not measured: {'no GPU' if not gpu else 'paper size not run'}")
            continue
        at = "" if paper["batch"] == paper["recipe_batch"] or key.startswith("sample") else f", batch {paper['batch']}"
        console.print(f"target {label}: measured {v * scale:.2f} {unit} (fast path{at})  "
                      + ("[green]PASS" if ok else "[red]MISS"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        console.print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
