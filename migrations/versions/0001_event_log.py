"""The event log, stream index and blob store, append-only at the database level.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
}

# INTEGER (not BIGINT) on SQLite makes `position` an explicit alias of the
# rowid: stored once, clustered, and — unlike an implicit rowid — preserved by
# VACUUM. SQLite integers are 64-bit either way.
POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

APPEND_ONLY = ("ll_events", "ll_blobs")


def upgrade() -> None:
    meta = sa.MetaData(naming_convention=NAMING)
    sa.Table(
        "ll_events",
        meta,
        sa.Column("position", POSITION, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("stream_version", sa.BigInteger, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("correlation_id", sa.Text),
        sa.Column("causation_id", sa.Text),
        sa.Column("run_id", sa.Text),
        sa.Column("actor", sa.Text),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("metadata", sa.LargeBinary, nullable=False),
        sa.Column("checksum", sa.LargeBinary, nullable=False),
        sa.Column("chain", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("event_id"),
        sa.UniqueConstraint("stream", "stream_version"),
        sa.CheckConstraint("position > 0", name="position_positive"),
        sa.CheckConstraint("stream_version >= 0", name="version_nonnegative"),
    )
    sa.Index("ix_ll_events_run_id", meta.tables["ll_events"].c.run_id)
    sa.Table(
        "ll_streams",
        meta,
        sa.Column("stream", sa.Text, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "ll_blobs",
        meta,
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    meta.create_all(op.get_bind())
    if op.get_context().dialect.name == "postgresql":
        _postgres_guards()
    else:
        _sqlite_guards()


def _sqlite_guards() -> None:
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'labledger: {table} is append-only'); END"
            )


def _postgres_guards() -> None:
    op.execute(
        """
        CREATE FUNCTION ll_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'labledger: % is append-only', TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ll_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ll_refuse_change()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ll_refuse_change()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    op.drop_table("ll_blobs")
    op.drop_table("ll_streams")
    op.drop_index("ix_ll_events_run_id", table_name="ll_events")
    op.drop_table("ll_events")
