"""drop ix_phones_number: no query looks phones up by number

DNC and the shared-number rule match numbers through dnc_entries and call_attempts, never through
phones. The index cost every imported phone a random insert: on SQLite half the import's write
time at 1,000,000 rows, as its pages outgrow the cache and each batch rewrites most of them.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phones_number"))


def downgrade() -> None:
    with op.batch_alter_table("phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phones_number"), ["number"], unique=False)
