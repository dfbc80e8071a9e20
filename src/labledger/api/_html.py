"""The dashboard's page frame: Jinja2 templates with autoescape, sections, cells, static files.

Every value a page shows goes through Jinja2's autoescape (issue #18: a
D-REAM ``domain`` of ``<img src=x onerror=…>`` is text, never markup). No
page carries an inline script — the CSP allows only ``script-src 'self'`` —
so a chart is its figure JSON in a ``<script type="application/json">``
block, drawn by ``/static/dashboard.js``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import msgspec
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from labledger.errors import UsageError

PAGES = (
    ("runs", "Runs"),
    ("dream", "D-REAM"),
    ("toolgen", "ToolGen"),
    ("esper", "Esper"),
    ("audit", "Audit"),
    ("events", "Events"),
    ("ops", "Operations"),
)
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

_encode = msgspec.json.Encoder().encode


class Link(msgspec.Struct, frozen=True):
    """A cell or text part that links somewhere."""

    href: str
    text: str


class Badge(msgspec.Struct, frozen=True):
    """A coloured word: ``tone`` is good, bad, warn or idle."""

    text: str
    tone: str


def link(href: str, text: object) -> Link:
    """A link cell."""
    return Link(href, str(text))


def event_link(position: int | None) -> Link | None:
    """A link to the event browser's page of one event."""
    return None if position is None else Link(f"/ui/events/{position}", str(position))


def figure_json(fig: dict[str, Any]) -> Markup:
    """Figure JSON safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become JSON escapes so no string in the data can
    close the block (the browser does not HTML-decode a script's text).
    """
    text = _encode(fig).decode()
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, code)
    return Markup(text)


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["figure_json"] = figure_json
_env.tests["link"] = lambda v: isinstance(v, Link)
_env.tests["badge"] = lambda v: isinstance(v, Badge)


def render(
    active: str,
    title: str,
    sections: Sequence[dict[str, Any]],
    *,
    head: int,
    selector: dict[str, Any] | None = None,
) -> HTMLResponse:
    """A whole dashboard page: navigation, run selector, title and ``sections``.

    Args:
        active: the navigation key of the page.
        title: the page title (text).
        sections: made by :func:`heading`, :func:`table`, :func:`figures`,
            :func:`text`, :func:`code` and :func:`form`.
        head: the log's head when the page was read; the live tail starts after it.
        selector: from :func:`labledger.api._dashboard_runs.selector`, or None.
    """
    charts = any(s["kind"] == "figures" for s in sections)  # plotly.js is 4.8 MB: only then
    html = _env.get_template("page.html").render(
        active=active,
        title=title,
        sections=sections,
        head=head,
        selector=selector,
        pages=PAGES,
        charts=charts,
    )
    return HTMLResponse(html)


def heading(text: str, level: int = 2) -> dict[str, Any]:
    """A section heading."""
    return {"kind": "heading", "text": text, "level": level}


def table(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """A sortable, filterable table; cells hold raw values, :class:`Link` or :class:`Badge`."""
    return {"kind": "table", "id": table_id, "headers": list(headers), "rows": rows}


def figures(*figs: tuple[str, dict[str, Any] | None]) -> dict[str, Any]:
    """A row of plotly figures, each ``(element id, figure or None for no data)``."""
    return {"kind": "figures", "figures": list(figs)}


def text(*parts: str | Link | Badge, text_id: str = "") -> dict[str, Any]:
    """A paragraph of text, links and badges."""
    return {"kind": "text", "parts": parts, "id": text_id}


def code(code_id: str, body: str) -> dict[str, Any]:
    """A preformatted block (an event's JSON)."""
    return {"kind": "code", "id": code_id, "text": body}


def form(
    action: str, label: str, name: str, value: str, button: str, keep: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """A one-field GET form; ``keep`` are hidden fields (the chosen run)."""
    return {
        "kind": "form",
        "action": action,
        "label": label,
        "name": name,
        "value": value,
        "button": button,
        "keep": list(keep),
    }


def when(us: int | None) -> str | None:
    """Microseconds since the epoch as an ISO 8601 UTC time, or None."""
    if us is None:
        return None
    moment = dt.datetime.fromtimestamp(us / 1e6, dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def static_file(name: str) -> Path:
    """The file behind ``/static/NAME``: ours, or plotly.js from the installed package.

    Raises:
        UsageError: not a file the dashboard serves.
    """
    if name == "plotly.min.js":
        spec = importlib.util.find_spec("plotly")  # located, not imported: it is large
        if spec is None or spec.origin is None:
            raise UsageError("plotly is not installed: pip install 'labledger[api]'")
        return Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if name not in {p.name for p in STATIC_DIR.iterdir()}:
        raise UsageError(f"no static file {name!r}")
    return STATIC_DIR / name
