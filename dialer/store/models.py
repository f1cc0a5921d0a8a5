"""The data model: campaigns, accounts, phones, attempts, outcomes of calls and the agents' records.

Alembic migrations in `migrations/` must match these tables exactly (a test checks it).
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dialer.store.types import Money, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; Postgres gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        Decimal: Money(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class DialMode(enum.StrEnum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    POWER = "power"
    PREDICTIVE = "predictive"


class CampaignState(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"


class AgingBucket(enum.StrEnum):
    CURRENT = "current"
    D1_30 = "1-30"
    D31_60 = "31-60"
    D61_90 = "61-90"
    D91_120 = "91-120"
    D120_PLUS = "120+"

    @classmethod
    def for_days_past_due(cls, days: int) -> AgingBucket:
        if days <= 0:
            return cls.CURRENT
        for limit, bucket in (
            (30, cls.D1_30),
            (60, cls.D31_60),
            (90, cls.D61_90),
            (120, cls.D91_120),
        ):
            if days <= limit:
                return bucket
        return cls.D120_PLUS


class Role(enum.StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class PtpStatus(enum.StrEnum):
    PENDING = "pending"
    KEPT = "kept"
    BROKEN = "broken"
    CANCELLED = "cancelled"


class CallbackStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"
    MISSED = "missed"


class MemberState(enum.StrEnum):
    """Where an account stands in one campaign."""

    ACTIVE = "active"
    RESTING = "resting"  # taken out until `next_attempt_at` (RPC, promise-to-pay follow-up)
    DONE = "done"  # nothing more to dial: caps reached, final disposition, no valid phone
    EXCLUDED = "excluded"  # removed by operations


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    dial_mode: Mapped[str] = mapped_column(String(16), default=DialMode.PREDICTIVE.value)
    state: Mapped[str] = mapped_column(String(16), default=CampaignState.DRAFT.value)
    # Pacing knobs: target abandon, lines per agent (power), warm-up size, minimum team, window.
    pacing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    compliance_profile: Mapped[str] = mapped_column(String(32), default="US")
    # A campaign may only narrow its profile's window: {"mon": ["09:00", "20:00"], ...}.
    calling_window: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Retry delay per outcome in seconds, recycling rules: {"busy": 900, "no_answer": 7200, ...}.
    retry_rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Attempt caps: {"phone_per_day": 3, "phone_total": 10, "account_per_day": 3, ...}.
    caps: Mapped[dict[str, Any]] = mapped_column(default=dict)
    max_concurrent_calls: Mapped[int | None] = mapped_column(Integer)
    caller_id: Mapped[str | None] = mapped_column(String(32))
    caller_id_pool: Mapped[list[Any]] = mapped_column(default=list)
    abandon_limit_s: Mapped[float] = mapped_column(default=2.0)
    amd_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    machine_action: Mapped[str] = mapped_column(String(16), default="hangup")
    record_calls: Mapped[bool] = mapped_column(Boolean, default=False)
    wrap_up_limit_s: Mapped[int] = mapped_column(Integer, default=120)
    wrap_up_expiry: Mapped[str] = mapped_column(String(16), default="auto_ready")
    # Disposition codes: [{"code": "PTP", "label": "...", "contact": true, "rpc": true, ...}].
    dispositions: Mapped[list[Any]] = mapped_column(default=list)
    # Script texts per aging bucket: {"current": "...", "31-60": "..."}.
    scripts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Account(Base):
    """The debtor's debt, as imported from a client's file."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("source", "external_ref", name="uq_accounts_source_ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), default="default")
    external_ref: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    balance: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    days_past_due: Mapped[int] = mapped_column(Integer, default=0)
    aging_bucket: Mapped[str] = mapped_column(String(8), default=AgingBucket.CURRENT.value)
    time_zone: Mapped[str | None] = mapped_column(String(64))
    jurisdiction: Mapped[str | None] = mapped_column(String(32))
    cease_communication: Mapped[bool] = mapped_column(Boolean, default=False)
    attorney_represented: Mapped[bool] = mapped_column(Boolean, default=False)
    custom_fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_contact_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    phones: Mapped[list[Phone]] = relationship(
        back_populates="account", order_by="Phone.priority", cascade="all, delete-orphan"
    )


