"""The HTTP API and dashboard of labledger (``labledger serve``).

Layering: beside ``cli``, on top of ``projections`` and ``lab``; nothing
below imports it. FastAPI and uvicorn are optional dependencies
(``pip install 'labledger[api]'``).
"""

from __future__ import annotations

from labledger.api._app import create_app
from labledger.api._auth import api_token, is_loopback

__all__ = ["api_token", "create_app", "is_loopback"]
