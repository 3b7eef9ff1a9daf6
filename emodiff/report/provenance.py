"""The report's provenance section: the software that made it, when and by what each group was made
(config hash, seeds), the checkpoints' sha256 and every group's config."""

from __future__ import annotations

import json
from typing import Any

from emodiff.records import Meta
from emodiff.report.blocks import Block, Details, Table
from emodiff.report.collect import ResultInfo, StoreContents
from emodiff.report.experiments import LEAKY


def provenance_blocks(c: StoreContents, versions: dict[str, str]) -> list[Block]:
    out: list[Block] = [Table("Software that made this report", ["package", "version"],
                              [[k, v] for k, v in versions.items()], [False, False],
                              notes=[f"The store was created by emodiff {c.root_version or '?'}."])]
    metas = _all_meta(c)
    if not metas:
        return out
    rows, leaky = [], set()
    for i, (m, seeds) in enumerate(metas):
        is_leaky = any(r.leaky and r.meta is m for r in c.results)
        if is_leaky:
            leaky.add(i)
        created = m.created.replace("T", " ").replace("+00:00", " UTC")
        rows.append([m.path + (f" {LEAKY}" if is_leaky else ""), created, m.version, m.config_hash[:12], seeds])
    out.append(Table("Groups of the store: when and by what they were made",
                     ["group", "created", "emodiff", "config sha256", "seeds"], rows, [False] * 5, leaky_rows=leaky))
    ckpts = [[f"/runs/{r.name}", r.checkpoint, r.sha256] for r in c.runs]
    ckpts += [[f"/synthetic/{s.name}", s.provenance.checkpoint, s.provenance.checkpoint_sha256] for s in c.synthetic]
    if ckpts:
        out.append(Table("Checkpoints and their sha256", ["group", "checkpoint", "sha256"], ckpts,
                         [False] * 3))
    out += [Details(f"{m.path}: config (recipe and settings that made it)", json.dumps(m.config, indent=2,
                    sort_keys=True)) for m, _ in metas if m.config]
    return out


def _all_meta(c: StoreContents) -> list[tuple[Meta, str]]:
    out: list[tuple[Meta, str]] = [(x.meta, "") for x in c.corpora if x.meta is not None]
    out += [(x.meta, "") for x in c.embeddings]
    out += [(x.meta, _config_seeds(x.meta.config)) for x in c.runs]
    out += [(x.meta, "" if x.provenance.seed is None else f"seed={x.provenance.seed}") for x in c.synthetic]
    out += [(x.meta, "") for x in c.quality]
    out += [(r.meta, _result_seeds(r)) for r in c.results]
    return out


def _config_seeds(config: Any, prefix: str = "") -> str:
    """Every `seed` key in a config, as path=value."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "seed" and not isinstance(v, (dict, list)):
                    found.append(f"{path}{k}={v}")
                else:
                    walk(v, f"{path}{k}.")

    walk(config, prefix)
    return ", ".join(found)


def _result_seeds(r: ResultInfo) -> str:
    folds = sorted({f.seed for f in r.folds if f.seed is not None})
    parts = [_config_seeds(r.meta.config)] + ([f"fold seeds {', '.join(map(str, folds))}"] if folds else [])
    return ", ".join(p for p in parts if p)
