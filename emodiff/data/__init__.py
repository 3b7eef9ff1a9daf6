"""Data shipped inside the package: a small real RAVDESS subset for the demo and tests."""

from __future__ import annotations

from pathlib import Path


def ravdess_sample() -> Path:
    """Folder of the bundled RAVDESS subset: Actor_01..Actor_06, 4 emotions, 168 FLAC files.

    CC BY-NC-SA 4.0 (non-commercial); cite Livingstone & Russo (2018). See its README.md.
    """
    return Path(__file__).resolve().parent / "ravdess_sample"
