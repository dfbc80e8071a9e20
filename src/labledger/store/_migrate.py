"""Schema creation and upgrades: Alembic is the only way the schema changes.

``HEAD_REVISION`` is what this code needs; a test checks it equals Alembic's
head so opening a store never has to load the migration scripts.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc

HEAD_REVISION = "0003"
VERSION_TABLE = "labledger_alembic_version"


def migrations_dir() -> Path:
    """The Alembic scripts: packaged in the wheel, or the repository's ``migrations/``."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_migrations"
    if packaged.is_dir():
        return packaged
    source = here.parent.parent / "migrations"
    if source.is_dir():
        return source
    raise FileNotFoundError("labledger's migrations are missing from this installation")


def current_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the database, or None when there is none."""
    try:
        with conn.begin_nested() if conn.in_transaction() else conn.begin():
            row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    except (sa_exc.OperationalError, sa_exc.ProgrammingError):
        return None
    return None if row is None else str(row[0])


def run(conn: Connection, target: str = "head", *, downgrade: bool = False) -> None:
    """Upgrade (or downgrade) the schema on ``conn`` to ``target``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = conn
    if downgrade:
        command.downgrade(cfg, target)
    else:
        command.upgrade(cfg, target)


def script_head() -> str:
    """Alembic's head revision as the scripts say (for tests and `doctor`)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head
