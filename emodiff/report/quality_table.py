"""Table 1: the quality of each synthetic set (``/quality/<set>``), per emotion and for the whole set.

Each of the fidelity/diversity metrics of issue 20 is shown in one cell beside its real value,
"synthetic / real"; sets assessed before those metrics existed show a dash there and say how to add them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from emodiff.records import Quality
from emodiff.report.blocks import Block, Paragraph, Table
from emodiff.report.collect import StoreContents
from emodiff.report.experiments import classifier_words

QUALITY_HEADERS = {  # /quality table columns -> headers; others are shown under their own name
    "mad": "MAD", "frechet": "Fréchet distance", "consistency": "emotion consistency",
    "diversity_synthetic": "diversity, synthetic", "diversity_real": "diversity, real",
    "n_real": "n real", "n_synthetic": "n synthetic", "recall_real": "recall, real",
    "silence_real": "silence share, real", "silence_synthetic": "silence share, synthetic",
}
# (header, synthetic column, real column, bin columns or None): one "synthetic / real" cell each
PAIRED = (
    ("density, synthetic / real-vs-real", "density", "density_real", None),
    ("coverage, synthetic / real-vs-real", "coverage", "coverage_real", None),
    ("silence fraction, synthetic / real", "silence_fraction_synthetic", "silence_fraction_real", None),
    ("frame change ratio, bins 0-14, synthetic / real-vs-real", "frame_change_low", "frame_change_low_real", None),
    ("frame change ratio, worst bin, synthetic / real-vs-real", "frame_change_worst", "frame_change_worst_real",
     ("frame_change_worst_bin", "frame_change_worst_real_bin")),
)
PAIRED_KEYS = {key for _, *keys, bins in PAIRED for key in (*keys, *(bins or ()))}
HELD_OUT_AUC = ("two_sample_auc_held", "two_sample_auc_floor")  # quality --held-out-auc, study.held_out_auc
WHOLE_SET = "all emotions"


def number(x: float) -> str:
    """A quality metric: integers as integers, else four significant figures; NaN (undefined) as a dash."""
    if math.isnan(x):
        return "—"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e9 else f"{x:.4g}"


def quality_blocks(c: StoreContents) -> list[Block]:
    out: list[Block] = [_table(q) for q in c.quality]
    assessed = {q.name for q in c.quality}
    lacking = [s.name for s in c.synthetic if s.name not in assessed]
    if not c.synthetic and not c.quality:
        out.append(Paragraph("No quality metrics: they compare a synthetic set with real data, so run "
                             "`emodiff sample --n N` first, then `emodiff report --quality`.", "missing"))
    elif lacking:
        out.append(Paragraph(f"No quality metrics for {', '.join(lacking)}: run `emodiff report --quality` "
                             "(docs/quality.md).", "missing"))
    return out


def _table(q: Quality) -> Table:
    known = list(QUALITY_HEADERS)
    # HDF5 lists datasets by name; show the known metrics in their documented order, then the rest
    keys = sorted((k for k in q.numeric if k not in PAIRED_KEYS),
                  key=lambda k: (known.index(k) if k in known else len(known), k))
    headers = ["emotion", *(QUALITY_HEADERS.get(k, k) for k in keys), *(p[0] for p in PAIRED), *q.text]
    rows = [[e, *(number(float(q.numeric[k][i])) for k in keys),
             *_paired(lambda key, i=i: float(q.numeric[key][i]) if key in q.numeric else math.nan),
             *(v[i] for v in q.text.values())] for i, e in enumerate(q.emotions)]
    measured = any(key in q.summary for key in PAIRED_KEYS)
    if measured:  # the whole set's values are attrs; the other metrics are per emotion only
        rows.append([WHOLE_SET, *([""] * len(keys)), *_paired(lambda key: q.summary.get(key, math.nan)),
                     *([""] * len(q.text))])
    shown = {k: v for k, v in q.summary.items() if k not in PAIRED_KEYS and k not in HELD_OUT_AUC and k != "nearest_k"}
    notes = [f"Compared with real segments of {q.corpus}." if q.corpus else "",
             f"Yardstick classifier (for Fréchet distance, consistency, diversity, density, coverage): "
             f"{_classifier_text(q.classifier)}." if q.classifier else "",
             "Set-level values: " + ", ".join(f"{k} {number(v)}" for k, v in shown.items()) + "." if shown else "",
             _held_out_auc_note(q),
             _paired_note(q, measured),
             "— marks a metric that is undefined for that emotion. How each metric is computed: "
             "docs/quality.md in the emodiff repository."]
    return Table(f"Table 1 — quality of `{q.name}` per emotion (`{q.meta.path}`)", headers, rows,
                 [False] + [True] * (len(keys) + len(PAIRED)) + [False] * len(q.text),
                 notes=[n for n in notes if n])


def _paired(get: Callable[[str], float]) -> list[str]:
    """The PAIRED cells of one row; ``get(column)`` gives its number, NaN when the store lacks it."""
    cells = []
    for _, synthetic, real, bins in PAIRED:
        a, b = get(synthetic), get(real)
        if math.isnan(a) and math.isnan(b):
            cells.append("—")
            continue
        where = [get(k) for k in bins] if bins else [math.nan, math.nan]
        cells.append(f"{_with_bin(a, where[0])} / {_with_bin(b, where[1])}")
    return cells


def _with_bin(value: float, bin_: float) -> str:
    return number(value) if math.isnan(value) or math.isnan(bin_) or bin_ < 0 else f"{number(value)} (bin {int(bin_)})"


def _held_out_auc_note(q: Quality) -> str:
    """The two-sample AUC against the held-out speakers beside its floor, when measured (docs/quality.md)."""
    held, floor = (q.summary.get(k, math.nan) for k in HELD_OUT_AUC)
    if math.isnan(held) and math.isnan(floor):
        return ""
    return (f"Against the speakers the generator never saw: two-sample AUC {number(held)}, beside the floor that the "
            f"change of speaker alone sets, {number(floor)} (its own speakers' real segments against theirs).")


def _paired_note(q: Quality, measured: bool) -> str:
    if not measured and not any(key in q.numeric for key in PAIRED_KEYS):
        return (f"Density, coverage, silence fraction and frame change were not measured when `{q.name}` was "
                f"assessed: `emodiff quality --synthetic {q.name} --overwrite` adds them.")
    k = q.summary.get("nearest_k")
    neighbours = "the k nearest neighbours" if k is None else f"k = {number(k)} nearest neighbours"
    return ("Paired cells: the synthetic set's value, then the real one: real-vs-real (one half of the held-out "
            "speakers against the other; — with fewer than two) for density, coverage and frame change, the "
            "reference speakers' own for the silence fraction. Density and coverage use "
            f"{neighbours}; a frame change ratio of 1 matches real speech. The `{WHOLE_SET}` row pools every "
            "emotion.")


def _classifier_text(stored: str) -> str:
    """The `classifier` attr (JSON of its settings) in words; as stored when it is not such JSON."""
    try:
        settings = json.loads(stored)
    except json.JSONDecodeError:
        return stored
    return classifier_words(settings) if isinstance(settings, dict) else stored
