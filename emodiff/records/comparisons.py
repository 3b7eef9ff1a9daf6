"""`/comparisons/<name>`: one classify result against another on the same folds and seeds (docs/store.md).

``classify --compare-with`` stores an experiment's comparison with its baseline (``real``) on the
result itself; a direct comparison between two experiments (``real+speed+synthetic`` against
``real+speed``) has a group of its own, written by ``emodiff compare`` and the study's
``study.comparisons``. Its attrs are the two result names and the ``paired_*`` attrs of
:meth:`emodiff.ser.paired.PairedComparison.as_attrs`; its config names both results and their
config hashes, so rerunning either makes the comparison stale (a new hash), never silently wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from emodiff.errors import EmodiffError
from emodiff.records.base import InSection, Meta, as_str, file_name, group_at
from emodiff.store import attrs_dict, write_group


@dataclass(frozen=True)
class Comparison(InSection):
    """``/comparisons/<name>``: ``experiment`` against ``baseline`` (both /results names), the fold as the unit."""

    SECTION = "comparisons"

    name: str
    meta: Meta
    attrs: dict[str, Any]
    experiment: str = ""
    baseline: str = ""

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Comparison:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{file_name(f)}: no /comparisons/{name}")
        a = attrs_dict(g)
        return cls(name=name, meta=Meta.of(g), attrs=a, experiment=as_str(a, "experiment"),
                   baseline=as_str(a, "baseline"))

    @property
    def paired_attrs(self) -> dict[str, Any]:
        """The ``paired_*`` attrs, as :meth:`~emodiff.ser.paired.PairedComparison.from_attrs` reads them."""
        return {k: v for k, v in self.attrs.items() if k.startswith("paired_")}

    @classmethod
    def write(cls, store: Path, name: str, *, experiment: str, baseline: str, paired: Mapping[str, Any],
              config: Mapping[str, Any], overwrite: bool = False) -> None:
        """Write ``/comparisons/<name>`` with the two names and the ``paired_*`` attrs."""
        with write_group(store, cls.path(name), config=config, overwrite=overwrite,
                         what=f"comparison {name}") as g:
            g.attrs.update({"experiment": experiment, "baseline": baseline, **paired})