class Phone(Base):
    __tablename__ = "phones"
    __table_args__ = (UniqueConstraint("account_id", "number", name="uq_phones_account_number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No index of its own: uq_phones_account_number (account_id, number) serves those lookups.
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # E.164. Not indexed: nothing looks phones up by number (DNC and the shared-number rule go
    # through dnc_entries and call_attempts), and the index made every imported phone a random
    # insert (migration 0003).
    number: Mapped[str] = mapped_column(String(20))
    phone_type: Mapped[str] = mapped_column(String(16), default="unknown")
    priority: Mapped[int] = mapped_column(Integer, default=1)
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    dnc: Mapped[bool] = mapped_column(Boolean, default=False)
    time_zone: Mapped[str | None] = mapped_column(String(64))
    next_attempt_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship(back_populates="phones")


class CampaignAccount(Base):
    """An account's membership in a campaign: its order and when it may be dialed next."""

    __tablename__ = "campaign_accounts"
    __table_args__ = (
        # The claim's hot path: next due members of a campaign in priority order.
        Index("ix_campaign_accounts_claim", "campaign_id", "state", "next_attempt_at", "priority"),
    )

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    state: Mapped[str] = mapped_column(String(16), default=MemberState.ACTIVE.value)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[dt.datetime | None]
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CallAttempt(Base):
    """One dial of one phone. Its id is the Originate ActionID and rides in channel variables."""

    __tablename__ = "call_attempts"
    __table_args__ = (
        # A phone is never dialed twice at once: at most one open attempt per phone.
        Index(
            "uq_call_attempts_open_phone",
            "phone_id",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
        # Rolling abandon-rate windows per campaign.
        Index("ix_call_attempts_campaign_answered", "campaign_id", "answered_at"),
        # Attempts per account over the last 7 days (Regulation F).
        Index("ix_call_attempts_account_created", "account_id", "created_at"),
        Index("ix_call_attempts_phone_created", "phone_id", "created_at"),
        Index("ix_call_attempts_agent_created", "agent_id", "created_at"),
        # Abandons per number (UK: no call within 72 h to a number that got one, any account).
        Index(
            "ix_call_attempts_abandoned_number",
            "number",
            "created_at",
            postgresql_where=text("abandoned"),
            sqlite_where=text("abandoned"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    phone_id: Mapped[int] = mapped_column(ForeignKey("phones.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20))
    caller_id: Mapped[str | None] = mapped_column(String(32))
    server: Mapped[str | None] = mapped_column(String(64))
    uniqueid: Mapped[str | None] = mapped_column(String(64))
    linkedid: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    originated_at: Mapped[dt.datetime | None]
    answered_at: Mapped[dt.datetime | None]
    bridged_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(24))
    amd_result: Mapped[str | None] = mapped_column(String(16))
    amd_cause: Mapped[str | None] = mapped_column(String(64))
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    dial_status: Mapped[str | None] = mapped_column(String(16))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    abandoned: Mapped[bool] = mapped_column(Boolean, default=False)
    recording_path: Mapped[str | None] = mapped_column(String(255))


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.AGENT.value)
    # The endpoint whose nailed-up channel carries this agent's calls, e.g. PJSIP/agent1001.
    endpoint: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(8), default="es")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuthSession(Base):
    """A logged-in agent's token (stored hashed), valid on any dialer process."""

    __tablename__ = "auth_sessions"

    token_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]


class AgentStateLog(Base):
    __tablename__ = "agent_state_log"
    __table_args__ = (Index("ix_agent_state_log_agent_started", "agent_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="SET NULL")
    )
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None]


class Disposition(Base):
    __tablename__ = "dispositions"
    __table_args__ = (
        UniqueConstraint("agent_id", "client_msg_id", name="uq_dispositions_agent_msg"),
        Index("ix_dispositions_account_created", "account_id", "created_at"),
        Index("ix_dispositions_campaign_created", "campaign_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="SET NULL"), index=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    code: Mapped[str] = mapped_column(String(32))
    # Whether the code meant a live contact / right-party contact, copied from the campaign's codes.
    contact: Mapped[bool] = mapped_column(Boolean, default=False)
    right_party: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str | None] = mapped_column(Text)
    client_msg_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PromiseToPay(Base):
    __tablename__ = "promises_to_pay"
    __table_args__ = (
        UniqueConstraint("agent_id", "client_msg_id", name="uq_promises_to_pay_agent_msg"),
        Index("ix_promises_to_pay_status_due", "status", "due_date"),
        Index("ix_promises_to_pay_campaign_created", "campaign_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="SET NULL")
    )
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    # The first (or only) due date; the schedule holds every instalment.
    due_date: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=PtpStatus.PENDING.value)
    paid_amount: Mapped[Decimal] = mapped_column(default=Decimal("0.00"))
    notes: Mapped[str | None] = mapped_column(Text)  # what the agent wrote with the promise
    client_msg_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    instalments: Mapped[list[PtpInstalment]] = relationship(
        back_populates="promise", order_by="PtpInstalment.seq", cascade="all, delete-orphan"
    )


class PtpInstalment(Base):
    __tablename__ = "ptp_instalments"

    promise_id: Mapped[int] = mapped_column(
        ForeignKey("promises_to_pay.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    due_date: Mapped[dt.date] = mapped_column(Date)
    amount: Mapped[Decimal]

    promise: Mapped[PromiseToPay] = relationship(back_populates="instalments")


class Payment(Base):
    """Money received on an account, as the client reports it; feeds history and PTP status."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_account_paid", "account_id", "paid_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[dt.datetime]
    reference: Mapped[str | None] = mapped_column(String(64))


class Callback(Base):
    __tablename__ = "callbacks"
    __table_args__ = (
        UniqueConstraint("created_by_agent_id", "client_msg_id", name="uq_callbacks_agent_msg"),
        Index("ix_callbacks_status_due", "status", "due_at"),
        Index("ix_callbacks_owner_status", "owner_agent_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    phone_id: Mapped[int | None] = mapped_column(ForeignKey("phones.id", ondelete="SET NULL"))
    due_at: Mapped[dt.datetime]
    owner_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_by_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default=CallbackStatus.PENDING.value)
    notes: Mapped[str | None] = mapped_column(Text)
    client_msg_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DncEntry(Base):
    __tablename__ = "dnc_entries"
    __table_args__ = (Index("ix_dnc_entries_number_expires", "number", "expires_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(64), default="internal")
    # "global", or a campaign's own list when campaign_id is set.
    scope: Mapped[str] = mapped_column(String(16), default="global")
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    reason: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CampaignLease(Base):
    """Which dialer process runs a campaign; another takes over once `expires_at` has passed."""

    __tablename__ = "campaign_leases"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime]
    # The latest pacing decision, so the API on any process can show it.
    last_decision: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ClaimEvidence(Base):
    """One claim decision, allowed or refused, and everything it rested on (`record`, canonical
    JSON). Append-only and hash-chained per campaign: `hash` = sha256(prev_hash, record). No
    foreign keys: the record outlives the campaign, account or attempt it speaks of."""

    __tablename__ = "claim_evidence"
    # Per-account exports only: verification walks the primary key, a date range is a scan
    # (every index here is paid by every claim).
    __table_args__ = (Index("ix_claim_evidence_account_at", "account_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime]
    campaign_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int] = mapped_column(BigInteger)
    attempt_id: Mapped[int | None] = mapped_column(BigInteger)
    allowed: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(64))
    record: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class EvidenceChain(Base):
    """The head of each campaign's evidence chain (locked while a claim appends to it), and
    where retention cut it: records up to `pruned_through` were deleted, the last of them
    hashed to `anchor_hash`, which the first remaining record must name as its prev_hash."""

    __tablename__ = "evidence_chains"

    campaign_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64))
    pruned_through: Mapped[int | None] = mapped_column(BigInteger)
    anchor_hash: Mapped[str] = mapped_column(String(64))


class EvidenceProfile(Base):
    """The exact text of every compliance profile an evidence record names by content hash, so
    a record can be re-evaluated under the rules it was decided by."""

    __tablename__ = "evidence_profiles"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Consent(Base):
    """A called party's prior express consent to automatic calls to a number (TCPA), with where
    it came from and when it was given or revoked."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_number", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(20))
    scope: Mapped[str] = mapped_column(String(32), default="autodialed_calls")
    source: Mapped[str] = mapped_column(String(64), default="internal")
    given_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
