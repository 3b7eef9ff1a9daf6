"""What the store holds -> the report's sections (blocks.py), each only when its data is there.

A part of the pipeline that has not run yet gets one sentence naming the command that makes it.
Numbers are formatted here and nowhere else: UAR, WA and macro-F1 as % with two decimals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from emodiff.emotions import EMOTIONS
from emodiff.records import Synthetic
from emodiff.report.blocks import AudioGrid, Block, Document, Figure, Gallery, Paragraph, Section, Table
from emodiff.report.collect import DirectInfo, ResultInfo, StoreContents, uar_by_key
from emodiff.report.comparisons import direct_table, holm_family, in_table, tested
from emodiff.report.examples import MIN_FRAMES
from emodiff.report.experiments import LEAKY, ResultTable, experiments, setting_sentence, trained_on
from emodiff.report.provenance import provenance_blocks
from emodiff.report.quality_table import quality_blocks
from emodiff.ser.paired import PairedComparison, format_p

LEAK_NOTE = (f"{LEAKY}: the generator of the synthetic set this result used was trained on speakers that the result "
             "tests or validates on (`classify --allow-leak`), so its numbers overstate what synthetic data brings.")
TABLE_NAMES = {"within": "Table 2", "cross": "Table 3", "adaptation": "Adaptation"}
MAX_SPEAKERS_SHOWN = 8


@dataclass
class MelFigure:
    src: str
    set_name: str  # "" for real segments only
    corpus: str  # the real corpus beside it, "" if none


@dataclass
class PairedFigures:
    """A table's forest plot against its baseline, and the per-emotion recall of the baseline and the best row."""

    forest: str
    recall: str  # "" when a confusion matrix is missing
    baseline: str
    best: str


@dataclass
class Artifacts:
    """Files build_report drew for the page, by relative path, and why some could not be made."""

    confusion: dict[str, str] = field(default_factory=dict)  # result name -> PNG
    mels: list[MelFigure] = field(default_factory=list)
    adaptation: dict[str, str] = field(default_factory=dict)  # experiment title -> PNG
    paired: dict[str, PairedFigures] = field(default_factory=dict)  # experiment title -> its paired figures
    audio: AudioGrid | None = None
    audio_note: str = ""  # why there is no audio; with audio, the vocoder's warnings (a fallback)
    facts: list[tuple[str, str]] = field(default_factory=list)


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def mean_std(pair: tuple[float, float] | None) -> str:
    return "—" if pair is None else f"{pct(pair[0])} ± {pct(pair[1])}"


def document(c: StoreContents, art: Artifacts, versions: dict[str, str]) -> Document:
    exps = experiments(c.results)
    sections = [
        Section("summary", "Store summary", summary_blocks(c)),
        Section("quality", "Table 1: quality of the synthetic sets", quality_blocks(c)),
        Section("classification", "Tables 2 and 3: emotion recognition (UAR)", results_blocks(c, exps)),
        Section("paired", "Figure 5: does it help? Paired differences against real data alone",
                paired_blocks(exps, art, c.directs)),
        Section("mels", "Figure 2: real and synthetic mels", mel_blocks(c, art)),
        Section("confusion", "Figure 3: confusion matrices", confusion_blocks(c, art)),
        Section("adaptation", "Figure 4: adaptation to a target corpus", adaptation_blocks(exps, art)),
        Section("audio", "Audio examples", audio_blocks(c, art)),
        Section("provenance", "Provenance", provenance_blocks(c, versions)),
    ]
    return Document(title="emodiff report", facts=art.facts, sections=sections)


def missing_notes(doc: Document) -> list[str]:
    """The page's sentences about parts not run yet and problems (for the command line), each once."""
    return list(dict.fromkeys(b.text for s in doc.sections for b in s.blocks
                              if isinstance(b, Paragraph) and b.tone != "plain"))


# --- 1. summary -------------------------------------------------------------------------------


