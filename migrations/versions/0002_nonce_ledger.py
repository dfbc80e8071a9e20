"""The nonce ledger: nonces of admitted signed commands, with TTL and a size bound.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ll_nonces",
        sa.Column("nonce", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_ll_nonces"),
    )
    op.create_index("ix_ll_nonces_expires_at", "ll_nonces", ["expires_at"])
    op.create_index("ix_ll_nonces_issued_at", "ll_nonces", ["issued_at"])
    # One row: eviction counters and the horizon below which commands are refused
    # because their nonces may have been evicted.
    op.create_table(
        "ll_nonce_stats",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("expired", sa.BigInteger, nullable=False),
        sa.Column("evicted", sa.BigInteger, nullable=False),
        sa.Column("horizon", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ll_nonce_stats"),
        sa.CheckConstraint("id = 1", name="ck_ll_nonce_stats_single_row"),
    )
    op.execute(
        "INSERT INTO ll_nonce_stats (id, size, expired, evicted, horizon) VALUES (1, 0, 0, 0, 0)"
    )


def downgrade() -> None:
    op.drop_table("ll_nonce_stats")
    op.drop_index("ix_ll_nonces_issued_at", table_name="ll_nonces")
    op.drop_index("ix_ll_nonces_expires_at", table_name="ll_nonces")
    op.drop_table("ll_nonces")
