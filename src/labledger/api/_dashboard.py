"""The dashboard's entry and its static files; the pages live in ``_dashboard_*``.

Pages are Jinja2 templates (``templates/``) with autoescape; the charts are
plotly figures drawn by ``static/dashboard.js`` with the plotly.js shipped
inside the installed ``plotly`` package (no CDN: the lab's network is
closed, and the CSP allows scripts from this origin only).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import FileResponse, RedirectResponse

from labledger.api import _dashboard_dream, _dashboard_events, _dashboard_runs, _dashboard_toolgen
from labledger.api._html import static_file
from labledger.errors import UsageError

router = APIRouter(include_in_schema=False)
MEDIA = {".js": "text/javascript", ".css": "text/css"}


@router.get("/")
def home() -> RedirectResponse:
    """The dashboard starts at the runs."""
    return RedirectResponse("/ui/runs")


@router.get("/static/{name}")
def static(name: Annotated[str, Path(max_length=64)]) -> FileResponse:
    """The dashboard's script and stylesheet, and plotly.js from the plotly package."""
    try:
        path = static_file(name)
    except UsageError as exc:
        raise HTTPException(404, str(exc)) from None
    media = MEDIA.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})


for _module in (_dashboard_runs, _dashboard_dream, _dashboard_toolgen, _dashboard_events):
    router.include_router(_module.router)
