"""Rich tables for the command line: what a step did and what a store holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emodiff import store as st
from emodiff.emotions import EMOTIONS
from emodiff.summary import CorpusStats, corpus_stats

if TYPE_CHECKING:  # only for annotations: keeps `emodiff inspect` from importing torch
    from emodiff.classify import ClassifyResult
    from emodiff.embed import EmbedResult
    from emodiff.prepare import PrepareResult
    from emodiff.quality import QualityResult
    from emodiff.sample import SampleResult
    from emodiff.train import TrainResult

MAX_SKIPPED_ROWS = 20


def emotion_table(stats: CorpusStats) -> Table:
    table = Table(title=f"/corpora/{stats.name}: {stats.utterances} utterances, {stats.segments} segments, "
                        f"{stats.speakers} speakers, {stats.hours:.2f} h")
    table.add_column("emotion")
    table.add_column("utterances", justify="right")
    table.add_column("segments", justify="right")
    for name, (n_utt, n_seg) in stats.per_emotion.items():
        table.add_row(name, str(n_utt), str(n_seg))
    table.add_row("[bold]total", f"[bold]{stats.utterances}", f"[bold]{stats.segments}")
    return table


def speaker_table(stats: CorpusStats) -> Table:
    table = Table(title=f"/corpora/{stats.name} per speaker")
    for col, just in (("speaker", "left"), ("gender", "left"), ("utterances", "right"), ("segments", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for spk, (gender, n_utt, n_seg) in stats.per_speaker.items():
        table.add_row(spk, gender, str(n_utt), str(n_seg))
    return table


def skipped_table(stats: CorpusStats) -> Table:
    table = Table(title=f"skipped files: {len(stats.skipped)}")
    table.add_column("file")
    table.add_column("reason")
    for path, reason in stats.skipped[:MAX_SKIPPED_ROWS]:
        table.add_row(escape(path), escape(reason))
    if len(stats.skipped) > MAX_SKIPPED_ROWS:
        table.add_row("...", f"{len(stats.skipped) - MAX_SKIPPED_ROWS} more in /corpora/{stats.name}/skipped")
    return table


def prepare_summary(console: Console, store: Path, result: PrepareResult) -> None:
    stats = result.stats
    console.print(emotion_table(stats))
    if stats.excluded:
        console.print("left out (not in the four classes): " +
                      ", ".join(f"{k} {v}" for k, v in sorted(stats.excluded.items())))
    if stats.skipped:
        console.print(skipped_table(stats))
    speed = result.audio_seconds / result.seconds if result.seconds else 0.0
    console.print(f"wrote /corpora/{stats.name} to {store} in {result.seconds:.1f} s ({speed:.0f}x real time)")


def embed_summary(console: Console, store: Path, results: Sequence[EmbedResult]) -> None:
    table = Table(title=f"embeddings in {store}")
    for col in ("corpus", "model", "utterances", "dim", "tokens (L)", "truncated", "status"):
        table.add_column(col, overflow="fold")
    for r in results:
        if not r.already_there:
            status = f"written in {r.seconds:.1f} s"
        elif r.stale:
            status = "[yellow]already there, made with other settings or an older corpus; --overwrite redoes it"
        else:
            status = "already there"
        model = r.group.split("/")[2]  # /embeddings/<model>/<corpus>
        table.add_row(r.corpus, model, str(r.utterances), str(r.dim), str(r.max_tokens), str(r.truncated), status)
    console.print(table)


def train_summary(console: Console, result: TrainResult) -> None:
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.last.items())
    console.print(f"trained {result.run} to step {result.step} on {len(result.training_speakers)} speakers; "
                  f"checkpoint {result.checkpoint}")
    if metrics:
        console.print(f"last logged: {metrics}")


def sample_summary(console: Console, store: Path, result: SampleResult) -> None:
    if result.already_there:
        console.print(f"{store} already holds {result.group} ({result.n} segments, same settings and checkpoint); "
                      "pass --overwrite to draw it again")
        return
    resumed = f", resumed at {result.resumed_from}" if result.resumed_from else ""
    console.print(f"wrote {result.n} segments to {result.group} in {store} in {result.seconds:.1f} s{resumed} "
                  f"(from {result.checkpoint})")


def classify_summary(console: Console, result: ClassifyResult) -> None:
    leaky = " [red]LEAKY: a generator saw test or validation speakers[/red]" if result.leaky else ""
    seeds = sorted({r.seed for r in result.folds})
    spread = f" +/- {100 * result.uar[1]:.2f} over folds" if len(result.folds) > len(seeds) else ""
    if len(seeds) > 1:
        spread += f" +/- {100 * result.uar_seed_std:.2f} over {len(seeds)} seeds"
    table = Table(title=f"{result.group} ({result.protocol}): UAR {100 * result.uar[0]:.2f} %{spread}{leaky}")
    columns = ["fold", *(["seed"] if len(seeds) > 1 else []), "UAR %", "WA %", "macro-F1 %", "best epoch",
               "val UAR %", *(["synthetic"] if any(r.synthetic for r in result.folds) else [])]
    for col in columns:
        table.add_column(col, justify="left" if col in ("fold", "synthetic") else "right")
    for r in result.folds:
        row = [r.name, *([str(r.seed)] if len(seeds) > 1 else []), f"{100 * r.uar:.2f}", f"{100 * r.wa:.2f}",
               f"{100 * r.f1:.2f}", str(r.best_epoch), f"{100 * r.val_uar:.2f}"]
        table.add_row(*row, *([r.synthetic] if "synthetic" in columns else []))
    console.print(table)
    console.print(f"{len(result.folds)} fold runs in {result.seconds:.0f} s")


def quality_summary(console: Console, results: Sequence[QualityResult]) -> None:
    """One table per assessed set: per-emotion rows, then the held-out (TSTR) line."""
    def num(x: float) -> str:
        return "—" if x != x else f"{x:.3g}"

    for r in results:
        table = Table(title=f"{r.group} against {r.corpus} ({r.seconds:.0f} s)")
        for col in ("emotion", "consistency", "recall, real", "FD", "FD real-real", "MAD", "silence synth / real"):
            table.add_column(col, justify="left" if col == "emotion" else "right", overflow="fold")
        for q in r.rows:
            table.add_row(q.emotion, num(q.consistency), num(q.recall_real), num(q.frechet), num(q.frechet_real),
                          num(q.mad), f"{num(q.silence_synthetic)} / {num(q.silence_real)}")
        console.print(table)
        h = r.held_out
        held = ", ".join(h.speakers) if h.speakers else "none (the generator saw every speaker)"
        console.print(f"TSTR UAR {num(h.tstr_uar)} vs TRTR {num(h.trtr_uar)} on held-out speakers {escape(held)}; "
                      f"two-sample AUC {num(h.two_sample_auc)} (0.5: indistinguishable from real)",
                      highlight=False, soft_wrap=True)


def store_overview(console: Console, store: Path) -> None:
    """Print every group of the store; corpora in detail."""
    with st.open_store(store) as f:
        console.print(groups_table(f, store))
        if "corpora" in f:
            for name in st.visible(f["corpora"]):
                stats = corpus_stats(f["corpora"][name])
                console.print(emotion_table(stats))
                console.print(speaker_table(stats))
                console.print(attrs_table(stats))
                if stats.skipped:
                    console.print(skipped_table(stats))
        if "synthetic" in f:
            console.print(synthetic_table(f["synthetic"]))


def synthetic_table(section: h5py.Group) -> Table:
    """One row per synthetic set: size, segments per emotion, how it was drawn."""
    table = Table(title="synthetic sets")
    for col in ("set", "segments", *EMOTIONS, "run", "sampler", "steps", "seed"):
        table.add_column(col)
    for name in st.visible(section):
        g = section[name]
        if "emotion" not in g:
            continue
        counts = np.bincount(g["emotion"][()].astype(int), minlength=len(EMOTIONS))
        a = st.attrs_dict(g)
        table.add_row(name, str(len(g["emotion"])), *map(str, counts), str(a.get("run", "")),
                      str(a.get("sampler", "")), str(a.get("steps", "")), str(a.get("seed", "")))
    return table


KEY_ATTRS = ("root", "created", "emodiff_version", "config_hash", "sample_rate", "n_mels", "segment_frames",
             "log_min", "log_max", "dtype", "calm", "n_skipped", "model", "template", "dim")


def attrs_table(stats: CorpusStats) -> Table:
    table = Table(title=f"/corpora/{stats.name} attrs")
    table.add_column("attr")
    table.add_column("value")
    for key in KEY_ATTRS:
        if key in stats.attrs:
            table.add_row(key, escape(str(stats.attrs[key])))
    if stats.excluded:
        table.add_row("excluded", escape(json.dumps(stats.excluded)))
    return table


def groups_table(f: h5py.File, store: Path) -> Table:
    """One row per leaf group under the top-level sections (corpora, embeddings, ...)."""
    table = Table(title=f"{store}")
    table.add_column("group", overflow="fold")
    table.add_column("holds", min_width=14)
    table.add_column("created")
    table.add_column("config hash", no_wrap=True)
    for section in st.visible(f):
        for path, group in _leaf_groups(f[section]):
            created = str(group.attrs.get("created", ""))[:16].replace("T", " ")
            table.add_row(path, _holds(group), created, str(group.attrs.get("config_hash", ""))[:8])
    return table


def _leaf_groups(section: h5py.Group) -> list[tuple[str, h5py.Group]]:
    # A leaf is a group written by one step: it carries the standard config_hash attr.
    out: list[tuple[str, h5py.Group]] = []
    for key in st.visible(section):
        item = section[key]
        if not isinstance(item, h5py.Group):
            continue
        if "config_hash" in item.attrs:
            out.append((item.name, item))
        else:
            out.extend(_leaf_groups(item))
    return out


def _holds(group: h5py.Group) -> str:
    if "utterances" in group and "id" in group["utterances"]:
        return f"{len(group['utterances/id'])} utt, {len(group['segments/utt'])} seg"
    for key in ("pooled", "mel"):
        if key in group:
            return f"{key} " + "x".join(str(n) for n in group[key].shape)
    return ", ".join(group.keys())
