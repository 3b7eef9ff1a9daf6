"""A :class:`Document` -> one self-contained HTML page: inline CSS, no scripts, nothing fetched from the network."""

from __future__ import annotations

import re
from html import escape

from emodiff import __version__
from emodiff.report.blocks import AudioGrid, Block, Details, Document, Figure, Gallery, Paragraph, Table

GENERATOR = "emodiff report"  # the <meta name="generator"> that marks a folder as a report we may replace

CSS = """
:root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --bg: #ffffff; --band: #f5f7fa;
        --accent: #2f6fb0; --leak: #fff1e6; --leak-ink: #9c4221; --missing: #f0f4f8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 32px 64px; }
header h1 { margin: 0 0 6px; font-size: 28px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0 20px;
           color: var(--muted); font-size: 13px; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; word-break: break-all; }
nav { background: var(--band); border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; }
nav ol { margin: 4px 0; padding-left: 20px; columns: 2; }
nav a, a { color: var(--accent); text-decoration: none; } nav a:hover { text-decoration: underline; }
section { margin-top: 36px; }
h2 { font-size: 21px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
p { margin: 8px 0; max-width: 80ch; }
p.missing { background: var(--missing); border-left: 4px solid #9fb3c8; padding: 6px 12px; color: var(--muted); }
p.warning { background: var(--leak); border-left: 4px solid var(--leak-ink); padding: 6px 12px; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--band);
       padding: 1px 4px; border-radius: 3px; }
.table-wrap { overflow-x: auto; margin: 12px 0 4px; }
table { border-collapse: collapse; font-size: 14px; min-width: 420px; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0 8px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--band); text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.leaky, tbody tr.leaky:nth-child(even) { background: var(--leak); }
tr.leaky td:first-child { color: var(--leak-ink); font-weight: 600; }
.table-notes { color: var(--muted); font-size: 13px; margin: 2px 0 14px; }
.table-notes p { margin: 2px 0; }
figure { margin: 18px 0; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 8px 20px; }
.gallery figure { margin: 10px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 90ch; }
table.audio td { vertical-align: middle; }
.clip { display: flex; align-items: center; gap: 6px; margin: 2px 0; font-size: 12px; color: var(--muted); }
audio { height: 32px; width: 230px; }
details { margin: 6px 0; border: 1px solid var(--line); border-radius: 4px; padding: 4px 10px; }
details summary { cursor: pointer; font-weight: 600; }
pre { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-x: auto;
      background: var(--band); padding: 8px; margin: 6px 0; }
footer { margin-top: 48px; color: var(--muted); font-size: 12px; }
"""

_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escaped text with `spans` as <code>."""
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", escape(text))


def render_html(doc: Document) -> str:
    nav = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>' for s in doc.sections)
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{inline(v)}</dd>" for k, v in doc.facts)
    body = "\n".join(
        f'<section id="{escape(s.anchor)}">\n<h2>{escape(s.title)}</h2>\n' + "\n".join(_block(b) for b in s.blocks)
        + "\n</section>" for s in doc.sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{GENERATOR} {escape(__version__)}">\n'
        f"<title>{escape(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<header>\n<h1>{escape(doc.title)}</h1>\n<dl class=\"facts\">{facts}</dl>\n</header>\n"
        f"<nav><strong>Contents</strong><ol>{nav}</ol></nav>\n{body}\n"
        f"<footer>Made by <code>emodiff report</code> {escape(__version__)}; every number on this page is read "
        "from the store named above.</footer>\n</main>\n</body>\n</html>\n")


def _block(b: Block) -> str:
    if isinstance(b, Paragraph):
        cls = f' class="{b.tone}"' if b.tone != "plain" else ""
        return f"<p{cls}>{inline(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return (f'<figure><img src="{escape(b.src)}" alt="{escape(b.alt)}">'
                f"<figcaption>{inline(b.caption)}</figcaption></figure>")
    if isinstance(b, Gallery):
        return '<div class="gallery">' + "".join(_block(f) for f in b.figures) + "</div>"
    if isinstance(b, AudioGrid):
        return _audio(b)
    if isinstance(b, Details):
        return f"<details><summary>{inline(b.summary)}</summary><pre>{escape(b.text)}</pre></details>"
    raise TypeError(f"unknown block {type(b).__name__}")


def _cell(tag: str, text: str, numeric: bool) -> str:
    cls = ' class="num"' if numeric else ""
    return f"<{tag}{cls}>{inline(text)}</{tag}>"


def _table(t: Table) -> str:
    head = "".join(_cell("th", h, n) for h, n in zip(t.headers, t.numeric, strict=True))
    rows = []
    for i, row in enumerate(t.rows):
        cls = ' class="leaky"' if i in t.leaky_rows else ""
        rows.append(f"<tr{cls}>" + "".join(_cell("td", c, n) for c, n in zip(row, t.numeric, strict=True)) + "</tr>")
    notes = "".join(f"<p>{inline(n)}</p>" for n in t.notes)
    return (f'<div class="table-wrap"><table>\n<caption>{inline(t.caption)}</caption>\n'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>"
            + (f'<div class="table-notes">{notes}</div>' if notes else ""))


def _audio(g: AudioGrid) -> str:
    head = "<th>emotion</th>" + "".join(f"<th>{inline(h)}</th>" for h in g.headers)
    rows = []
    for label, columns in g.rows:
        cells = "".join(
            "<td>" + "".join(f'<div class="clip"><audio controls preload="metadata" src="{escape(c.src)}"></audio>'
                             f"<span>{escape(c.label)}</span></div>" for c in clips) + "</td>"
            for clips in columns)
        rows.append(f"<tr><th>{escape(label)}</th>{cells}</tr>")
    return (f'<div class="table-wrap"><table class="audio">\n<caption>{inline(g.caption)}</caption>\n'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")
