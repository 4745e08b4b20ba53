"""Aggregation: a run's strategy (fedavg, norm-bounded, trimmed-mean, median).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 16:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Runs created before this revision aggregated with FedAvg: "{}" reads as its default.
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("aggregation_json", sa.JSON(), nullable=False, server_default="{}")
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("aggregation_json")