def summary_blocks(c: StoreContents) -> list[Block]:
    out: list[Block] = [Paragraph(f"Everything below is read from `{c.path}`.")]
    out += [Paragraph(p, "warning") for p in c.problems]
    if c.corpora:
        rows = [[s.name, str(s.utterances), str(s.speakers), f"{s.hours:.2f}",
                 *(str(s.per_emotion[e][0]) for e in EMOTIONS), str(s.segments)] for s in c.corpora]
        out.append(Table("Corpora (`emodiff prepare`): utterances per emotion", ["corpus", "utterances", "speakers",
                         "hours", *EMOTIONS, "segments"], rows, [False] + [True] * (4 + len(EMOTIONS))))
    else:
        out.append(Paragraph("No prepared corpus: run `emodiff prepare CORPUS ROOT`.", "missing"))
    if c.embeddings:
        rows = [[e.model, e.corpus, str(e.rows), str(e.dim or ""), e.template] for e in c.embeddings]
        out.append(Table("Text embeddings (`emodiff embed`)", ["model", "corpus", "utterances", "dim", "template"],
                         rows, [False, False, True, True, False]))
    else:
        out.append(Paragraph("No text embeddings: run `emodiff embed`.", "missing"))
    if c.runs:
        rows = [[r.name, "" if r.step is None else str(r.step), ", ".join(r.corpora),
                 _speakers(r.training_speakers), ", ".join(f"{k} {v:.4g}" for k, v in r.final.items() if _is_loss(k)),
                 r.sha256[:12]] for r in c.runs]
        out.append(Table("Training runs (`emodiff train`, `/runs`)", ["run", "steps", "corpora", "training speakers",
                         "final losses", "checkpoint sha256"], rows, [False, True, False, False, False, False],
                         notes=["Full checkpoint hashes are under Provenance."]))
    else:
        out.append(Paragraph("No training run: run `emodiff train --recipe demo`.", "missing"))
    if c.synthetic:
        rows = [_synthetic_row(s) for s in c.synthetic]
        out.append(Table("Synthetic sets (`emodiff sample`): segments per emotion", ["set", "segments", *EMOTIONS,
                         "generator", "drawn with", "seed", "run", "generator's training speakers"], rows,
                         [False] + [True] * (1 + len(EMOTIONS)) + [False, False, True, False, False]))
    else:
        out.append(Paragraph("No synthetic set: run `emodiff sample --n N` after `emodiff train`.", "missing"))
    if c.results:
        rows = [[r.name + (f" {LEAKY}" if r.leaky else ""), r.train_corpus, r.corpus, r.protocol or "?",
                 trained_on(r), mean_std(r.uar), f"{r.folds_per_repeat} × {r.repeats}"] for r in c.results]
        out.append(Table("Results (`emodiff classify`, `/results`)", ["result", "train corpus", "test corpus",
                         "protocol", "trained on", "UAR %", "folds × repeats"], rows,
                         [False] * 5 + [True, True], leaky_rows={i for i, r in enumerate(c.results) if r.leaky}))
    else:
        out.append(Paragraph("No classification results: run `emodiff classify --loso`.", "missing"))
    return out


def _is_loss(metric: str) -> bool:
    """The loss terms among a run's final_* attrs (not lr, grad_norm or speed)."""
    return any(part in metric for part in ("loss", "mse", "vb"))


def _synthetic_row(s: Synthetic) -> list[str]:
    p = s.provenance
    return [s.name, str(len(s.emotion)), *map(str, s.per_emotion), p.generator, p.drawn_with,
            "" if p.seed is None else str(p.seed), p.run, _speakers(p.training_speakers)]


def _speakers(speakers: Sequence[str]) -> str:
    if len(speakers) <= MAX_SPEAKERS_SHOWN:
        return ", ".join(speakers)
    return f"{len(speakers)}: " + ", ".join(speakers[:MAX_SPEAKERS_SHOWN]) + ", ..."


# --- 3. tables 2 and 3 (2, Table 1, is in quality_table.py) ---------------------------------


def results_blocks(c: StoreContents, exps: list[ResultTable]) -> list[Block]:
    if not exps:
        return [Paragraph("No classification results: run `emodiff classify --loso`.", "missing"),
                Paragraph("The paper's rows are `emodiff classify --loso` with `--train-on real`, `--train-on "
                          "synthetic`, `--train-on real+synthetic` and `--augment synthetic+mixup`.")]
    corpora = {x.name: x for x in c.corpora}
    out: list[Block] = []
    for e in exps:
        family = holm_family(e, c.directs)
        out.append(experiment_table(e, corpora, family))
        if in_table(e, c.directs):
            out.append(direct_table(e, c.directs, family[1], f"{TABLE_NAMES[e.kind]}b — direct comparisons, {e.title}"))
    kinds = {e.kind for e in exps}
    if "within" not in kinds:
        out.append(Paragraph("No within-corpus results (Table 2): run `emodiff classify --loso`.", "missing"))
    if "cross" not in kinds:
        out.append(Paragraph("No cross-corpus results (Table 3): run `emodiff classify --train SOURCE --test TARGET` "
                             "(the paper's: `--train iemocap --test msp-improv`).", "missing"))
    return out


