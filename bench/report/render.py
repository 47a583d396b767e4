"""Rendering a report: blocks of text, tables and plots, to Markdown and to one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

import pandas as pd

from zpeft.markdown import markdown_table
from zpeft.report import plots


@dataclass
class Block:
    """One piece of the report document, rendered to both Markdown and HTML."""

    kind: str  # "h1", "h2", "h3", "p", "table", "plot"
    text: str = ""
    table: pd.DataFrame | None = None
    plot: plots.Plot | None = None
    extra: dict = field(default_factory=dict)


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "table":
            out.append(markdown_table(b.table))
        elif b.kind == "plot":
            out.append(f"![{b.plot.title}]({b.plot.path.name})\n\n*{b.plot.title}.* {b.plot.caption}")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 1100px; }
td.error { text-align: left; white-space: normal; font-family: monospace; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: inline CSS, tables as HTML, plots as base64 PNG data URIs."""
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline_code(html.escape(b.text))}</p>")
        elif b.kind == "table":
            out.append(b.table.to_html(index=False, escape=True, border=0))
        elif b.kind == "plot":
            data = base64.b64encode(b.plot.path.read_bytes()).decode("ascii")
            out.append(f"<figure><img alt=\"{html.escape(b.plot.title)}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption><b>{html.escape(b.plot.title)}.</b> {html.escape(b.plot.caption)}"
                       f"</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _inline_code(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

