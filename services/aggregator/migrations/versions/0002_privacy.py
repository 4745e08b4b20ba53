"""Privacy: a run's privacy policy; an update's status, detail and privacy spend.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 03:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("privacy_json", sa.JSON(), nullable=False, server_default="{}")
        )
    with op.batch_alter_table("updates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="accepted")
        )
        batch_op.add_column(sa.Column("detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("privacy_json", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("privacy_total_json", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("updates", schema=None) as batch_op:
        batch_op.drop_column("privacy_total_json")
        batch_op.drop_column("privacy_json")
        batch_op.drop_column("detail")
        batch_op.drop_column("status")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("privacy_json")