def experiment_table(e: ResultTable, corpora: dict, family: tuple[dict[str, float], dict[str, float]]) -> Table:
    """Table 2 or 3 for ``e``; ``family`` is :func:`holm_family`'s Holm-adjusted p of its comparisons."""
    adapt = e.kind == "adaptation"
    has_wa = any(r.wa is not None for r in e.results)
    has_f1 = any(r.f1 is not None for r in e.results)
    paired = any(r.paired is not None for r in e.results)
    adjusted, n_tested = family[0], tested(family)
    direct = len(family[1])
    compared = ["vs baseline: pp [95 % CI]", "p, corrected t", "p, Holm", "p, permutation"]
    headers = ["trained on", "result", *(["target %"] if adapt else []), "UAR %", *(["WA %"] if has_wa else []),
               *(["macro-F1 %"] if has_f1 else []), *(compared if paired else []),
               "folds × repeats", *([] if adapt else ["paper UAR %"])]
    rows = []
    for r in e.results:
        row = [trained_on(r) + (f" {LEAKY}" if r.leaky else ""), r.name]
        if adapt:
            row.append("" if r.target_fraction is None else f"{100 * r.target_fraction:g}")
        row.append(mean_std(r.uar))
        row += [mean_std(r.wa)] if has_wa else []
        row += [mean_std(r.f1)] if has_f1 else []
        if paired:
            c = r.paired
            row += (["—"] * len(compared) if c is None else
                    [c.interval_text(), format_p(c.corrected.p), format_p(adjusted[r.name]),
                     ("≈ " if c.permutation.method == "monte carlo" else "") + format_p(c.permutation.p)])
        row.append(f"{r.folds_per_repeat} × {r.repeats}")
        if not adapt:
            paper = e.paper_uar(r)
            row.append("—" if paper is None else f"{paper:.2f}" if e.matches_paper else f"ref. {paper:.2f}")
        rows.append(row)
    numeric = [False, False] + [True] * (len(headers) - 2)
    notes = ["UAR, WA and macro-F1: mean ± sample std over folds (and repeats), per utterance; from the result's "
             "`uar_mean`/`uar_std` attrs (WA and macro-F1 from `wa_*`/`f1_*`, else from the folds' attrs).",
             setting_sentence(e, corpora)]
    if not adapt:
        notes.append("paper UAR %: the paper's number for the same training set in the same experiment."
                     if e.matches_paper else
                     "paper UAR % (ref.): the paper's IEMOCAP figure for the same training set, shown as a reference "
                     "only: a different corpus and protocol, not a like-for-like comparison.")
    if paired:
        bases = sorted({r.paired.baseline for r in e.results if r.paired is not None})
        notes.append(f"vs baseline: the UAR difference to {', '.join(bases)} with the fold as the unit: each fold's "
                     "difference averaged over its seeds, then the mean over folds in percentage points with the "
                     "95 % interval of the corrected resampled t-test (Nadeau & Bengio 2003); p, corrected t: its "
                     "two-sided p; p, Holm: that p adjusted by Holm's step-down method over the "
                     f"{n_tested} tested comparison{'s' if n_tested != 1 else ''} of this table"
                     + (f" (these and the {direct} direct comparison{'s' if direct != 1 else ''} in the table "
                        "below)" if direct else "") + "; p, permutation: "
                     "the exact sign-flip permutation p over folds (≈: Monte Carlo, above 20 folds). Per fold and "
                     "seed: the fold × seed tables under Figure 5.")
    if any(r.leaky for r in e.results):
        notes.append(LEAK_NOTE)
    caption = f"{TABLE_NAMES[e.kind]} — UAR %, {e.title}"
    return Table(caption, headers, rows, numeric, leaky_rows={i for i, r in enumerate(e.results) if r.leaky},
                 notes=notes)


# --- figures --------------------------------------------------------------------------------


