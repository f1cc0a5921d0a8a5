"""compliance: abandons looked up per number; the claim-evidence table

The UK rule "no call within 72 hours to a number that got an abandoned call" is about the number,
whatever account holds it: a small partial index finds a number's abandons. The evidence table
keeps one hash-chained record per claim decision.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_attempts_abandoned_number",
            ["number", "created_at"],
            unique=False,
            postgresql_where=sa.text("abandoned"),
            sqlite_where=sa.text("abandoned"),
        )


def downgrade() -> None:
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_call_attempts_abandoned_number",
            postgresql_where=sa.text("abandoned"),
            sqlite_where=sa.text("abandoned"),
        )
