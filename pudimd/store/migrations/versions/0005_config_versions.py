"""Config versions: every config the daemon applied, as written, with who, when and why.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "config_versions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.Double(), nullable=False, comment="applied, Unix seconds"),
        sa.Column("source", sa.String(16), nullable=False, comment="start, file, api or rollback"),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, comment="of text, hex"),
        sa.Column("text", sa.Text(), nullable=False, comment="the file as read, ${ENV} unexpanded"),
    )


def downgrade() -> None:
    op.drop_table("config_versions")
