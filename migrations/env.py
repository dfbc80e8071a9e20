"""Alembic environment for labledger.

``labledger init`` passes an open connection in ``config.attributes``; plain
``alembic upgrade head`` builds one from ``LABLEDGER_DB``. The version table
is labledger's own so the schema can share a PostgreSQL database with other
Alembic users. Self-contained: nothing here imports ``labledger``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

VERSION_TABLE = "labledger_alembic_version"


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("LABLEDGER_DB", "sqlite:///labledger.db")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url)
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("labledger migrations run online only: use `labledger init`")
run_migrations_online()
