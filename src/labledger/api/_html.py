"""The dashboard's page frame and tables: plain HTML, one small stylesheet, no scripts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from typing import Any

from fastapi.responses import HTMLResponse

PAGES = (
    ("runs", "Runs"),
    ("dream", "D-REAM"),
    ("toolgen", "ToolGen"),
    ("esper", "Esper"),
    ("audit", "Audit"),
    ("ops", "Operations"),
)

CSS = """
body{font-family:sans-serif;margin:0;color:#222}
nav{background:#263238;padding:8px 16px}
nav a{color:#eceff1;margin-right:18px;text-decoration:none}
nav a.on{font-weight:bold;border-bottom:2px solid #fff}
main{padding:12px 20px}
table{border-collapse:collapse;margin:8px 0 18px;font-size:13px}
th,td{border:1px solid #cfd8dc;padding:3px 8px;text-align:left}
th{background:#eceff1}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b71c1c;font-weight:bold}.good{color:#1b5e20}
.charts{display:flex;flex-wrap:wrap;gap:12px}
"""


def page(active: str, title: str, body: str) -> HTMLResponse:
    """A whole dashboard page: navigation, title, and ``body`` (already HTML)."""
    nav = "".join(
        f'<a href="/ui/{key}"{" class=on" if key == active else ""}>{label}</a>'
        for key, label in PAGES
    )
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>labledger · {escape(title)}</title><style>{CSS}</style></head>"
        f'<body><nav><a href="/ui/runs"><b>labledger</b></a>{nav}'
        f'<a href="/docs">API</a></nav><main><h1>{escape(title)}</h1>{body}</main></body></html>'
    )
    return HTMLResponse(html)


def cell(value: Any) -> str:
    """One table cell: numbers right-aligned and rounded, None as a dash."""
    if value is None:
        return "<td>–</td>"
    if isinstance(value, bool):
        return f'<td class="{"good" if value else "bad"}">{str(value).lower()}</td>'
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, Raw):
        return f"<td>{value.html}</td>"
    return f"<td>{escape(str(value))}</td>"


class Raw:
    """HTML that a table cell shows as is (links)."""

    def __init__(self, html: str) -> None:
        self.html = html


def link(href: str, text: str) -> Raw:
    """A link cell."""
    return Raw(f'<a href="{escape(href)}">{escape(text)}</a>')


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str = "") -> str:
    """An HTML table; ``rows`` hold raw values (escaped here)."""
    if not rows:
        return "<p><i>none yet</i></p>"
    ident = f' id="{escape(table_id)}"' if table_id else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def when(us: int | None) -> str | None:
    """Microseconds since the epoch as a UTC time, or None."""
    if us is None:
        return None
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
