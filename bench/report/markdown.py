"""Markdown report of a run: the blocks of :mod:`bench.report.document`, with every data string escaped."""
from __future__ import annotations

from typing import Any

from ..measurement import Measurement
from ..profile import Profile
from . import data as D
from . import document
from .document import Bullets, Heading, Image, Para, Table, fmt_bytes, fmt_rate  # noqa: F401 (re-exported)

PLOT_DIR = "plots"

_MD_SPECIAL = {"\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|",
               "<": "&lt;", ">": "&gt;", "&": "&amp;", "#": "\\#"}


def esc(text: Any) -> str:
    """Plain text as inert Markdown: no markup, no HTML, no table breaks, on one line."""
    s = " ".join(str(text).split())
    return "".join(_MD_SPECIAL.get(c, c) for c in s)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_blocks(title: str, blocks: list, plot_dir: str = PLOT_DIR) -> str:
    out = [f"# {esc(title)}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + esc(b.text), ""]
        elif isinstance(b, Para):
            t = esc(b.text)
            out += [f"**{t}**" if b.strong else f"_{t}_" if b.missing else t, ""]
        elif isinstance(b, Table):
            out += [_table(b.headers, b.rows), ""]
        elif isinstance(b, Image):
            out += [f"![{esc(b.alt)}]({plot_dir}/{b.name}.png)", ""]
        elif isinstance(b, Bullets):
            out += [f"- {esc(i)}" for i in b.items] + [""]
    return "\n".join(out)


def render(p: Profile, records: list[Measurement], *, plots: dict[str, Any] | None = None,
           rd: D.ReportData | None = None) -> str:
    """The Markdown report. ``plots``: plot name -> PNG bytes (linked as plots/<name>.png) or an error string."""
    rd = rd or D.build(p, records)
    title, blocks = document.build(rd, plots)
    return render_blocks(title, blocks)
