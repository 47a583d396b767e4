"""Rendering a report: blocks of text, tables and plots, to Markdown and to one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

import pandas as pd

from zpeft.markdown import markdown_table
from zpeft.report import plots


@dataclass
class Block:
    """One piece of the report document, rendered to both Markdown and HTML."""

    kind: str  # "h1", "h2", "h3", "p", "table", "plot", "details" (extra["blocks"]: its p, table and plot blocks)
    text: str = ""
    table: pd.DataFrame | None = None
    plot: plots.Plot | None = None
    extra: dict = field(default_factory=dict)


HEADINGS = ("h1", "h2", "h3")
CONTENTS = ("h2", "h3")  # the heading levels listed in the table of contents


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (bar `-` and `_`), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(blocks: list[Block]) -> dict[int, str]:
    """Anchor id per heading block index, unique like GitHub's: a repeated slug gets `-1`, `-2`, ..."""
    seen: dict[str, int] = {}
    taken: set[str] = set()
    out = {}
    for i, b in enumerate(blocks):
        if b.kind not in HEADINGS:
            continue
        base = slug(b.text) or "section"
        n = seen.get(base, 0)
        anchor = base if n == 0 else f"{base}-{n}"
        while anchor in taken:
            n += 1
            anchor = f"{base}-{n}"
        seen[base] = n + 1
        taken.add(anchor)
        out[i] = anchor
    return out


def _contents_at(blocks: list[Block]) -> int:
    """Where the table of contents goes: after the first section (the answer, which a reader sees first), else
    right after the first h1 block, else at the top."""
    h2 = [i for i, b in enumerate(blocks) if b.kind == "h2"]
    if len(h2) > 1:
        return h2[1]
    return next((i + 1 for i, b in enumerate(blocks) if b.kind == "h1"), 0)


def _contents_markdown(blocks: list[Block], ids: dict[int, str]) -> str:
    lines, under_h2 = [], False  # an h3 nests under the h2 before it; one before any h2 stands alone
    for i, b in enumerate(blocks):
        if b.kind in CONTENTS:
            under_h2 = under_h2 or b.kind == "h2"
            lines.append(("  " if b.kind == "h3" and under_h2 else "") + f"- [{_md_link_text(b.text)}](#{ids[i]})")
    return "**Contents**\n\n" + "\n".join(lines) if lines else ""


def _md_link_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _contents_html(blocks: list[Block], ids: dict[int, str]) -> str:
    tree: list[tuple[str, list[str] | None]] = []  # (h2 link, its h3 links); an h3 before any h2 stands alone
    for i, b in enumerate(blocks):
        if b.kind not in CONTENTS:
            continue
        link = f"<a href=\"#{html.escape(ids[i])}\">{html.escape(b.text)}</a>"
        if b.kind == "h3" and tree and tree[-1][1] is not None:
            tree[-1][1].append(link)
        else:
            tree.append((link, [] if b.kind == "h2" else None))
    if not tree:
        return ""
    items = "".join(f"<li>{link}" + (f"<ul>{''.join(f'<li>{c}</li>' for c in sub)}</ul>" if sub else "") + "</li>"
                    for link, sub in tree)
    return f"<nav class=\"toc\"><details><summary>Contents</summary><ul>{items}</ul></details></nav>"


def render_markdown(blocks: list[Block]) -> str:
    """Markdown with a table of contents of the h2 and h3 headings, linked by GitHub-style anchors."""
    ids = anchors(blocks)
    contents = _contents_markdown(blocks, ids)
    at = _contents_at(blocks)
    out = []
    for i, b in enumerate(blocks):
        if i == at and contents:
            out.append(contents)
        out.append(_markdown_block(b))
    if at == len(blocks) and contents:
        out.append(contents)
    return "\n\n".join(out) + "\n"


def markdown_blocks(blocks: list[Block]) -> str:
    """Blocks as Markdown without a table of contents (the README's generated block)."""
    return "\n\n".join(_markdown_block(b) for b in blocks)


def _markdown_block(b: Block) -> str:
    if b.kind in HEADINGS:
        return "#" * int(b.kind[1]) + " " + b.text
    if b.kind == "p":
        return b.text
    if b.kind == "table":
        return markdown_table(b.table)
    if b.kind == "plot":
        return f"![{b.plot.title}]({b.plot.path.name})\n\n*{b.plot.title}.* {b.plot.caption}"
    if b.kind == "details":  # GitHub renders a collapsed <details> with Markdown inside
        inner = "\n\n".join(_markdown_block(c) for c in b.extra.get("blocks", []))
        return f"<details><summary>{html.escape(b.text)}</summary>\n\n{inner}\n\n</details>"
    raise ValueError(f"unknown block kind {b.kind!r}")


# Nothing may be wider than the page: cells wrap (between words, and inside long ones if need be), images shrink.
_CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1em auto; max-width: 1300px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; margin: 0.3em 0; font-size: 1.6em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 1.6em; } h3 { margin: 1em 0 0.4em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.85em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; overflow-wrap: break-word; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
table.answer { font-size: 0.8em; } table.answer td { white-space: normal; }
section.answer { border: 2px solid #2b6cb0; border-radius: 6px; padding: 0.2em 1em 0.5em; background: #f7fafc; }
section.answer h2 { margin-top: 0.4em; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 1100px; }
table.errors td { text-align: left; overflow-wrap: anywhere; font-family: monospace; font-size: 0.9em; }
nav.toc ul { margin: 0.2em 0; } nav.toc > ul { columns: 3; column-gap: 2em; }
details { margin: 0.5em 0 1em; } summary { cursor: pointer; font-weight: bold; }
p, figcaption, li { overflow-wrap: break-word; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: inline CSS, a linked table of contents, tables as HTML, plots as base64 PNGs."""
    ids = anchors(blocks)
    contents = _contents_html(blocks, ids)
    at = _contents_at(blocks)
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    in_answer = False
    for i, b in enumerate(blocks):
        if in_answer and b.kind in ("h1", "h2"):
            out.append("</section>")
            in_answer = False
        if i == at and contents:
            out.append(contents)
        if b.kind == "h2" and b.extra.get("answer"):  # the answer box: one framed section
            out.append("<section class=\"answer\">")
            in_answer = True
        out.append(_html_block(b, ids.get(i)))
    if in_answer:
        out.append("</section>")
    if at == len(blocks) and contents:
        out.append(contents)
    out.append("</body></html>")
    return "\n".join(out)


def _html_block(b: Block, anchor: str | None) -> str:
    if b.kind in HEADINGS:
        return f"<{b.kind} id=\"{html.escape(anchor or '')}\">{html.escape(b.text)}</{b.kind}>"
    if b.kind == "p":
        return f"<p>{_inline_code(html.escape(b.text))}</p>"
    if b.kind == "table":
        classes = [b.extra["class"]] if b.extra.get("class") else None
        return b.table.to_html(index=False, escape=True, border=0, classes=classes)
    if b.kind == "plot":
        data = base64.b64encode(b.plot.path.read_bytes()).decode("ascii")
        return (f"<figure><img alt=\"{html.escape(b.plot.title)}\" src=\"data:image/png;base64,{data}\">"
                f"<figcaption><b>{html.escape(b.plot.title)}.</b> {html.escape(b.plot.caption)}</figcaption></figure>")
    if b.kind == "details":
        inner = "\n".join(_html_block(c, None) for c in b.extra.get("blocks", []))
        return f"<details><summary>{html.escape(b.text)}</summary>\n{inner}\n</details>"
    raise ValueError(f"unknown block kind {b.kind!r}")


def _inline_code(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