def mel_blocks(c: StoreContents, art: Artifacts) -> list[Block]:
    out: list[Block] = []
    for m in art.mels:
        if m.set_name:
            beside = f"above it a real segment of {m.corpus} " if m.corpus else ""
            cap = (f"Figure 2 — synthetic set `{m.set_name}`: the first segment drawn for each emotion, {beside}"
                   f"(per emotion, the first utterance with a segment of at least {MIN_FRAMES} valid frames, else the "
                   "longest segment; padding trimmed). "
                   "Colour: the store's scaled log-mel, -1 = silence.")
        else:
            cap = (f"Figure 2 — real segments of {m.corpus} per emotion (the first utterance with a segment of at "
                   f"least {MIN_FRAMES} valid frames, else the longest segment; padding trimmed). Colour: the "
                   "store's scaled log-mel, -1 = silence.")
        out.append(Figure(m.src, cap, f"mel spectrograms per emotion, {m.set_name or m.corpus}"))
    if not c.synthetic:
        out.append(Paragraph("No synthetic mels to show beside the real ones: run `emodiff sample --n N`.",
                             "missing"))
    if not art.mels and not c.corpora:
        out.append(Paragraph("No mels at all: run `emodiff prepare CORPUS ROOT`.", "missing"))
    return out


def confusion_blocks(c: StoreContents, art: Artifacts) -> list[Block]:
    out: list[Block] = []
    shown: list[Figure] = []
    for r in c.results:
        src = art.confusion.get(r.name)
        if src is None:
            continue
        conf = r.confusion
        total = int(conf.sum()) if conf is not None else 0
        leak = f" {LEAKY}." if r.leaky else ""
        shown.append(Figure(src, f"Figure 3 — `{r.name}` ({trained_on(r)}, {r.train_corpus} -> {r.corpus}, "
                            f"{r.protocol}): summed over {r.folds_per_repeat} folds × {r.repeats} repeats "
                            f"({total} test utterances).{leak}", f"confusion matrix of {r.name}"))
    if shown:
        out += [Paragraph("Rows are the true class, columns the predicted one; each row is normalised to its true "
                          "class (its diagonal cell is that class's recall), and each cell shows the share and the "
                          "count of test utterances."), Gallery(shown)]
    if not c.results:
        out.append(Paragraph("No confusion matrices: run `emodiff classify --loso`.", "missing"))
    elif not art.confusion:
        out.append(Paragraph("The results hold no per-fold `confusion` datasets to draw.", "warning"))
    return out


def paired_blocks(exps: list[ResultTable], art: Artifacts, directs: list[DirectInfo]) -> list[Block]:
    compared = [e for e in exps if any(r.paired is not None for r in e.results)]
    if not compared:
        return [Paragraph("No paired comparisons: run each experiment with `emodiff classify ... --repeats 3 "
                          "--compare-with NAME` (NAME: the real-only result on the same folds), or `emodiff study`, "
                          "which does so for every experiment.", "missing")]
    out: list[Block] = [Paragraph(
        "Each experiment against its baseline on the same folds and seeds, the fold as the unit: a fold's seeds "
        "share its test speakers, training data and generator, so its UAR differences are averaged over the seeds "
        "first. The forest plot shows the mean of these fold differences in percentage points with the 95 % "
        "interval of the corrected resampled t-test (its variance widened by n_test/n_train for the training data "
        "the folds share; Nadeau & Bengio 2003, Bouckaert & Frank 2004), its two-sided p and that p adjusted by "
        "Holm over the table's comparisons. An interval that crosses 0 shows no clear difference. The tables "
        "below give every fold and seed.")]
    results = {r.name: r for e in exps for r in e.results}
    for e in compared:
        f = art.paired.get(e.title)
        if f is not None:
            out.append(Figure(f.forest, f"Figure 5 — {e.title}: paired UAR difference to `{f.baseline}` per fold "
                              "(seeds averaged), with its corrected-t interval, p and Holm-adjusted p.",
                              f"forest plot of paired differences, {e.title}"))
            if f.recall:
                out.append(Figure(f.recall, f"Figure 5b — {e.title}: per-emotion recall (the diagonal of the summed, "
                                  f"row-normalised confusion) of {f.baseline} and of the experiment with the largest "
                                  f"mean difference, {f.best}.", f"per-emotion recall, {e.title}"))
        out += [fold_seed_table(r, r.paired, results.get(r.paired.baseline)) for r in e.results
                if r.paired is not None]
        out += [fold_seed_table(results[d.experiment], d.paired, results[d.baseline])  # type: ignore[arg-type]
                for d in in_table(e, directs)]
    return out


