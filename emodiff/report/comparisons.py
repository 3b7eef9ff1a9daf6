"""Direct comparisons (/comparisons) in the report, and the Holm family every table's comparisons share.

A results table compares each experiment with its baseline (``real``); the store's /comparisons
groups compare two experiments directly (``real+speed+synthetic`` against ``real+speed``). Both
kinds are tests of the same study, so Holm's adjustment runs over all of them together: every
comparison against a baseline in the table, and every direct comparison whose two results are
rows of that table.
"""

from __future__ import annotations

import math

from emodiff.report.blocks import Table
from emodiff.report.collect import DirectInfo
from emodiff.report.experiments import ResultTable, trained_on
from emodiff.ser.inference import holm
from emodiff.ser.paired import format_p


def in_table(e: ResultTable, directs: list[DirectInfo]) -> list[DirectInfo]:
    """The direct comparisons between two rows of table ``e``, with a comparison to show."""
    names = {r.name for r in e.results}
    return [d for d in directs if d.paired is not None and {d.experiment, d.baseline} <= names]


def holm_family(e: ResultTable, directs: list[DirectInfo]) -> tuple[dict[str, float], dict[str, float]]:
    """Holm over the table's comparisons: each result's against its baseline, then each direct comparison
    between two of its rows; returns (result name -> adjusted p, comparison name -> adjusted p)."""
    compared = [r for r in e.results if r.paired is not None]
    mine = in_table(e, directs)
    ps = [r.paired.corrected.p for r in compared] + [d.paired.corrected.p for d in mine]  # type: ignore[union-attr]
    adjusted = [float(p) for p in holm(ps)] if ps else []
    k = len(compared)
    return ({r.name: p for r, p in zip(compared, adjusted[:k], strict=True)},
            {d.name: p for d, p in zip(mine, adjusted[k:], strict=True)})


def tested(adjusted: tuple[dict[str, float], dict[str, float]]) -> int:
    """How many of the family's comparisons have a test (a p that is not NaN)."""
    return sum(not math.isnan(p) for group in adjusted for p in group.values())


def direct_table(e: ResultTable, directs: list[DirectInfo], adjusted: dict[str, float], caption: str) -> Table:
    """One row per direct comparison between two rows of ``e``: the mean fold difference with its corrected-t
    interval, its p, the Holm p over the table's whole family, the permutation p and the folds won and lost."""
    results = {r.name: r for r in e.results}
    rows = []
    for d in in_table(e, directs):
        c = d.paired
        assert c is not None
        rows.append([f"{trained_on(results[d.experiment])} ({d.experiment})",
                     f"{trained_on(results[d.baseline])} ({d.baseline})", c.interval_text(),
                     format_p(c.corrected.p), format_p(adjusted[d.name]),
                     ("≈ " if c.permutation.method == "monte carlo" else "") + format_p(c.permutation.p),
                     f"{c.wins} / {c.losses} / {c.ties}", f"{c.n_folds} × {c.n_seeds}"])
    headers = ["experiment", "against", "difference: pp [95 % CI]", "p, corrected t", "p, Holm", "p, permutation",
               "folds better / worse / equal", "folds × seeds"]
    notes = ["Each row: the experiment's UAR minus the other's on the same folds and seeds, each fold's difference "
             "averaged over its seeds, as in the table above; p, Holm: adjusted over this table's whole family, its "
             "comparisons against the baseline and these together. Stored in /comparisons (`emodiff compare`, or "
             "`study.comparisons`)."]
    return Table(caption, headers, rows, [False, False] + [True] * 6, notes=notes)
