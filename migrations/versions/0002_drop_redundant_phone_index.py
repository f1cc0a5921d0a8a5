"""drop ix_phones_account_id: uq_phones_account_number (account_id, number) serves its lookups

Every imported phone paid for one more index than the queries need.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phones_account_id"))


def downgrade() -> None:
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phones_account_id"), ["account_id"], unique=False)
