"""Listing groups, typed attrs, the standard attrs (Meta) and "already there?" checks (docs/store.md)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import h5py

from emodiff.errors import EmodiffError
from emodiff.store import (
    TMP_PREFIX,
    attrs_dict,
    config_hash,
    open_store,
    visible,
)

# ---------------------------------------------------------------------------------------------- listing


def group_at(f: h5py.File | h5py.Group, path: str) -> h5py.Group | None:
    """The complete group at ``path``; None when it is absent, in flight (``.tmp-*``) or not a group."""
    node: Any = f
    for part in [p for p in path.strip("/").split("/") if p]:
        if part.startswith(TMP_PREFIX) or not isinstance(node, h5py.Group) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, h5py.Group) else None


def children(f: h5py.File | h5py.Group, section: str) -> list[str]:
    """Names of the complete groups directly under ``section``, sorted (see the module docstring)."""
    g = group_at(f, section)
    return visible(g) if g is not None else []


def meta(f: h5py.File | h5py.Group, path: str) -> Meta | None:
    """The standard attrs of the complete group at ``path``; None when there is none."""
    g = group_at(f, path)
    return Meta.of(g) if g is not None else None


def made_from(corpus: Meta | None, recorded: str, created: str) -> bool:
    """Whether a group derived from a corpus (its embeddings, its offline copies) was made from the corpus now in the
    store: the corpus's ``created`` it recorded (``recorded``) is the corpus's; a group that did not record it must be
    younger (its own ``created``), as any made before a re-preparation is older. False without a corpus."""
    if corpus is None:
        return False
    return recorded == corpus.created if recorded else created >= corpus.created


def file_name(f: h5py.File | h5py.Group) -> str:
    return str(f.file.filename)


# ---------------------------------------------------------------------------------------------- names

NAME_MAX = 100  # characters in the name of a group a step writes (/synthetic/NAME, /results/NAME, /runs/NAME)
_NAME = re.compile(r"[A-Za-z0-9_+.:-]+")
NAME_RULE = f"1 to {NAME_MAX} ASCII letters, digits and - _ + . :, not starting with '.'"


def check_name(name: str, where: str = "--name") -> str:
    """``name`` when it may name a group a step writes (``/synthetic/NAME``, ``/results/NAME``, ``/runs/NAME``),
    else EmodiffError naming ``where`` (the flag, or where a default name came from) and the rule.

    One rule for every name, checked before any work: :data:`NAME_RULE`. A '/' would nest groups that no
    reader lists; '.' and '..' are no group; a leading '.' would hide the group among the store's in-flight
    ``.tmp-*`` ones. Experiment texts flow into default names only through these characters (``study-...``,
    ``real-synthetic-mixup``), and a ',' separates experiments, so no default name holds one. Names are
    checked where a group is written, not where one is read: a set named before the rule still reads.
    """
    if _NAME.fullmatch(name) is None or name.startswith(".") or len(name) > NAME_MAX:
        shown = repr(name) if len(name) <= 60 else f"{name[:40]!r}... ({len(name)} characters)"
        raise EmodiffError(f"{where} {shown}: expected a name of {NAME_RULE}")
    return name



class InSection:
    """``path``, ``names`` and ``exists`` of a record whose groups sit right under one section of the
    store (``SECTION/<name>``, e.g. ``runs/<name>``)."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def path(cls, name: str) -> str:
        return f"{cls.SECTION}/{name}"

    @classmethod
    def names(cls, f: h5py.File) -> list[str]:
        return children(f, cls.SECTION)

    @classmethod
    def exists(cls, f: h5py.File, name: str) -> bool:
        return group_at(f, cls.path(name)) is not None


# ---------------------------------------------------------------------------------------------- typed attrs


def as_str(a: Mapping[str, Any], key: str) -> str:
    v = a.get(key)
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def as_float(a: Mapping[str, Any], key: str) -> float | None:
    """A finite number, else None (NaN stands for "not applicable" in the store)."""
    try:
        x = float(a.get(key))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def as_int(a: Mapping[str, Any], key: str) -> int | None:
    x = as_float(a, key)
    return int(x) if x is not None else None


def as_json(a: Mapping[str, Any], key: str) -> Any:
    try:
        return json.loads(as_str(a, key)) if key in a else None
    except json.JSONDecodeError:
        return None


def as_list(a: Mapping[str, Any], key: str) -> tuple[str, ...]:
    v = as_json(a, key)
    return tuple(str(x) for x in v) if isinstance(v, list) else ()


@dataclass(frozen=True)
class Meta:
    """The standard attrs every group carries: ``emodiff_version``, ``created``, ``config``, ``config_hash``."""

    path: str
    created: str = ""
    version: str = ""
    config_hash: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, g: h5py.Group) -> Meta:
        a = attrs_dict(g)
        try:
            config = json.loads(as_str(a, "config")) if "config" in a else {}
        except json.JSONDecodeError:
            config = {"unparsed": as_str(a, "config")}
        return cls(path=g.name, created=as_str(a, "created"), version=as_str(a, "emodiff_version"),
                   config_hash=as_str(a, "config_hash"), config=config if isinstance(config, dict) else {})


# ---------------------------------------------------------------------------------------------- already there?


@dataclass(frozen=True)
class Absent:
    """No complete group at ``path``."""

    path: str


@dataclass(frozen=True)
class Same:
    """The group is there, made with the same settings (its ``config_hash`` matches)."""

    path: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Different:
    """The group is there, made with other settings."""

    path: str
    attrs: dict[str, Any]

    def error(self, store: Path | str, fix: str = "pass --overwrite to replace it") -> EmodiffError:
        """The one message for "there, with other settings"; ``fix`` says what the user can do."""
        return EmodiffError(f"{store}: /{self.path} exists with other settings; {fix}")


def existing_in(f: h5py.File, path: str, config: Mapping[str, Any]) -> Absent | Same | Different:
    """:func:`existing` on an open store."""
    path = path.strip("/")
    g = group_at(f, path)
    if g is None:
        return Absent(path)
    attrs = attrs_dict(g)
    return (Same if attrs.get("config_hash") == config_hash(config)[1] else Different)(path, attrs)


def existing(store: Path, path: str, config: Mapping[str, Any]) -> Absent | Same | Different:
    """Whether ``store`` holds the group ``path`` and whether ``config`` is what made it.

    A missing store is Absent. The step decides what each answer means: ``sample`` and
    ``augment`` return at once on Same and raise ``Different.error`` otherwise; ``classify``
    refuses any group already there (:func:`taken`).
    """
    if not Path(store).exists():
        return Absent(path.strip("/"))
    with open_store(store) as f:
        return existing_in(f, path, config)


def taken(store: Path | str, path: str, instead: str = "") -> EmodiffError:
    """The error for a group already there when the step replaces only with ``--overwrite``."""
    return EmodiffError(f"{store}: already holds /{path.strip('/')}; pass --overwrite to replace it"
                        + (f" or {instead}" if instead else ""))


