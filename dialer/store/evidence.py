"""The evidence store: append claim decisions to their campaign's hash chain in the claim's own
transaction, export them, walk the chains to verify them, and prune them past retention.

Append is set-based: one upsert of the profile texts, one locked read of the chain head, one
multi-row insert, one update of the head, whatever the number of decisions in the claim.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.models import ClaimEvidence, EvidenceChain, EvidenceProfile

# A Core executemany: the ORM's bulk insert machinery costs half as much again for nothing here.
_EVIDENCE_INSERT = insert(ClaimEvidence.__table__)  # type: ignore[arg-type]
GENESIS = "0" * 64  # the previous hash of a chain's first record
# Rows read per round trip while verifying or exporting (memory stays flat).
PAGE = 2000

# Hashing and the canonical text are the compliance package's (dialer.compliance.evidence); the
# store gets them as functions so that it imports nothing from compliance.
Canonical = Callable[[Mapping[str, object]], str]
ChainHash = Callable[[str, str], str]


def _insert(session: AsyncSession, table: type[object]) -> postgresql.Insert | sqlite.Insert:
    assert session.bind is not None
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _rows(
    campaign_id: int,
    records: Sequence[Mapping[str, object]],
    previous: str,
    canonical: Canonical,
    chain_hash: ChainHash,
) -> tuple[list[dict[str, object]], str]:
    rows: list[dict[str, object]] = []
    for body in records:
        text = canonical(body)
        digest = chain_hash(previous, text)
        decision = body["decision"]
        assert isinstance(decision, dict)
        rows.append(
            {
                "at": dt.datetime.fromisoformat(str(body["at"])),
                "campaign_id": campaign_id,
                "account_id": body["account_id"],
                "attempt_id": body["attempt_id"],
                "allowed": bool(decision["allowed"]),
                "outcome": str(body["outcome"])[:64],
                "record": text,
                "prev_hash": previous,
                "hash": digest,
            }
        )
        previous = digest
    return rows, previous


async def append(
    session: AsyncSession,
    campaign_id: int,
    records: Sequence[Mapping[str, object]],
    profile_texts: Mapping[str, tuple[str, str]],
    canonical: Canonical,
    chain_hash: ChainHash,
    expected_head: str | None = None,
) -> str | None:
    """Append `records` (in decision order) to the campaign's chain, in the caller's transaction;
    returns the new head hash. `profile_texts`: content hash -> (code, TOML text) of profiles
    the records name that may not be stored yet (the rule passes each once).

    `expected_head` is the head this writer left last time: when the chain still ends there
    (one writer per campaign is the common case) one conditional update both checks and moves
    the head; otherwise the head row is read under its lock (Postgres) and the rows rehashed."""
    if not records:
        return expected_head
    if profile_texts:
        first_at = dt.datetime.fromisoformat(str(records[0]["at"]))
        await session.execute(
            _insert(session, EvidenceProfile)
            .values(
                [
                    {"hash": h, "code": code, "text": text, "created_at": first_at}
                    for h, (code, text) in profile_texts.items()
                ]
            )
            .on_conflict_do_nothing(index_elements=["hash"])
        )
    if expected_head is not None:
        rows, head = _rows(campaign_id, records, expected_head, canonical, chain_hash)
        moved = await session.execute(
            update(EvidenceChain)
            .where(
                EvidenceChain.campaign_id == campaign_id,
                EvidenceChain.head_hash == expected_head,
            )
            .values(head_hash=head)
        )
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            await session.execute(_EVIDENCE_INSERT, rows)
            return head
    # Find (or start) the chain; on Postgres this locks its head row until commit, which orders
    # appends to one chain across processes.
    upsert = _insert(session, EvidenceChain).values(
        campaign_id=campaign_id, head_hash=GENESIS, anchor_hash=GENESIS
    )
    current = upsert.on_conflict_do_update(
        index_elements=["campaign_id"], set_={"campaign_id": upsert.excluded.campaign_id}
    ).returning(EvidenceChain.head_hash)
    previous = (await session.execute(current)).scalar_one()
    rows, head = _rows(campaign_id, records, previous, canonical, chain_hash)
    await session.execute(_EVIDENCE_INSERT, rows)
    await session.execute(
        update(EvidenceChain).where(EvidenceChain.campaign_id == campaign_id).values(head_hash=head)
    )
    return head


@dataclass(frozen=True, slots=True)
class EvidenceQuery:
    account_id: int | None = None
    campaign_id: int | None = None
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive


async def export(session: AsyncSession, query: EvidenceQuery) -> AsyncIterator[ClaimEvidence]:
    """Records matching `query` in chain order, a page at a time."""
    last = 0
    while True:
        stmt = select(ClaimEvidence).where(ClaimEvidence.id > last)
        if query.account_id is not None:
            stmt = stmt.where(ClaimEvidence.account_id == query.account_id)
        if query.campaign_id is not None:
            stmt = stmt.where(ClaimEvidence.campaign_id == query.campaign_id)
        if query.since is not None:
            stmt = stmt.where(ClaimEvidence.at >= query.since)
        if query.until is not None:
            stmt = stmt.where(ClaimEvidence.at < query.until)
        page = list((await session.execute(stmt.order_by(ClaimEvidence.id).limit(PAGE))).scalars())
        if not page:
            return
        for row in page:
            yield row
        last = page[-1].id


@dataclass(slots=True)
class VerifyReport:
    records: int = 0
    chains: int = 0
    breaks: list[tuple[int | None, str]] = field(default_factory=list)  # (record id, what)
    mismatches: list[tuple[int, str]] = field(default_factory=list)  # re-evaluated differently

    @property
    def ok(self) -> bool:
        return not self.breaks and not self.mismatches


def check_row(row: ClaimEvidence, previous: str, chain_hash: ChainHash) -> str | None:
    """What is wrong with `row` as the successor of a record that hashed to `previous`."""
    if row.prev_hash != previous:
        return "chain break: prev_hash does not name the record before it"
    if chain_hash(previous, row.record) != row.hash:
        return "record changed: its hash does not match its content"
    try:
        body = json.loads(row.record)
    except ValueError:
        return "record is not JSON"
    columns = {
        "campaign_id": row.campaign_id,
        "account_id": row.account_id,
        "attempt_id": row.attempt_id,
        "outcome": row.outcome,
    }
    for key, value in columns.items():
        if body.get(key) != value:
            return f"column {key} differs from the hashed record"
    if bool(body["decision"]["allowed"]) != row.allowed:
        return "column allowed differs from the hashed record"
    if dt.datetime.fromisoformat(body["at"]) != row.at:
        return "column at differs from the hashed record"
    return None


async def verify(
    session: AsyncSession,
    chain_hash: ChainHash,
    replay: Callable[[Mapping[str, object], Mapping[str, str]], str | None],
) -> VerifyReport:
    """Walk every chain: each record must follow the one before it, its columns must match its
    hashed content, the head must be the last record, and re-evaluating its stored inputs must
    reach its decision."""
    report = VerifyReport()
    profiles = {
        h: text
        for h, text in await session.execute(select(EvidenceProfile.hash, EvidenceProfile.text))
    }
    chains = {c.campaign_id: c for c in (await session.execute(select(EvidenceChain))).scalars()}
    report.chains = len(chains)
    # One pass in id order over every chain at once (no index but the primary key's): within a
    # chain, ids follow append order.
    previous = {cid: c.anchor_hash for cid, c in chains.items()}
    last = 0
    while True:
        page = list(
            (
                await session.execute(
                    select(ClaimEvidence)
                    .where(ClaimEvidence.id > last)
                    .order_by(ClaimEvidence.id)
                    .limit(PAGE)
                )
            ).scalars()
        )
        if not page:
            break
        for row in page:
            if row.campaign_id not in chains:
                continue  # counted below as belonging to no chain
            report.records += 1
            wrong = check_row(row, previous[row.campaign_id], chain_hash)
            if wrong is not None:
                report.breaks.append((row.id, wrong))
            else:
                why = replay(json.loads(row.record), profiles)
                if why is not None:
                    report.mismatches.append((row.id, why))
            previous[row.campaign_id] = row.hash
        last = page[-1].id
    for cid, chain in sorted(chains.items()):
        if previous[cid] != chain.head_hash:
            report.breaks.append(
                (None, f"campaign {cid}: the chain's head is not its last record "
                       "(records were removed from its end)")
            )  # fmt: skip
    # A record whose campaign has no chain row was written outside `append`.
    orphans = (
        await session.execute(
            select(func.count())
            .select_from(ClaimEvidence)
            .where(ClaimEvidence.campaign_id.not_in(select(EvidenceChain.campaign_id)))
        )
    ).scalar_one()
    if orphans:
        report.breaks.append((None, f"{orphans} record(s) belong to no chain"))
    return report


async def prune(session: AsyncSession, before: dt.datetime) -> int:
    """Delete records older than `before` (retention), each chain cut at its newest such record,
    which becomes the chain's anchor. Returns how many records were deleted."""
    deleted = 0
    cuts = await session.execute(
        select(ClaimEvidence.campaign_id, func.max(ClaimEvidence.id))
        .where(ClaimEvidence.at < before)
        .group_by(ClaimEvidence.campaign_id)
    )
    for campaign_id, through in list(cuts):
        anchor = (
            await session.execute(select(ClaimEvidence.hash).where(ClaimEvidence.id == through))
        ).scalar_one()
        result = await session.execute(
            delete(ClaimEvidence).where(
                ClaimEvidence.campaign_id == campaign_id, ClaimEvidence.id <= through
            )
        )
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
        await session.execute(
            update(EvidenceChain)
            .where(EvidenceChain.campaign_id == campaign_id)
            .values(pruned_through=through, anchor_hash=anchor)
        )
    return deleted
