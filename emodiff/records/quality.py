"""`/quality/<set>`: the quality metrics of a synthetic set (docs/store.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


def _quality_table(g: h5py.Group) -> h5py.Group:
    """The group holding the per-emotion columns: ``g`` itself or a subgroup (``per_emotion``)."""
    if isinstance(g.get("emotion"), h5py.Dataset):
        return g
    for key in ("per_emotion", *children(g, "/")):
        if isinstance(g.get(key), h5py.Group) and isinstance(g[key].get("emotion"), h5py.Dataset):
            return g[key]
    raise KeyError(f"{g.name} holds no table with an emotion column")
