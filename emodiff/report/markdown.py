"""A :class:`Document` -> report.md (GitHub-flavoured Markdown; figures and clips by relative path)."""

from __future__ import annotations

import re

from emodiff.report.blocks import AudioGrid, Block, Details, Document, Figure, Gallery, Paragraph, Table

_SPECIAL = re.compile(r"([\\*_\[\]<>|#])")


def _text(s: str) -> str:
    """Markdown-escaped text; backtick spans stay code spans (their content is literal)."""
    parts = s.split("`")
    return "`".join(p if i % 2 else _SPECIAL.sub(r"\\\1", p) for i, p in enumerate(parts))


def render_markdown(doc: Document) -> str:
    lines = [f"# {_text(doc.title)}", ""]
    lines += [f"- **{_text(k)}**: {_text(v)}" for k, v in doc.facts]
    lines.append("")
    for s in doc.sections:
        lines += [f"## {_text(s.title)}", ""]
        for b in s.blocks:
            lines += _block(b)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _block(b: Block) -> list[str]:
    if isinstance(b, Paragraph):
        return [("> " if b.tone != "plain" else "") + _text(b.text)]
    if isinstance(b, Table):
        align = ["---:" if n else "---" for n in b.numeric]
        out = [f"**{_text(b.caption)}**", "", _row(b.headers), "| " + " | ".join(align) + " |"]
        out += [_row(r) for r in b.rows]
        return out + [""] + [line for n in b.notes for line in (_text(n), "")]
    if isinstance(b, Figure):
        return [f"![{_text(b.alt)}]({b.src})", "", f"*{_text(b.caption)}*"]
    if isinstance(b, Gallery):
        return [line for f in b.figures for line in [*_block(f), ""]]
    if isinstance(b, AudioGrid):
        out = [f"**{_text(b.caption)}**", "", _row(["emotion", *b.headers]),
               "| " + " | ".join(["---"] * (len(b.headers) + 1)) + " |"]
        for label, columns in b.rows:
            links = [", ".join(f"[{_text(c.label)}]({c.src})" for c in clips) for clips in columns]
            out.append(_row([_text(label), *links], escape=False))
        return out
    if isinstance(b, Details):
        return [f"<details><summary>{_text(b.summary)}</summary>", "", "```json", b.text, "```", "", "</details>"]
    raise TypeError(f"unknown block {type(b).__name__}")


def _row(cells: list[str], escape: bool = True) -> str:
    return "| " + " | ".join((_text(c) if escape else c.replace("|", "\\|")) for c in cells) + " |"
