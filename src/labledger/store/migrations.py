"""Schema creation and upgrades: Alembic is the only way the schema changes.

``schema.HEAD_REVISION`` is what this code needs; a test checks it equals
Alembic's head so opening a store never has to load the migration scripts.
Migrations run against a URL with the dialect's settings and migrator lock.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from labledger.errors import LabledgerError
from labledger.store.dialects.base import WRITE_OPTION, default_url, dialect_for
from labledger.store.schema import HEAD_REVISION, VERSION_TABLE, current_revision


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


def _migrate_url(url: str, target: str, *, downgrade: bool) -> str:
    dialect = dialect_for(url)
    engine = dialect.create_engine()
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with dialect.migration_lock(conn):
                run(conn, target, downgrade=downgrade)
                conn.commit()
            found = current_revision(conn)
    except LabledgerError:
        raise
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        mapped = dialect.translate(exc)
        if mapped is None:
            raise
        raise mapped from exc
    finally:
        engine.dispose()
    return found or "base"


def create_database(url: str | None = None) -> bool:
    """Create the PostgreSQL database of ``url`` if the server has none; True if it did."""
    return dialect_for(url or default_url()).create_database()


def init_store(url: str | None = None) -> str:
    """Create or upgrade the schema to head (one migrator at a time). Returns the revision."""
    return upgrade(url or default_url())


def upgrade(url: str, target: str = "head") -> str:
    return _migrate_url(url, target, downgrade=False)


def downgrade(url: str, target: str = "base") -> str:
    """Downgrade the schema. To ``base`` it drops the log, so the head anchor goes too
    (an anchor left behind would rightly call the emptied log a regression)."""
    revision = _migrate_url(url, target, downgrade=True)
    anchor = dialect_for(url).anchor_path()
    if revision == "base" and anchor is not None:
        anchor.unlink(missing_ok=True)
    return revision


__all__ = [
    "HEAD_REVISION",
    "VERSION_TABLE",
    "create_database",
    "current_revision",
    "downgrade",
    "init_store",
    "migrations_dir",
    "script_head",
    "upgrade",
]
