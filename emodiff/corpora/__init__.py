"""Corpus readers: one module per corpus, each listing a corpus root as a :class:`Listing`.

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
# Corpora whose sessions pair two speakers: a LOSO fold validates on the held-out speaker's session partner.
PAIRED: tuple[str, ...] = ("iemocap", "msp-improv")


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
    raise EmodiffError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}")


def canonical_name(name: str) -> str:
    """``MSP_IMPROV`` / ``msp-improv`` -> ``msp-improv``; raises EmodiffError for unknown names."""
    key = name.strip().lower().replace("_", "-")
    if key not in CORPORA:
        raise EmodiffError(f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}")
    return key


def list_corpus(name: str, root: Path, **options: Any) -> Listing:
    """List the corpus ``name`` found under ``root`` with its reader, ``list_<corpus>`` (no audio is decoded)."""
    return _reader(canonical_name(name))(Path(root), **options)


__all__ = ["CORPORA", "PAIRED", "Listing", "Problem", "Utterance", "canonical_name", "list_corpus"]
