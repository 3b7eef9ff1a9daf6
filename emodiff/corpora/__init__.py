"""Corpus recipes: one module per corpus, each turning a corpus root into a :class:`Listing`.

``list_corpus(name, root)`` is the one entry point the steps use; ``CORPORA`` names the
corpora in their canonical (store group) spelling.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from emodiff.corpora.base import Listing, Problem, Utterance
from emodiff.errors import EmodiffError

CORPORA: tuple[str, ...] = ("iemocap", "msp-improv", "crema-d", "ravdess")


def _recipe(name: str) -> Callable[..., Listing]:
    # Imported lazily so that listing one corpus does not import the others' parsers.
    if name == "iemocap":
        from emodiff.corpora.iemocap import prepare_iemocap

        return prepare_iemocap
    if name == "msp-improv":
        from emodiff.corpora.msp_improv import prepare_msp_improv

        return prepare_msp_improv
    if name == "crema-d":
        from emodiff.corpora.crema_d import prepare_crema_d

        return prepare_crema_d
    if name == "ravdess":
        from emodiff.corpora.ravdess import prepare_ravdess

        return prepare_ravdess
    raise EmodiffError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}")


def canonical_name(name: str) -> str:
    """``MSP_IMPROV`` / ``msp-improv`` -> ``msp-improv``; raises EmodiffError for unknown names."""
    key = name.strip().lower().replace("_", "-")
    if key not in CORPORA:
        raise EmodiffError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}")
    return key


def list_corpus(name: str, root: Path, **options: Any) -> Listing:
    """Parse the corpus ``name`` found under ``root`` (no audio is decoded)."""
    return _recipe(canonical_name(name))(Path(root), **options)


__all__ = ["CORPORA", "Listing", "Problem", "Utterance", "canonical_name", "list_corpus"]
