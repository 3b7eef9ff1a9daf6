"""`/runs/<name>`: a generator run (docs/store.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from emodiff.errors import EmodiffError
from emodiff.records.base import InSection, Meta, as_int, as_list, as_str, file_name, group_at
from emodiff.store import (
    attrs_dict,
    read_table,
    write_group,
    write_table,
)


@dataclass(frozen=True)
class Run(InSection):
    """``/runs/<name>``: where a finished training run's files are, and what it was trained on."""

    SECTION = "runs"

    name: str
    meta: Meta
    attrs: dict[str, Any]
    folder: str = ""  # the run folder (the `path` attr)
    checkpoint: str = ""  # the last checkpoint file
    sha256: str = ""  # its sha256 (the `checkpoint_sha256` attr)
    step: int | None = None
    corpora: tuple[str, ...] = ()
    exclude_speakers: tuple[str, ...] = ()
    embed_model: str = ""
    training_speakers: tuple[str, ...] = ()  # corpus:speaker
    final: dict[str, float] = field(default_factory=dict)  # final_<metric> without the prefix
    generator: str = "diffusion"  # the family that trained it (emodiff/generators/)

    @classmethod
    def read(cls, f: h5py.File, name: str) -> Run:
        g = group_at(f, cls.path(name))
        if g is None:
            raise EmodiffError(f"{file_name(f)}: no run {name!r}; runs: {', '.join(cls.names(f)) or 'none'}")
        a = attrs_dict(g)
        speakers = as_list(a, "training_speakers")
        if not speakers and isinstance(g.get("training_speakers"), h5py.Dataset):
            speakers = tuple(read_table(g)["training_speakers"].tolist())
        final = {k.removeprefix("final_"): float(v) for k, v in a.items()
                 if k.startswith("final_") and isinstance(v, (int, float))}
        return cls(name=name, meta=Meta.of(g), attrs=a, folder=as_str(a, "path"), checkpoint=as_str(a, "checkpoint"),
                   sha256=as_str(a, "checkpoint_sha256"), step=as_int(a, "step"), corpora=as_list(a, "corpora"),
                   exclude_speakers=as_list(a, "exclude_speakers"), embed_model=as_str(a, "embed_model"),
                   training_speakers=speakers, final=final, generator=as_str(a, "generator") or "diffusion")

    @classmethod
    def all(cls, f: h5py.File) -> list[Run]:
        return [cls.read(f, n) for n in cls.names(f)]

    @classmethod
    def latest(cls, f: h5py.File) -> Run | None:
        """The run recorded last (by its ``created`` attr); None when the store records none."""
        runs = cls.all(f)
        return max(runs, key=lambda r: r.meta.created) if runs else None

    @classmethod
    def of_checkpoint(cls, f: h5py.File, checkpoint: Path) -> Run | None:
        """The run whose last checkpoint is the file ``checkpoint`` (paths compared resolved), if any."""
        target = Path(checkpoint).resolve()
        return next((r for r in cls.all(f) if r.checkpoint and Path(r.checkpoint).resolve() == target), None)

    @classmethod
    def write(cls, store: Path, name: str, *, config: Mapping[str, Any], folder: Path, checkpoint: Path,
              sha256: str, step: int, corpora: Sequence[str], exclude_speakers: Sequence[str], embed_model: str,
              training_speakers: Sequence[str], final: Mapping[str, float], generator: str = "diffusion",
              what: str = "", wait_s: float = 0.0) -> None:
        """Write (or replace: a resumed run finishes again) ``/runs/<name>``, waiting up to ``wait_s`` for
        another writer of the store to finish."""
        with write_group(store, cls.path(name), config=config, overwrite=True, what=what or f"train {name}",
                         wait_s=wait_s) as g:
            write_table(g, {"training_speakers": list(training_speakers)})
            g.attrs.update(path=str(folder), checkpoint=str(checkpoint), checkpoint_sha256=sha256, step=step,
                           corpora=json.dumps(list(corpora)), exclude_speakers=json.dumps(list(exclude_speakers)),
                           embed_model=embed_model, training_speakers=json.dumps(list(training_speakers)),
                           generator=generator, **{f"final_{k}": v for k, v in final.items()})


