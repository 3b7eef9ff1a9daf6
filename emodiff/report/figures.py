"""The report's PNG figures, drawn with matplotlib's object API (no pyplot: no display, no global backend state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from emodiff.emotions import EMOTIONS

DPI = 110


@dataclass
class Curve:
    """One line of the adaptation figure: UAR (fractions, %) against the target fraction."""

    label: str
    fraction: list[float]
    mean: list[float]
    std: list[float]


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the recall of each true class); empty rows stay 0."""
    sums = counts.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(counts, sums, out=np.zeros(counts.shape, np.float64), where=sums > 0)


def confusion_png(path: Path, counts: np.ndarray, title: str) -> None:
    """Row-normalised confusion matrix [4, 4] (rows true, columns predicted), each cell with % and count."""
    share = row_normalised(counts)
    fig = Figure(figsize=(4.2, 4.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(share, vmin=0.0, vmax=1.0, cmap="Blues")
    for i in range(share.shape[0]):
        for j in range(share.shape[1]):
            ax.text(j, i, f"{100 * share[i, j]:.0f}%\n({counts[i, j]})", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.55 else "#1f2933")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.savefig(path)


def mels_png(path: Path, rows: list[tuple[str, list[np.ndarray | None]]], title: str) -> None:
    """A grid of mels: one row per source, one column per emotion; ``None`` leaves a cell empty."""
    fig = Figure(figsize=(3.1 * len(EMOTIONS) + 0.8, 2.3 * len(rows) + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(rows), len(EMOTIONS), squeeze=False)
    im = None
    for r, (label, mels) in enumerate(rows):
        for c, mel in enumerate(mels):
            ax = axes[r][c]
            if mel is None:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="#52606d")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                im = ax.imshow(mel, origin="lower", aspect="auto", vmin=-1.0, vmax=1.0, cmap="magma",
                               interpolation="nearest")
                ax.set_xlabel("frame", fontsize=8)
            if r == 0:
                ax.set_title(EMOTIONS[c], fontsize=11)
            if c == 0:
                ax.set_ylabel(f"{label}\nmel bin", fontsize=9)
            ax.tick_params(labelsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.7, label="scaled log-mel")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, bbox_inches="tight")


def adaptation_png(path: Path, curves: list[Curve], title: str) -> None:
    """UAR (%) mean +/- std against the fraction of the target corpus added to training, one line per curve."""
    fig = Figure(figsize=(6.4, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for c in curves:
        x = 100 * np.asarray(c.fraction)
        ax.errorbar(x, c.mean, yerr=c.std, marker="o", capsize=3, label=c.label)
    ax.axhline(100 / len(EMOTIONS), color="#9aa5b1", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("target corpus in training (%)")
    ax.set_ylabel("UAR (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path)


@dataclass
class Interval:
    """One row of the forest plot: an experiment's mean fold-level UAR difference against the baseline, its
    corrected-t interval (fractions; NaN with one fold), p and Holm-adjusted p, and its folds and seeds."""

    label: str
    mean: float
    low: float
    high: float
    p: float
    p_holm: float
    folds: int
    seeds: int


def _p(p: float) -> str:
    return "—" if np.isnan(p) else f"{p:.2g}"


def forest_png(path: Path, rows: list[Interval], baseline: str, level: float = 0.95) -> None:
    """Each experiment's fold-level difference in UAR against ``baseline`` (percentage points) with its
    corrected-t interval, one row per experiment, the zero line marked: an interval that crosses it shows
    no clear difference. A row of one fold has no interval: its point only."""
    fig = Figure(figsize=(7.0, 0.55 * len(rows) + 1.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows, strict=True):
        tested = not (np.isnan(r.low) or np.isnan(r.high))
        clear = tested and (r.low > 0 or r.high < 0)
        colour = ("#2f855a" if r.mean > 0 else "#c53030") if clear else "#52606d"
        if tested:
            ax.plot([100 * r.low, 100 * r.high], [yi, yi], color=colour, linewidth=2)
            note = (f"{100 * r.mean:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}], p = {_p(r.p)}, "
                    f"Holm {_p(r.p_holm)}")
        else:
            note = f"{100 * r.mean:+.1f}, one fold: no test"
        ax.plot([100 * r.mean], [yi], marker="s", color=colour, markersize=7)
        ax.annotate(note, (1.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8)
    ax.axvline(0.0, color="#9aa5b1", linestyle="--", linewidth=1)
    ax.set_yticks(y, [f"{r.label} ({r.folds} folds × {r.seeds} seeds)" for r in rows])
    ax.set_xlabel(f"UAR difference to {baseline} (pp), mean over folds of the seed means;\n"
                  f"{100 * level:g} % corrected resampled t interval")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Paired difference to {baseline}, the fold as the unit", fontsize=10)
    fig.savefig(path, bbox_inches="tight")


def recall_png(path: Path, recalls: list[tuple[str, np.ndarray]], title: str) -> None:
    """Per-emotion recall (%) side by side, one bar group per emotion and one bar per (label, recall [4])."""
    fig = Figure(figsize=(6.4, 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(recalls))
    x = np.arange(len(EMOTIONS))
    for k, (label, recall) in enumerate(recalls):
        bars = ax.bar(x + (k - (len(recalls) - 1) / 2) * width, 100 * np.asarray(recall), width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.axhline(100 / len(EMOTIONS), color="#9aa5b1", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, EMOTIONS)
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.savefig(path)
