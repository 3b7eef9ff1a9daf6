"""Training speed of the demo U-Net generator alone and beside a competing CPU-busy process, by thread count
and OpenMP wait policy (issue 10, reliability 9). docs/performance.md keeps its numbers.

The step is that of ``emodiff train`` on the shipped demo recipe (1-D U-Net, EDM preconditioning with a
Wiener skip, batch 16 of 128-frame windows; random mels and text vectors, no store needed): draw sigma and
noise, loss, backward, clip_grad_norm, AdamW, EMA. For each OpenMP wait policy (``default``: unset, GNU
libgomp spins 300 000 rounds before it sleeps; ``passive``: ``OMP_WAIT_POLICY=PASSIVE``, what the ``emodiff``
command sets) a child process, which loads torch once with that policy, measures for each thread count
(``all``: every available core; ``fewer``: available cores minus the busy process's one, at least 1):
1. steps/s alone, after ``--warmup`` untimed steps;
2. steps/s beside a busy process (a pure-Python loop, one core), started after (1) and stopped after (2).
It prints per row the slowdown (alone / beside) and, beside the busy process, each row against the
baseline: the default policy with all cores, the setting before ``--threads``.

Run: ``python benchmarks/contention.py [--seconds 6] [--json OUT]`` (about 2 minutes on 2 cores). The
machine's 1-minute load average is printed before each measurement: other work on the machine counts too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

POLICIES = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}}
BUSY = "while True:\n    pass\n"  # one core, no OpenMP of its own


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement, at least 3 steps "
                   "(default: 6)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after each thread change (default: 2)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step (default: 16, the demo recipe's)")
    p.add_argument("--policies", default="default,passive", help="comma-separated OpenMP wait policies to compare "
                   f"(default: default,passive; from {', '.join(POLICIES)})")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write every figure to this JSON file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a policy's measurements, as one JSON line
    args = p.parse_args(argv)
    args.policies = [s.strip() for s in args.policies.split(",") if s.strip()]
    if not args.policies or not set(args.policies) <= set(POLICIES):
        p.error(f"--policies {','.join(args.policies)}: expected a comma-separated subset of {', '.join(POLICIES)}")
    if args.seconds <= 0 or args.warmup < 0 or args.batch_size < 1:
        p.error("--seconds must be positive, --warmup at least 0 and --batch-size at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(_measure(args)))
        return
    from emodiff.parallel import available_cores

    cores = available_cores()
    print(f"# demo U-Net training step, batch {args.batch_size} x 80 x 128; {cores} available cores; "
          f"{args.seconds:g} s per measurement; busy process: a pure-Python loop\n")
    rows = []
    for policy in args.policies:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME",
                                                                  "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
        env.update(POLICIES[policy])
        child = [sys.executable, __file__, "--child", policy, "--seconds", str(args.seconds),
                 "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
        out = subprocess.run(child, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
    base = next((r for r in rows if r["policy"] == "default" and r["threads"] == cores), rows[0])
    print("| wait policy | threads | load before | steps/s alone | steps/s beside busy | slowdown | "
          "beside busy vs baseline |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {r['threads']} | {r['load']:.2f} | {r['alone']:.2f} | {r['beside']:.2f} | "
              f"{r['alone'] / r['beside']:.1f}x | {r['beside'] / base['beside']:.2f}x |")
    print(f"\nbaseline: {base['policy']} policy, {base['threads']} threads, beside busy "
          f"({base['beside']:.2f} steps/s)")
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "batch_size": args.batch_size, "seconds": args.seconds,
                                         "rows": rows}, indent=2))


def _measure(args: argparse.Namespace) -> list[dict[str, float | int | str]]:
    """In a child whose OpenMP policy is set: steps/s alone and beside a busy process, per thread count."""
    import torch  # after the parent set this child's OpenMP policy, and before emodiff

    from emodiff.parallel import available_cores, use_threads

    step = _train_step(args.batch_size)
    cores = available_cores()
    rows: list[dict[str, float | int | str]] = []
    for threads in sorted({cores, max(1, cores - 1)}, reverse=True):
        use_threads(threads)
        assert torch.get_num_threads() == threads
        load = os.getloadavg()[0]
        alone = _steps_per_s(step, args)
        busy = subprocess.Popen([sys.executable, "-c", BUSY])
        try:
            time.sleep(0.5)  # let the busy process get going
            beside = _steps_per_s(step, args)
        finally:
            busy.kill()
            busy.wait()
        rows.append({"policy": args.child, "threads": threads, "load": load, "alone": alone, "beside": beside})
    return rows


def _steps_per_s(step, args: argparse.Namespace) -> float:  # type: ignore[no-untyped-def]
    for _ in range(args.warmup):
        step()
    done, start = 0, time.perf_counter()
    while done < 3 or time.perf_counter() - start < args.seconds:
        step()
        done += 1
    return done / (time.perf_counter() - start)


def _train_step(batch: int):  # type: ignore[no-untyped-def]
    """One ``emodiff train`` step of the demo recipe on fixed random inputs, as a closure."""
    import torch

    from emodiff.devices import autocast_forward
    from emodiff.diffusion.objectives import build_denoiser, make_objective
    from emodiff.diffusion.wiener import BlockWiener
    from emodiff.ema import EMA
    from emodiff.generators import load_recipe

    recipe = load_recipe("demo")
    cfg, frames, tokens = recipe.train, recipe.train.crop_frames or 128, 20
    gen = torch.Generator().manual_seed(0)
    speakers = 4
    model = build_denoiser(recipe, speakers)
    objective = make_objective(recipe, 0.5, BlockWiener.fit(torch.randn(64, 80, frames, generator=gen)))
    ema = EMA(model, cfg.ema_decay, warmup=cfg.ema_warmup)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    forward = autocast_forward(model, torch.device("cpu"), cfg.bf16)
    x0 = torch.rand(batch, 80, frames, generator=gen) * 2 - 1
    kwargs = {"tokens": torch.randn(batch, tokens, recipe.denoiser.text_dim, generator=gen),
              "mask": torch.ones(batch, tokens, dtype=torch.bool),
              "emotion": torch.randint(4, (batch,), generator=gen), "speaker": torch.randint(speakers, (batch,)),
              "uncond": torch.zeros(batch, dtype=torch.bool)}

    def step() -> None:
        loss, _ = objective.losses(forward, x0, kwargs, gen, torch.device("cpu"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model)

    return step


if __name__ == "__main__":
    main()
