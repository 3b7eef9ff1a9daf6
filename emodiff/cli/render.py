"""Rich tables for the command line: what a step did and what a store holds.

Two rules for everything printed here. Text that comes from the user or the store (paths, corpus,
speaker, set and run names, reasons) goes into a table as a plain :class:`rich.text.Text` (or is
escaped in a message line), so neither rich markup (``[bold]``) nor emoji codes (``:abc:``) in it
are interpreted. And no column truncates: every column folds an overlong value onto the next
line, so a path or id survives an 80-column terminal or a log file whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from emodiff.emotions import EMOTIONS
from emodiff.inspect import Unreadable
from emodiff.summary import CorpusStats

if TYPE_CHECKING:  # only for annotations: keeps `emodiff inspect` from importing torch
    from emodiff.classify import ClassifyResult
    from emodiff.embed import EmbedResult
    from emodiff.inspect import StoreOverview, SyntheticRow
    from emodiff.prepare import PrepareResult
    from emodiff.quality import QualityResult
    from emodiff.sample import SampleResult
    from emodiff.study import StudyPlan
    from emodiff.train import TrainResult

MAX_SKIPPED_ROWS = 20


def _plain(value: object) -> Text:
    """User or store text as a table cell or title: no markup, no emoji codes, shown as it is."""
    return Text(str(value))


def _table(title: str | Text, columns: Sequence[str], right: Sequence[str] = (), **kwargs: object) -> Table:
    """A table whose columns fold (never truncate) overlong values; ``right`` columns are right-justified."""
    if isinstance(title, Text):
        title.stylize("table.title")  # what rich gives a markup title
    table = Table(title=title, **kwargs)  # type: ignore[arg-type]
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left", overflow="fold", no_wrap=False)
    return table


def emotion_table(stats: CorpusStats) -> Table:
    table = _table(_plain(f"/corpora/{stats.name}: {stats.utterances} utterances, {stats.segments} segments, "
                          f"{stats.speakers} speakers, {stats.hours:.2f} h"),
                   ("emotion", "utterances", "segments"), right=("utterances", "segments"))
    for name, (n_utt, n_seg) in stats.per_emotion.items():
        table.add_row(name, str(n_utt), str(n_seg))
    table.add_row("[bold]total", f"[bold]{stats.utterances}", f"[bold]{stats.segments}")
    return table


def speaker_table(stats: CorpusStats) -> Table:
    table = _table(_plain(f"/corpora/{stats.name} per speaker"), ("speaker", "gender", "utterances", "segments"),
                   right=("utterances", "segments"))
    for spk, (gender, n_utt, n_seg) in stats.per_speaker.items():
        table.add_row(_plain(spk), _plain(gender), str(n_utt), str(n_seg))
    return table


def skipped_table(stats: CorpusStats) -> Table:
    table = _table(f"skipped files: {len(stats.skipped)}", ("file", "reason"))
    for path, reason in stats.skipped[:MAX_SKIPPED_ROWS]:
        table.add_row(_plain(path), _plain(reason))
    if len(stats.skipped) > MAX_SKIPPED_ROWS:
        table.add_row("...", _plain(f"{len(stats.skipped) - MAX_SKIPPED_ROWS} more in /corpora/{stats.name}/skipped"))
    return table


def prepare_summary(console: Console, store: Path, result: PrepareResult) -> None:
    stats = result.stats
    console.print(emotion_table(stats))
    if stats.excluded:
        console.print("left out (not in the four classes): " +
                      ", ".join(f"{k} {v}" for k, v in sorted(stats.excluded.items())), markup=False, emoji=False)
    if stats.skipped:
        console.print(skipped_table(stats))
    speed = result.audio_seconds / result.seconds if result.seconds else 0.0
    console.print(f"wrote /corpora/{stats.name} to {store} in {result.seconds:.1f} s ({speed:.0f}x real time)",
                  markup=False, emoji=False)


def embed_summary(console: Console, store: Path, results: Sequence[EmbedResult]) -> None:
    table = _table(_plain(f"embeddings in {store}"),
                   ("corpus", "model", "utterances", "dim", "tokens (L)", "truncated", "status"))
    for r in results:
        if not r.already_there:
            status = f"written in {r.seconds:.1f} s"
        elif r.stale:
            status = "[yellow]already there, made with other settings or an older corpus; --overwrite redoes it"
        else:
            status = "already there"
        model = r.group.split("/")[2]  # /embeddings/<model>/<corpus>
        table.add_row(_plain(r.corpus), _plain(model), str(r.utterances), str(r.dim), str(r.max_tokens),
                      str(r.truncated), status)
    console.print(table)


def train_summary(console: Console, result: TrainResult) -> None:
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.last.items())
    console.print(f"trained {result.run} to step {result.step} on {len(result.training_speakers)} speakers; "
                  f"checkpoint {result.checkpoint}", markup=False, emoji=False)
    if metrics:
        console.print(f"last logged: {metrics}", markup=False, emoji=False)


def sample_summary(console: Console, store: Path, result: SampleResult) -> None:
    if result.already_there:
        console.print(f"{store} already holds {result.group} ({result.n} segments, same settings and checkpoint); "
                      "pass --overwrite to draw it again", markup=False, emoji=False)
        return
    resumed = f", resumed at {result.resumed_from}" if result.resumed_from else ""
    console.print(f"wrote {result.n} segments to {result.group} in {store} in {result.seconds:.1f} s{resumed} "
                  f"(from {result.checkpoint})", markup=False, emoji=False)


def classify_summary(console: Console, result: ClassifyResult) -> None:
    leaky = " [red]LEAKY: a generator saw test or validation speakers[/red]" if result.leaky else ""
    seeds = sorted({r.seed for r in result.folds})
    spread = f" +/- {100 * result.uar[1]:.2f} over folds" if len(result.folds) > len(seeds) else ""
    if len(seeds) > 1:
        spread += f" +/- {100 * result.uar_seed_std:.2f} over {len(seeds)} seeds"
    title = f"{escape(result.group)} ({escape(str(result.protocol))}): UAR {100 * result.uar[0]:.2f} %{spread}{leaky}"
    stats = any(r.l2 is not None for r in result.folds)  # classifier.kind stats: the L2 strength kept, not an epoch
    columns = ["fold", *(["seed"] if len(seeds) > 1 else []), "UAR %", "WA %", "macro-F1 %",
               "L2 kept" if stats else "best epoch", "val UAR %",
               *(["synthetic"] if any(r.synthetic for r in result.folds) else [])]
    table = _table(title, columns, right=[c for c in columns if c not in ("fold", "synthetic")])
    for r in result.folds:
        row = [_plain(r.name), *([str(r.seed)] if len(seeds) > 1 else []), f"{100 * r.uar:.2f}", f"{100 * r.wa:.2f}",
               f"{100 * r.f1:.2f}", f"{r.l2:g}" if r.l2 is not None else str(r.best_epoch), f"{100 * r.val_uar:.2f}"]
        table.add_row(*row, *([_plain(r.synthetic)] if "synthetic" in columns else []))
    console.print(table)
    console.print(f"{len(result.folds)} fold runs in {result.seconds:.0f} s")
    if result.comparison is not None:
        console.print(_plain(f"UAR against {result.comparison.baseline}: {result.comparison.text()}"))


def quality_summary(console: Console, results: Sequence[QualityResult]) -> None:
    """One table per assessed set: per-emotion rows, then the held-out (TSTR) line."""
    def num(x: float) -> str:
        return "—" if x != x else f"{x:.3g}"

    for r in results:
        columns = ("emotion", "consistency", "recall, real", "FD", "FD real-real", "MAD", "silence synth / real")
        table = _table(_plain(f"{r.group} against {r.corpus} ({r.seconds:.0f} s)"), columns, right=columns[1:])
        for q in r.rows:
            table.add_row(_plain(q.emotion), num(q.consistency), num(q.recall_real), num(q.frechet),
                          num(q.frechet_real), num(q.mad), f"{num(q.silence_synthetic)} / {num(q.silence_real)}")
        console.print(table)
        h = r.held_out
        held = ", ".join(h.speakers) if h.speakers else "none (the generator saw every speaker)"
        console.print(f"TSTR UAR {num(h.tstr_uar)} vs TRTR {num(h.trtr_uar)} on held-out speakers {escape(held)}; "
                      f"two-sample AUC {num(h.two_sample_auc)} (0.5: indistinguishable from real)",
                      highlight=False, soft_wrap=True, emoji=False)
        if h.two_sample_auc_held == h.two_sample_auc_held or h.two_sample_auc_floor == h.two_sample_auc_floor:
            console.print(f"two-sample AUC against the held-out speakers {num(h.two_sample_auc_held)}, floor "
                          f"{num(h.two_sample_auc_floor)} (the generator's speakers' real segments against theirs)",
                          highlight=False, soft_wrap=True, emoji=False)
        if r.overall is not None:  # the whole set's fidelity/diversity, each beside its real value
            o = r.overall
            console.print(f"all emotions, synthetic (real): density {num(o.density)} ({num(o.density_real)}), "
                          f"coverage {num(o.coverage)} ({num(o.coverage_real)}), silence fraction "
                          f"{num(o.silence_fraction_synthetic)} ({num(o.silence_fraction_real)}), frame change "
                          f"ratio bins 0-14 {num(o.frame_change_low)} ({num(o.frame_change_low_real)}), worst bin "
                          f"{o.frame_change_worst_bin} {num(o.frame_change_worst)} ({o.frame_change_worst_real_bin} "
                          f"{num(o.frame_change_worst_real)})", highlight=False, soft_wrap=True, emoji=False)


def store_overview(console: Console, overview: StoreOverview) -> None:
    """Print every group of the store; corpora in detail (what :func:`emodiff.inspect.inspect_store` read)."""
    console.print(groups_table(overview))
    for stats in overview.corpora:
        if isinstance(stats, Unreadable):  # a damaged dataset: say so and list the rest
            _damaged(console, stats)
            continue
        console.print(emotion_table(stats))
        console.print(speaker_table(stats))
        console.print(attrs_table(stats))
        if stats.skipped:
            console.print(skipped_table(stats))
    if overview.synthetic is not None:
        for unreadable in overview.unreadable_sets:
            _damaged(console, unreadable)
        console.print(synthetic_table(overview.synthetic))


def _damaged(console: Console, part: Unreadable) -> None:
    """One yellow line for a part of the store that could not be read (the rest is listed)."""
    console.print(Text(part.message + "; left out", style="yellow"))


def synthetic_table(rows: Sequence[SyntheticRow]) -> Table:
    """One row per synthetic set: size, segments per emotion, how it was drawn."""
    table = _table("synthetic sets", ("set", "segments", *EMOTIONS, "run", "generator", "drawn with", "seed"))
    for r in rows:
        table.add_row(_plain(r.name), str(r.segments), *map(str, r.per_emotion), _plain(r.run), _plain(r.generator),
                      _plain(r.drawn_with), _plain("" if r.seed is None else r.seed))
    return table


KEY_ATTRS = ("root", "created", "emodiff_version", "config_hash", "sample_rate", "n_mels", "segment_frames",
             "log_min", "log_max", "dtype", "calm", "n_skipped", "model", "template", "dim")


def attrs_table(stats: CorpusStats) -> Table:
    table = _table(_plain(f"/corpora/{stats.name} attrs"), ("attr", "value"))
    for key in KEY_ATTRS:
        if key in stats.attrs:
            table.add_row(key, _plain(stats.attrs[key]))
    if stats.excluded:
        table.add_row("excluded", _plain(json.dumps(stats.excluded)))
    return table


def groups_table(overview: StoreOverview) -> Table:
    """One row per leaf group under the top-level sections (corpora, embeddings, ...)."""
    table = _table(_plain(overview.path), ("group", "holds", "created", "config hash"))
    table.columns[1].min_width = 14
    for row in overview.groups:
        if row.damaged:  # listed all the same
            table.add_row(_plain(row.path), _plain("could not be read: the file is damaged"), "", "")
        else:
            table.add_row(_plain(row.path), _plain(row.holds), row.created, row.config_hash)
    return table


def study_plan(console: Console, plan: StudyPlan) -> None:
    """``study --dry-run``: the driver's steps, then every job with its needs and resources, done or to run."""
    state = {True: "done", False: "to run", None: ""}
    steps = _table("steps the driver runs", ("step", "state"))
    for label, done in plan.steps:
        steps.add_row(_plain(label), state[done])
    console.print(steps)
    if plan.note:
        console.print(escape(plan.note), highlight=False, soft_wrap=True)
        return
    jobs = _table(f"{len(plan.jobs)} jobs", ("job", "needs", "threads", "GPUs", "state"), right=("threads", "GPUs"))
    done = {job.id: bool(job.done and job.done()) for job in plan.jobs}
    for job in plan.jobs:
        jobs.add_row(_plain(job.id), _plain(", ".join(job.needs)), str(job.threads), str(job.gpus),
                     state[done[job.id]])
    console.print(jobs)
    folders = {job.folder.parent for job in plan.jobs}
    console.print(f"{sum(not d for d in done.values())} of {len(plan.jobs)} jobs to run; their folders (logs, and "
                  f"groups waiting for the store) are in {escape(', '.join(map(str, sorted(folders))))}",
                  highlight=False, soft_wrap=True)
