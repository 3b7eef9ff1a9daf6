"""`/quality/<set>`: the quality metrics of a synthetic set (docs/store.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emodiff.errors import EmodiffError
from emodiff.records.base import InSection, Meta, as_float, as_list, as_str, children, file_name, group_at
from emodiff.store import (
    attrs_dict,
    read_data,
    read_table,
    write_group,
    write_table,
)


@dataclass(frozen=True)
class Quality(InSection):
    """``/quality/<set>``: the per-emotion table and the set-level attrs."""

    SECTION = "quality"

    name: str
    meta: Meta
    attrs: dict[str, Any]
    table: dict[str, np.ndarray]  # per_emotion columns
    corpus: str = ""
    synthetic: str = ""
    classifier: str = ""  # JSON of the yardstick classifier's settings, as stored
    held_out_speakers: tuple[str, ...] = ()
    # Per-bin vectors beside the table (frame_change_ratio, ...: docs/store.md); empty in older stores.
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Quality:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{file_name(f)}: no /quality/{name}; run `emodiff quality --synthetic {name}` first")
        a, table = attrs_dict(g), _quality_table(g)
        # (an old layout keeps the table's columns in the group itself: those are no arrays)
        arrays = {} if table == g else {k: read_data(v) for k, v in g.items() if isinstance(v, h5py.Dataset)}
        return cls(name=name, meta=Meta.of(g), attrs=a, table=read_table(table), corpus=as_str(a, "corpus"),
                   synthetic=as_str(a, "synthetic"), classifier=as_str(a, "classifier"),
                   held_out_speakers=as_list(a, "held_out_speakers"), arrays=arrays)

    @cached_property
    def emotions(self) -> list[str]:
        """The table's ``emotion`` column: one row per emotion (and any rows the set adds)."""
        return [str(r) for r in self.table["emotion"]]

    @cached_property
    def numeric(self) -> dict[str, np.ndarray]:
        """The table's numeric columns but ``emotion``, whatever the table holds."""
        return {k: v for k, v in self.table.items() if k != "emotion" and v.dtype.kind in "iuf" and v.ndim == 1}

    @cached_property
    def text(self) -> dict[str, list[str]]:
        """The table's other columns with something in them (e.g. ``note``), as str."""
        return {k: [str(x) for x in v] for k, v in self.table.items()
                if k != "emotion" and k not in self.numeric and any(str(x) for x in v)}

    @cached_property
    def summary(self) -> dict[str, float]:
        """The numeric set-level attrs (``mad_mean``, ``tstr_uar``, the whole set's ``density``, ...); not the
        yardstick's ``seed`` nor the standard attrs."""
        return {k: float(v) for k, v in self.attrs.items()
                if k not in _NOT_SUMMARY and isinstance(v, (int, float)) and not isinstance(v, bool)}

    def number(self, key: str) -> float | None:
        """A set-level number (``mad_mean``, ``tstr_uar``, ...); None when missing or NaN."""
        return as_float(self.attrs, key)

    @classmethod
    def write(cls, store: Path, name: str, *, table: Mapping[str, Sequence[Any] | np.ndarray],
              attrs: Mapping[str, Any], config: Mapping[str, Any], overwrite: bool = False,
              arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Write ``/quality/<name>``: the ``per_emotion`` table, the set-level attrs and ``arrays`` as datasets."""
        with write_group(store, cls.path(name), config=config, overwrite=overwrite, what=f"quality {name}") as g:
            write_table(g.create_group("per_emotion"), table)
            for key, values in (arrays or {}).items():
                g.create_dataset(key, data=values)
            g.attrs.update(attrs)


_NOT_SUMMARY = {"seed", "config_hash", "created", "emodiff_version", "config"}


def _quality_table(g: h5py.Group) -> h5py.Group:
    """The group holding the per-emotion columns: ``g`` itself or a subgroup (``per_emotion``)."""
    if isinstance(g.get("emotion"), h5py.Dataset):
        return g
    for key in ("per_emotion", *children(g, "/")):
        if isinstance(g.get(key), h5py.Group) and isinstance(g[key].get("emotion"), h5py.Dataset):
            return g[key]
    raise KeyError(f"{g.name} holds no table with an emotion column")
