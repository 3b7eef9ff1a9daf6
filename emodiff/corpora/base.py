"""The record every corpus reader returns, and the listing that carries its problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Gender = Literal["F", "M", ""]  # "": the corpus does not say (a manifest without a gender column)


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance of a corpus, before any audio is read.

    ``emotion`` is an id into :data:`emodiff.emotions.EMOTIONS`. ``speaker`` is the speaking
    actor, unique within the corpus (IEMOCAP: ``Ses01F``-style session + speaking gender).
    ``duration_s`` comes from the corpus metadata where it states one (IEMOCAP turn times),
    else None; ``prepare`` stores the decoded duration in any case.
    """

    id: str
    path: Path
    speaker: str
    gender: Gender
    session: str
    emotion: int
    text: str
    duration_s: float | None = None


@dataclass(frozen=True)
class Problem:
    """An entry a corpus reader could not turn into an Utterance (unknown label, duplicate id, ...)."""

    path: str
    reason: str


@dataclass
class Listing:
    """What a corpus reader found under a corpus root.

    ``utterances`` are the 4-class records, sorted by id. ``excluded`` counts labels that are
    deliberately outside the 4-class set (IEMOCAP ``fru``/``xxx``, RAVDESS calm, ...): not
    errors. ``problems`` are real defects of the copy (unknown label, duplicate id, missing
    audio): ``prepare`` skips them and reports them, and ``--strict`` makes them fatal.
    """

    utterances: list[Utterance]
    excluded: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
