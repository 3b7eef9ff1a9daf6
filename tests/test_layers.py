"""The layers of docs/architecture.md hold: imports flow cli -> steps -> generator families -> building blocks.
And records/ is the only place that spells the store's schema: no module outside it (and the low-level
store, side_file, write_lock) makes a group or a dataset or writes an attr, and the CLI never reads the
store itself (it renders what a step returns).

Read from the source with ast (every import, at module level or inside a function), so a new
upward import, or a writer put back in a step, fails here rather than in a reviewer's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

import emodiff

PACKAGE = Path(emodiff.__file__).resolve().parent
STEPS = {"prepare", "embed", "train", "sample", "augment", "classify", "classify_job", "compare", "quality", "report",
         "study", "study_graph", "inspect"}
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


# ---------------------------------------------------------------------------------------------- who writes the store

# Modules that may write HDF5 directly: the records (one writer per group kind) and the low-level store.
WRITERS = ("emodiff.records", "emodiff.store", "emodiff.side_file", "emodiff.write_lock")
MAKERS = {"create_group", "create_dataset", "require_group", "require_dataset", "write_direct_chunk", "write_table"}
ATTR_WRITES = {"update", "create", "modify", "clear", "pop", "popitem", "setdefault"}


def _attrs_of(node: ast.AST) -> bool:
    """Whether ``node`` is ``<something>.attrs``."""
    return isinstance(node, ast.Attribute) and node.attr == "attrs"


def store_writes(path: Path) -> list[str]:
    """Every place in ``path`` that makes a group or dataset or writes an HDF5 attr, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in MAKERS:
                found.append(f"{node.lineno}: {name}(...)")
            elif isinstance(func, ast.Attribute) and name in ATTR_WRITES and _attrs_of(func.value):
                found.append(f"{node.lineno}: .attrs.{name}(...)")
        targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else
                   [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            if isinstance(target, ast.Subscript) and _attrs_of(target.value):
                found.append(f"{node.lineno}: .attrs[...] {'deleted' if isinstance(node, ast.Delete) else 'set'}")
    return sorted(found, key=lambda where: int(where.split(":")[0]))  # ast.walk goes breadth first


def test_only_records_and_the_store_write_groups_datasets_and_attrs():
    outside = []
    for module, path in modules().items():
        if module.startswith(WRITERS):
            continue
        outside += [f"{module} line {where}" for where in store_writes(path)]
    assert not outside, "write through the group kind's writer in emodiff/records/:\n" + "\n".join(outside)


def test_the_writer_check_sees_what_a_step_would_write(tmp_path: Path):
    step = tmp_path / "step.py"
    step.write_text("def f(g, data, table):\n    g.create_dataset('x', data=data)\n    s = g.create_group('y')\n"
                    "    st.write_table(s, table)\n    g.attrs['uar'] = 0.5\n    g['x'].attrs.update(n=1)\n"
                    "    del g.attrs['uar']\n")
    assert [w.split(": ", 1)[1] for w in store_writes(step)] == [
        "create_dataset(...)", "create_group(...)", "write_table(...)", ".attrs[...] set", ".attrs.update(...)",
        ".attrs[...] deleted"]
    step.write_text("def f(stats, table):\n    return stats.attrs.get('created'), dict(table)\n")
    assert store_writes(step) == []


# ---------------------------------------------------------------------------------------------- the CLI reads no store

STORE_READERS = {"open_store", "reading", "read_data", "read_table", "attrs_dict", "visible", "has_group", "group_at",
                 "children", "corpus_stats", "File"}
CLI_MAY_TAKE_FROM_STORE = {"resolve_store"}  # where the store is, never what it holds


def store_reads(path: Path) -> list[str]:
    """Every place in ``path`` that imports h5py, a record or a store reader, or names a store reader."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "h5py" or a.name.startswith(("emodiff.records", "emodiff.store"))]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            taken = {a.name for a in node.names}
            if (name.split(".")[0] == "h5py" or name.startswith("emodiff.records")
                    or (name == "emodiff" and taken & {"store", "records", "summary"})
                    or (name == "emodiff.store" and taken - CLI_MAY_TAKE_FROM_STORE)
                    or taken & STORE_READERS):
                found.append(f"{node.lineno}: from {name} import {', '.join(sorted(taken))}")
        elif isinstance(node, ast.Attribute) and node.attr in STORE_READERS - {"File"}:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in STORE_READERS - {"File"}:
            found.append(f"{node.lineno}: {node.id}")
    return sorted(found, key=lambda where: int(where.split(":")[0]))  # ast.walk goes breadth first


def test_the_cli_never_opens_or_reads_the_store():
    reads = []
    for module, path in modules().items():
        if layer(module) == "cli":
            reads += [f"{module} line {where}" for where in store_reads(path)]
    assert not reads, "read the store in a step (e.g. emodiff/inspect.py) and render what it returns:\n" + "\n".join(
        reads)


def test_the_reader_check_sees_a_cli_that_opens_the_store(tmp_path: Path):
    cli = tmp_path / "cli.py"
    cli.write_text("import h5py\nfrom emodiff.store import open_store, resolve_store\nfrom emodiff.records import Run\n"
                   "def f(path):\n    with st.open_store(path) as f:\n        return f\n")
    assert [w.split(": ", 1)[1] for w in store_reads(cli)] == [
        "import h5py", "from emodiff.store import open_store, resolve_store", "from emodiff.records import Run",
        ".open_store"]
    cli.write_text("from emodiff.store import resolve_store\nfrom emodiff.inspect import inspect_store\n")
    assert store_reads(cli) == []