def fold_seed_table(r: ResultInfo, c: PairedComparison, base: ResultInfo | None) -> Table:
    """UAR % per fold (rows) and seed (columns) of result ``r``, each fold's mean over seeds, the baseline's,
    and their difference d_j from comparison ``c`` (the unit of its tests); a last row of means over folds."""
    uar = uar_by_key(r)
    base_uar = uar_by_key(base) if base is not None else {}
    folds = list(dict.fromkeys(fold for fold, _ in sorted(uar)))
    seeds = sorted({seed for _, seed in uar})
    diffs = dict(c.fold_diffs)

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known and len(known) == len(values) else None

    def cell(x: float | None) -> str:
        return "—" if x is None else pct(x)

    def diff(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:+.2f}".replace("-", "−")

    grid = [[uar.get((fold, s)) for s in seeds] for fold in folds]
    exp_means = [mean(row) for row in grid]
    base_means = [mean([base_uar.get((fold, s)) for s in seeds]) for fold in folds]
    rows = [[fold, *map(cell, row), cell(m), cell(b), diff(diffs.get(fold))]
            for fold, row, m, b in zip(folds, grid, exp_means, base_means, strict=True)]
    rows.append(["mean over folds", *(cell(mean([row[k] for row in grid])) for k in range(len(seeds))),
                 cell(mean(exp_means)), cell(mean(base_means)), diff(mean([diffs.get(fold) for fold in folds]))])
    headers = ["fold", *(f"seed {s}" for s in seeds), "mean over seeds", f"{c.baseline}: mean over seeds",
               "difference pp"]
    notes = [f"UAR % of `{r.name}` per fold and seed; the difference is its mean over seeds minus `{c.baseline}`'s "
             f"in the same fold, in percentage points: the {c.n_folds} observations of the tests. Folds better / "
             f"worse / equal: {c.wins} / {c.losses} / {c.ties}. {c.text()}."]
    if c.n_folds > 1:
        low, high = (f"{100 * x:+.1f}".replace("-", "−") for x in c.bootstrap)
        notes.append(f"Corrected t = {c.corrected.t:.2f} with {c.corrected.df} df and n_test/n_train = "
                     f"{c.test_train_ratio:.3g}; the percentile bootstrap over folds (each resampled whole, with its "
                     f"seeds) gives [{low}, {high}] pp; permutation p: {c.permutation.method}, "
                     f"{c.permutation.patterns} sign patterns.")
    if not diffs:
        notes.append(f"`{c.baseline}` is not in the store: the comparison is the one stored with the result.")
    leak = f" {LEAKY}" if r.leaky else ""
    return Table(f"Fold × seed UAR % — `{r.name}` ({trained_on(r)}) against `{c.baseline}`{leak}", headers, rows,
                 [False] + [True] * (len(headers) - 1), notes=notes)


def adaptation_blocks(exps: list[ResultTable], art: Artifacts) -> list[Block]:
    adapt = [e for e in exps if e.kind == "adaptation"]
    if not adapt:
        return [Paragraph("No adaptation results: run `emodiff classify --train SOURCE --test TARGET "
                          "--target-fraction 0,0.1,0.3,0.5` (one result per fraction).", "missing")]
    out: list[Block] = []
    for e in adapt:
        leak = f" Lines marked {LEAKY} include leaky results." if any(r.leaky for r in e.results) else ""
        out.append(Figure(art.adaptation[e.title], f"Figure 4 — {e.title}: UAR % (mean ± std over folds and "
                          f"repeats) against the share of {e.test_corpus} added to the training data, one line per "
                          f"training set.{leak}", f"adaptation curve {e.title}"))
    return out


def audio_blocks(c: StoreContents, art: Artifacts) -> list[Block]:
    if art.audio is None:
        return [Paragraph(art.audio_note or "No audio.", "missing" if not c.corpora else "warning")]
    fallback: list[Block] = [Paragraph(art.audio_note, "warning")] if art.audio_note else []
    same = Paragraph("Real clips are stored segments (padding trimmed) vocoded the same way as the synthetic ones, "
                     "so the two differ only in where the mel came from.")
    return [*fallback, art.audio, same]
