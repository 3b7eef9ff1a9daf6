"""``emodiff inspect``: what a store holds, read into plain records for the CLI's tables.

Every group is listed, even one whose attrs or tables no longer read (a damaged file): its row says so,
and a corpus or synthetic set that cannot be read is named by its error and left out of the detail; the
mels themselves are never read. The CLI renders :class:`StoreOverview` (emodiff/cli/render.py) and never
opens the store itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from emodiff import records
from emodiff import store as st
from emodiff.emotions import EMOTIONS
from emodiff.errors import EmodiffError
from emodiff.records import SyntheticAttrs
from emodiff.summary import CorpusStats, corpus_stats


@dataclass(frozen=True)
class GroupRow:
    """One group a step wrote (it carries the standard ``config_hash`` attr): what it holds, when and how made."""

    path: str
    holds: str = ""
    created: str = ""  # UTC, to the minute
    config_hash: str = ""  # its first 8 characters
    damaged: bool = False  # its attrs or tables could not be read


@dataclass(frozen=True)
class SyntheticRow:
    """One synthetic set: its size, segments per emotion, and how it was drawn."""

    name: str
    segments: int
    per_emotion: tuple[int, ...]  # EMOTIONS order (longer when the set holds ids beyond them)
    run: str
    generator: str
    drawn_with: str
    seed: int | None


@dataclass(frozen=True)
class Unreadable:
    """A part of the store that could not be read: the error's words, without the hint to run inspect."""

    message: str


@dataclass
class StoreOverview:
    """What ``inspect`` shows, in order: the groups, each corpus (or why it could not be read), the synthetic
    sets (None when the store has no /synthetic section) and the sets whose labels could not be read."""

    path: Path
    groups: list[GroupRow] = field(default_factory=list)
    corpora: list[CorpusStats | Unreadable] = field(default_factory=list)
    synthetic: list[SyntheticRow] | None = None
    unreadable_sets: list[Unreadable] = field(default_factory=list)


def inspect_store(store: Path) -> StoreOverview:
    """Read every group of ``store``; corpora in detail (EmodiffError when it is missing or not a store)."""
    with st.open_store(store) as f:
        out = StoreOverview(Path(store), groups=_groups(f))
        if "corpora" in f:
            for name in st.visible(f["corpora"]):
                try:
                    out.corpora.append(corpus_stats(f["corpora"][name]))
                except EmodiffError as err:  # a damaged dataset: say so and list the rest
                    out.corpora.append(_unreadable(err))
        if "synthetic" in f:
            out.synthetic = _synthetic(f["synthetic"], out.unreadable_sets)
    return out


def prepared_corpora(store: Path, note: Callable[[str], object]) -> list[str]:
    """The corpus groups `emodiff prepare` wrote; each other group under /corpora is told to ``note``
    (:func:`emodiff.records.prepared_corpora`). EmodiffError when there is none."""
    return records.prepared_corpora(store, note)


def chosen_corpus(store: Path, corpus: str | None, prepared: list[str]) -> str:
    """The corpus a command works on: ``--corpus``, else the store's only prepared one (``prepared``, from
    :func:`prepared_corpora`); EmodiffError naming them when the store holds several."""
    if corpus is None and len(prepared) > 1:
        raise EmodiffError(f"{store}: holds {', '.join(prepared)}; choose one with --corpus")
    return corpus or prepared[0]


def _unreadable(err: EmodiffError) -> Unreadable:
    return Unreadable(str(err).removesuffix(f"; {st.INSPECT_HINT}"))


def _synthetic(section: h5py.Group, unreadable: list[Unreadable]) -> list[SyntheticRow]:
    """One row per synthetic set with an emotion dataset; a set whose labels cannot be read (a damaged
    file) is left out and named in ``unreadable``."""
    rows = []
    for name in st.visible(section):
        g = section[name]
        if "emotion" not in g:
            continue
        try:
            emotion = st.read_data(g["emotion"])
        except EmodiffError as err:
            unreadable.append(_unreadable(err))
            continue
        counts = np.bincount(emotion.astype(int), minlength=len(EMOTIONS))
        p = SyntheticAttrs.of(st.attrs_dict(g))
        rows.append(SyntheticRow(name, len(g["emotion"]), tuple(int(c) for c in counts), p.run, p.generator,
                                 p.drawn_with, p.seed))
    return rows


def _groups(f: h5py.File) -> list[GroupRow]:
    """One row per leaf group under the top-level sections (corpora, embeddings, ...)."""
    rows = []
    for section in st.visible(f):
        for path, group in _leaf_groups(f[section]):
            try:
                with st.reading(group):
                    created = str(group.attrs.get("created", ""))[:16].replace("T", " ")
                    rows.append(GroupRow(path, _holds(group), created, str(group.attrs.get("config_hash", ""))[:8]))
            except EmodiffError:  # listed all the same
                rows.append(GroupRow(path, damaged=True))
    return rows


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
    if "paired_mean_diff" in group.attrs and "experiment" in group.attrs:  # /comparisons/<name>
        a = group.attrs
        return (f"{100 * float(a['paired_mean_diff']):+.1f} pp, p {float(a['paired_p_t']):.2g} "
                f"({int(a['paired_n_folds'])} folds)")
    return ", ".join(group.keys())
