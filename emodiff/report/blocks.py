"""The report as a document of plain blocks, rendered twice: to HTML (html.py) and Markdown (markdown.py).

Text is plain: renderers escape it. A span in backticks (`emodiff sample`) is shown as code.
Paths in ``src`` are relative to the report folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Tone = Literal["plain", "missing", "warning"]


@dataclass
class Paragraph:
    text: str
    tone: Tone = "plain"  # missing: a part of the pipeline not run yet; warning: leaks, read problems


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]  # per column: right-aligned, tabular figures
    leaky_rows: set[int] = field(default_factory=set)  # row indices drawn with the leak colour
    notes: list[str] = field(default_factory=list)  # sentences under the table


@dataclass
class Figure:
    src: str
    caption: str
    alt: str


@dataclass
class Gallery:
    """Figures side by side (as many per row as fit)."""

    figures: list[Figure]


@dataclass
class Clip:
    src: str
    label: str


@dataclass
class AudioGrid:
    """Players in a grid: one row per emotion, one column per source (real corpus, synthetic set)."""

    caption: str
    headers: list[str]  # the column heads after the row label
    rows: list[tuple[str, list[list[Clip]]]]  # (row label, clips per column)


@dataclass
class Details:
    """A collapsed block of preformatted text (a group's config JSON)."""

    summary: str
    text: str


Block = Paragraph | Table | Figure | Gallery | AudioGrid | Details


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    facts: list[tuple[str, str]]  # shown under the title: store, generated, versions
    sections: list[Section]
