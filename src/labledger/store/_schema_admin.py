"""Running migrations against a URL with the dialect's settings and migrator lock."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from labledger.errors import LabledgerError
from labledger.store import _migrate
from labledger.store._dialect import WRITE_OPTION, dialect_for


def _migrate_url(url: str, target: str, *, downgrade: bool) -> str:
    dialect = dialect_for(url)
    engine = dialect.create_engine()
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with dialect.migration_lock(conn):
                _migrate.run(conn, target, downgrade=downgrade)
                conn.commit()
            found = _migrate.current_revision(conn)
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


def create_database(url: str) -> bool:
    """Create the database named by ``url`` if its server has none; True if it did."""
    return dialect_for(url).create_database()


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
