"""Which torch device a command runs on: ``auto`` (CUDA when present), cpu, cuda, cuda:N, mps."""

from __future__ import annotations

import torch

from emodiff.errors import EmodiffError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else the CPU; anything else is checked by :func:`check_device`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


def check_device(device: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as a torch.device; EmodiffError if not usable here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise EmodiffError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EmodiffError(f"device {device!r}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EmodiffError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise EmodiffError(f"device {device!r}: MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise EmodiffError(f"unknown device {device!r}; expected cpu, cuda, cuda:N or mps")
    return dev
