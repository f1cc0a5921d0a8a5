"""promises_to_pay.notes: the agent's notes with a promise were acknowledged and then dropped

Revision ID: 0004_promise_notes
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_promise_notes"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("promises_to_pay", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("promises_to_pay", schema=None) as batch_op:
        batch_op.drop_column("notes")
