"""Corpus readers: one module per corpus, each listing a corpus root as a :class:`Listing`.

``list_corpus(name, root)`` is the one entry point the steps use; ``CORPORA`` names the
corpora that have a reader, in their canonical (store group) spelling. Any other corpus comes
from a manifest (:mod:`emodiff.corpora.manifest`) under a name of its user's choosing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emodiff.corpora.base import Listing, Problem, Utterance
from emodiff.errors import EmodiffError

CORPORA: tuple[str, ...] = ("iemocap", "msp-improv", "crema-d", "ravdess", "nemo")
# Corpora whose sessions pair two speakers: a LOSO fold validates on the held-out speaker's session partner.
PAIRED: tuple[str, ...] = ("iemocap", "msp-improv")
NAME_RULE = "1 to 64 letters, digits, '-' and '_', starting with a letter or digit"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _reader(name: str) -> Callable[..., Listing]:
    # Imported lazily so that listing one corpus does not import the others' readers.
    if name == "iemocap":
        from emodiff.corpora.iemocap import list_iemocap

        return list_iemocap
    if name == "msp-improv":
        from emodiff.corpora.msp_improv import list_msp_improv

        return list_msp_improv
    if name == "crema-d":
        from emodiff.corpora.crema_d import list_crema_d

        return list_crema_d
    if name == "ravdess":
        from emodiff.corpora.ravdess import list_ravdess

        return list_ravdess
    if name == "nemo":
        from emodiff.corpora.nemo import list_nemo

        return list_nemo
    from emodiff.corpora.manifest import list_manifest

    return list_manifest


def unknown_corpus(name: str) -> EmodiffError:
    """The error for a corpus name that has no reader and no manifest to prepare it from."""
    return EmodiffError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}, or any other corpus from "
                        f"a TSV/CSV manifest: `emodiff prepare manifest FILE --name {name.strip().lower()}`")


def canonical_name(name: str, where: str = "corpus") -> str:
    """The store group name of a corpus: a named one in its canonical spelling (``MSP_IMPROV`` ->
    ``msp-improv``), any other (a corpus from a manifest) lower-cased; EmodiffError, naming ``where``,
    for a name no corpus group may have (:data:`NAME_RULE`).

    Whether the corpus is prepared is for the step that reads it to say (``records.not_prepared``).
    """
    key = name.strip().lower()
    if key.replace("_", "-") in CORPORA:
        return key.replace("_", "-")
    if _NAME.fullmatch(key) is None:
        shown = repr(name) if len(name) <= 60 else f"{name[:40]!r}... ({len(name)} characters)"
        raise EmodiffError(f"{where} {shown}: expected a corpus name of {NAME_RULE}")
    return key


def list_corpus(name: str, root: Path, **options: Any) -> Listing:
    """List the corpus ``name`` found under ``root`` with its reader, ``list_<corpus>`` (no audio is decoded);
    a name that is none of :data:`CORPORA` lists ``root`` as a manifest file (``list_manifest``)."""
    return _reader(canonical_name(name))(Path(root), **options)


__all__ = ["CORPORA", "NAME_RULE", "PAIRED", "Listing", "Problem", "Utterance", "canonical_name", "list_corpus",
           "unknown_corpus"]
