"""The layers of docs/architecture.md hold: imports flow cli -> steps -> generator families -> building blocks.

Read from the source with ast (every import, at module level or inside a function), so a new
upward import fails here rather than in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import emodiff

PACKAGE = Path(emodiff.__file__).resolve().parent
STEPS = {"prepare", "embed", "train", "sample", "augment", "classify", "classify_job", "compare", "quality", "report",
         "study"}
LEVEL = {"cli": 3, "steps": 2, "families": 1, "blocks": 0}


def layer(module: str) -> str:
    """The layer of ``emodiff.a.b``: cli, steps, families or blocks."""
    top = module.split(".")[1] if module.count(".") else ""
    if top in ("cli", "render", "__main__"):
        return "cli"
    if top in STEPS:
        return "steps"
    if top == "generators":
        return "families"
    return "blocks"


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("emodiff")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = module.split(".")[: -node.level if path.name != "__init__.py" else len(module.split("."))]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            if name.startswith("emodiff"):
                found.add(name)
                found |= {f"{name}.{a.name}" for a in node.names}  # `from emodiff import store`
    return found


def test_every_import_flows_downwards():
    known = modules()
    upward = []
    for module, path in known.items():
        own = LEVEL[layer(module)]
        for target in imports(path, module):
            if target not in known or target == "emodiff":
                continue
            if LEVEL[layer(target)] > own:
                upward.append(f"{module} ({layer(module)}) imports {target} ({layer(target)})")
    assert not upward, "\n".join(upward)


def test_the_layer_map_knows_the_package():
    known = modules()
    assert layer("emodiff.cli") == "cli" and layer("emodiff.study") == "steps"
    assert layer("emodiff.generators.diffusion") == "families" and layer("emodiff.records") == "blocks"
    assert {m for m in known if layer(m) == "steps"} >= {f"emodiff.{s}" for s in STEPS}
