"""compliance: abandons looked up per number; claim evidence; consents

The UK rule "no call within 72 hours to a number that got an abandoned call" is about the number,
whatever account holds it: a small partial index finds a number's abandons. The evidence tables
keep one hash-chained record per claim decision and the profile texts they name. Consents (TCPA)
to automatic calls are kept per number.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dialer.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "claim_evidence",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", dialer.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt_id", sa.BigInteger(), nullable=True),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claim_evidence")),
    )
    op.create_index("ix_claim_evidence_account_at", "claim_evidence", ["account_id", "at"])
    op.create_table(
        "evidence_chains",
        sa.Column("campaign_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=True),
        sa.Column("anchor_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_evidence_chains")),
    )
    op.create_table(
        "evidence_profiles",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", dialer.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_evidence_profiles")),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("given_at", dialer.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", dialer.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", dialer.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index("ix_consents_number", "consents", ["number"])
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_attempts_abandoned_number",
            ["number", "created_at"],
            unique=False,
            postgresql_where=sa.text("abandoned"),
            sqlite_where=sa.text("abandoned"),
        )


def downgrade() -> None:
    op.drop_index("ix_consents_number", table_name="consents")
    op.drop_table("consents")
    op.drop_table("evidence_profiles")
    op.drop_table("evidence_chains")
    op.drop_index("ix_claim_evidence_account_at", table_name="claim_evidence")
    op.drop_table("claim_evidence")
    with op.batch_alter_table("call_attempts", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_call_attempts_abandoned_number",
            postgresql_where=sa.text("abandoned"),
            sqlite_where=sa.text("abandoned"),
        )
