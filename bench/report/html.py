"""Self-contained HTML report: one file, plots embedded as base64 PNG, inline CSS, no scripts, nothing fetched.

Every string that reaches the page goes through ``html.escape`` (quotes included), so a device name or a
failure reason can never become markup. The only URLs in the document are ``data:image/png`` ones.
"""
from __future__ import annotations

import base64
from html import escape
from typing import Any

from ..measurement import Measurement
from ..profile import Profile
from . import data as D
from . import document
from .document import Bullets, Heading, Image, Para, Table

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:72rem;margin:2rem auto;
padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem;border-bottom:2px solid #ddd;padding-bottom:.3rem}
h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #eee;padding-bottom:.2rem}
h3{font-size:1.05rem;margin-top:1.4rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}
tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.5rem 0}
.missing{color:#777;font-style:italic}
nav{font-size:.9rem;margin:.5rem 0 1.5rem}
nav a{margin-right:.8rem}
.scroll{max-height:32rem;overflow:auto;display:inline-block;max-width:100%}
"""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _anchor(text: str) -> str:
    return "s-" + "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def render_blocks(title: str, blocks: list, plots: dict[str, Any] | None) -> str:
    heads = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    nav = " ".join(f'<a href="#{_anchor(h.text)}">{_e(h.text)}</a>' for h in heads)
    body: list[str] = [f"<h1>{_e(title)}</h1>", f"<nav>{nav}</nav>"]
    for b in blocks:
        if isinstance(b, Heading):
            lvl = min(max(b.level, 2), 4)
            body.append(f'<h{lvl} id="{_anchor(b.text)}">{_e(b.text)}</h{lvl}>')
        elif isinstance(b, Para):
            t = _e(b.text)
            body.append(f"<p><strong>{t}</strong></p>" if b.strong
                        else f'<p class="missing">{t}</p>' if b.missing else f"<p>{t}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_e(h)}</th>" for h in b.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
            wrap = ' class="scroll"' if len(b.rows) > 25 else ""
            body.append(f"<div{wrap}><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")
        elif isinstance(b, Image):
            data = (plots or {}).get(b.name)
            if isinstance(data, (bytes, bytearray)):
                b64 = base64.b64encode(bytes(data)).decode("ascii")
                body.append(f'<img alt="{_e(b.alt)}" src="data:image/png;base64,{b64}">')
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def render(p: Profile, records: list[Measurement], *, plots: dict[str, Any] | None = None,
           rd: D.ReportData | None = None) -> str:
    """The HTML report; ``plots``: plot name -> PNG bytes, embedded in the page."""
    rd = rd or D.build(p, records)
    title, blocks = document.build(rd, plots)
    return render_blocks(title, blocks, plots)
