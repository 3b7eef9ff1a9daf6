"""Checkpoints: data, not code. Written atomically, listed with their sha256, loaded safely.

A run folder ``runs/NAME/`` holds ``ckpt-0000300.pt`` files (step in the name, zero-padded) and
``checkpoints.json`` with each file's sha256. A checkpoint is a plain dict of tensors and
Python values (model, EMA, optimizer, step, RNG states, recipe, training speakers, store
fingerprint), loaded with ``torch.load(weights_only=True)`` so that a file can never run code.
A file whose hash differs from the one recorded, a truncated file, or one from another model
configuration gets a one-line EmodiffError.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from emodiff.errors import EmodiffError

FORMAT = 1
MANIFEST = "checkpoints.json"
_NAME = re.compile(r"^ckpt-(\d{7})\.pt$")
REQUIRED = ("format", "step", "model", "ema", "recipe", "training_speakers")


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:07d}.pt"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` as the checkpoint of ``step`` (temporary file, fsync, rename) and record its hash."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / checkpoint_name(step)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "step": step, **state}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    manifest = _manifest(run_dir)
    manifest[path.name] = digest
    tmp_manifest = run_dir / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp_manifest, run_dir / MANIFEST)
    return path


def _manifest(run_dir: Path) -> dict[str, str]:
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise EmodiffError(f"{path}: not valid JSON (expected checkpoint names and their sha256)") from None
    return dict(data)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest step in ``run_dir``; None if there is none.

    Any ``*.pt`` file whose name does not follow ``ckpt-NNNNNNN.pt`` is an error rather than
    ignored: silently restarting at step 0 would waste a run.
    """
    if not run_dir.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for path in run_dir.glob("*.pt"):
        match = _NAME.match(path.name)
        if match is None:
            raise EmodiffError(f"{path}: not a checkpoint name (expected ckpt-NNNNNNN.pt, the step zero-padded)")
        found.append((int(match[1]), path))
    return max(found)[1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and verify a checkpoint (hash from the run's manifest, format, required keys)."""
    path = Path(path)
    if not path.is_file():
        raise EmodiffError(f"{path}: no such checkpoint")
    recorded = _manifest(path.parent).get(path.name)
    if recorded is not None and recorded != sha256_file(path):
        raise EmodiffError(f"{path}: sha256 differs from {path.parent / MANIFEST}; the file was modified or damaged")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise EmodiffError(f"{path}: not a loadable emodiff checkpoint ({_first_line(err)})") from None
        # torch's own text runs to a page of advice on loading it anyway; emodiff never does.
        raise EmodiffError(f"{path}: refused: unsafe to load (it holds Python objects beyond tensors and plain "
                           "values, which could run code when loaded); emodiff loads only checkpoints it wrote, "
                           "with torch.load(weights_only=True)") from None
    except Exception as err:  # torch raises several types for truncated or corrupt files
        raise EmodiffError(f"{path}: not a loadable emodiff checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise EmodiffError(f"{path}: not an emodiff checkpoint (expected keys {', '.join(REQUIRED)})")
    if state["format"] != FORMAT:
        raise EmodiffError(f"{path}: checkpoint format {state['format']}, this emodiff reads format {FORMAT}")
    return state


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters), or its type's name."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else type(err).__name__
    return first if len(first) <= 160 else first[:157] + "..."


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """``module.load_state_dict(weights)`` with a one-line error for another configuration."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:200]
        raise EmodiffError(f"{path}: checkpoint is from another model configuration ({detail})") from None
