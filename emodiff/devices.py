"""Which torch device a command runs on: ``auto`` (CUDA when present), cpu, cuda, cuda:N, mps."""

from __future__ import annotations

from collections.abc import Callable

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


def autocast_forward(model: Callable[..., torch.Tensor], device: torch.device,
                     bf16: bool) -> Callable[..., torch.Tensor]:
    """``model(x, t, **kw)`` under bf16 autocast on CUDA when ``bf16`` (off elsewhere), returning
    float32 so that the diffusion losses and samplers never do their arithmetic in bf16."""
    enabled = bf16 and device.type == "cuda"

    def forward(x: torch.Tensor, t: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
            return model(x, t, **kw).float()

    return forward
