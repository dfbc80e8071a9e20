"""Optional extras: which verbs need which packages, and the error that names them.

``pip install labledger`` gives the log, the catalog, projections, D-REAM and
ToolGen. Esper and Simic need ``[ml]`` (torch), plots ``[plot]`` (matplotlib),
the HTTP side and Parquet ``[api]``, PostgreSQL ``[postgres]``. A verb whose
extra is missing exits 2 with the ``pip install`` line, never a traceback.
"""

from __future__ import annotations

import importlib.util

from labledger.errors import MissingExtra

EXTRAS: dict[str, tuple[str, ...]] = {
    "ml": ("torch", "numpy", "sklearn"),
    "plot": ("matplotlib",),
    "api": ("fastapi", "uvicorn", "starlette", "pyarrow", "jinja2", "plotly", "prometheus_client"),
    "postgres": ("psycopg",),
    "notebook": ("pandas",),
}
_EXTRA_OF = {module: extra for extra, modules in EXTRAS.items() for module in modules}


def extra_for(module: str | None) -> str | None:
    """The extra that provides top-level ``module`` (``torch.nn`` → ``ml``), if any."""
    return _EXTRA_OF.get((module or "").partition(".")[0])


def missing(extra: str, modules: tuple[str, ...] | None = None) -> list[str]:
    """The modules of ``extra`` (or just ``modules`` of it) that cannot be imported here."""
    return [m for m in modules or EXTRAS[extra] if importlib.util.find_spec(m) is None]


def installed(extra: str) -> bool:
    return not missing(extra)


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtra` unless the packages of ``extra`` (or ``modules``) import.

    Raises:
        MissingExtra: naming ``what`` needs it and the ``pip install`` line.
    """
    absent = missing(extra, modules)
    if absent:
        raise MissingExtra(what, extra, absent)
