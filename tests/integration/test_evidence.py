"""Every claim decision leaves an evidence record: re-evaluated from its stored inputs it gives
the same decision, the chain finds a changed, removed or inserted row, and it exports (CLI)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.compliance.claiming import claim_options
from dialer.compliance.evidence import chain_hash, replay
from dialer.store import evidence
from dialer.store.claim import ClaimResult, claim_phones, recheck_held
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    CallAttempt,
    Campaign,
    CampaignAccount,
    ClaimEvidence,
    DncEntry,
    Phone,
)
from tests.integration.test_reports import _dialer

pytestmark = pytest.mark.postgres
# 21:30 in New York, 18:30 in Los Angeles (a Wednesday in June).
NOW = dt.datetime(2026, 6, 11, 1, 30, tzinfo=dt.UTC)
NUMBERS = [
    "+12125550101",  # New York: closed at 21:30
    "+13105550102",  # Los Angeles: open
    "+12085550103",  # Idaho (Boise and Los Angeles): Boise 19:30, open in both
    "+19075550104",  # Alaska with Adak: open
    "+13105550105",  # Los Angeles, but on the DNC list
    "+13105550106",  # Los Angeles, a conversation 2 days ago: Regulation F's 7-day rest
]


async def _seed(engine: AsyncEngine, mode: str = "predictive") -> int:
    async with make_sessionmaker(engine).begin() as s:
        c = Campaign(name=f"ev-{mode}", dial_mode=mode, compliance_profile="US")
        s.add(c)
        await s.flush()
        for i, number in enumerate(NUMBERS):
            acc = Account(external_ref=f"E{i}", name="x", balance=Decimal("1.00"))
            acc.phones = [Phone(number=number)]
            s.add(acc)
            await s.flush()
            s.add(CampaignAccount(campaign_id=c.id, account_id=acc.id))
            if i == 5:
                talked = NOW - dt.timedelta(days=2)
                s.add(
                    CallAttempt(
                        campaign_id=c.id, account_id=acc.id, phone_id=acc.phones[0].id,
                        number=number, created_at=talked, answered_at=talked,
                        bridged_at=talked, ended_at=talked, outcome="completed",
                    )
                )  # fmt: skip
        s.add(DncEntry(number=NUMBERS[4], source="test"))
        return c.id


async def _claim(
    engine: AsyncEngine, cid: int, now: dt.datetime, agent_id: int | None = None
) -> ClaimResult:
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        opts = claim_options(campaign)
        return await claim_phones(
            s, cid, 10, now, opts.rule, order=opts.order, caller_id_for=opts.caller_id_for,
            agent_id=agent_id,
        )  # fmt: skip


async def _verify(engine: AsyncEngine) -> evidence.VerifyReport:
    async with make_sessionmaker(engine)() as s:
        return await evidence.verify(s, chain_hash, replay)


async def _records(engine: AsyncEngine) -> list[ClaimEvidence]:
    async with make_sessionmaker(engine)() as s:
        return list((await s.execute(select(ClaimEvidence).order_by(ClaimEvidence.id))).scalars())


async def test_every_decision_is_recorded_and_re_evaluates_to_itself(engine: AsyncEngine) -> None:
    cid = await _seed(engine)
    result = await _claim(engine, cid, NOW)
    assert len(result.claimed) == 3
    rows = await _records(engine)
    assert len(rows) == len(NUMBERS), "one record per decision, allowed or refused"
    by_reason = {json.loads(r.record)["decision"]["reason"]: r for r in rows if not r.allowed}
    assert set(by_reason) == {
        "US: outside calling window",
        "phone on DNC list",
        "US: conversation in the last 7 days",
    }
    claimed = {c.attempt_id for c in result.claimed}
    assert {r.attempt_id for r in rows if r.allowed} == claimed
    idaho = next(json.loads(r.record) for r in rows if r.account_id == rows[2].account_id)
    zones = next(iter(idaho["facts"]["zones"].values()))
    assert zones["zones"] == ["America/Boise", "America/Los_Angeles"]
    assert idaho["launch"] == {"dial_mode": "predictive", "by": "dialer", "agent_id": None}
    assert idaho["profiles"][0]["code"] == "US" and len(idaho["profiles"][0]["hash"]) == 64
    talked = json.loads(by_reason["US: conversation in the last 7 days"].record)
    assert talked["facts"]["counts"]["last_conversation"].startswith("2026-06-09")
    # Later claims extend the same chain; everything verifies and re-evaluates the same.
    await _claim(engine, cid, NOW + dt.timedelta(hours=12))
    report = await _verify(engine)
    assert report.ok, (report.breaks, report.mismatches)
    assert report.records == len(await _records(engine)) > len(NUMBERS)


async def test_a_changed_row_is_found(engine: AsyncEngine) -> None:
    cid = await _seed(engine)
    await _claim(engine, cid, NOW)
    rows = await _records(engine)
    refused = next(r for r in rows if not r.allowed)
    async with make_sessionmaker(engine).begin() as s:
        await s.execute(
            update(ClaimEvidence).where(ClaimEvidence.id == refused.id).values(allowed=True)
        )
    report = await _verify(engine)
    assert [i for i, _ in report.breaks] == [refused.id]
    # The CLI says so too, and fails.
    status, out, _ = await _dialer(engine, "evidence", "verify")
    assert status == 1 and f"record {refused.id}: column allowed differs" in out


async def test_a_rewritten_record_with_its_hash_recomputed_breaks_the_next_link(
    engine: AsyncEngine,
) -> None:
    cid = await _seed(engine)
    await _claim(engine, cid, NOW)
    rows = await _records(engine)
    first = rows[0]
    body = json.loads(first.record)
    body["decision"]["reason"] = "edited"
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    async with make_sessionmaker(engine).begin() as s:
        await s.execute(
            update(ClaimEvidence)
            .where(ClaimEvidence.id == first.id)
            .values(record=text, hash=chain_hash(first.prev_hash, text))
        )
    report = await _verify(engine)
    assert report.breaks and report.breaks[0][0] == rows[1].id


async def test_removed_rows_are_found_at_the_middle_and_at_the_end(engine: AsyncEngine) -> None:
    cid = await _seed(engine)
    await _claim(engine, cid, NOW)
    rows = await _records(engine)
    async with make_sessionmaker(engine).begin() as s:
        await s.execute(delete(ClaimEvidence).where(ClaimEvidence.id == rows[2].id))
    assert [i for i, _ in (await _verify(engine)).breaks] == [rows[3].id]
    async with make_sessionmaker(engine).begin() as s:
        await s.execute(delete(ClaimEvidence).where(ClaimEvidence.id >= rows[2].id))
    (only,) = (await _verify(engine)).breaks
    assert only[0] is None and "end" in only[1]


async def test_pruning_keeps_the_chain_verifiable(engine: AsyncEngine) -> None:
    cid = await _seed(engine)
    await _claim(engine, cid, NOW - dt.timedelta(days=40))
    await _claim(engine, cid, NOW)
    before = len(await _records(engine))
    async with make_sessionmaker(engine).begin() as s:
        deleted = await evidence.prune(s, NOW - dt.timedelta(days=30))
    assert 0 < deleted < before
    assert (await _verify(engine)).ok


async def test_a_preview_dial_records_the_agents_click(engine: AsyncEngine) -> None:
    cid = await _seed(engine, mode="preview")
    result = await _claim(engine, cid, NOW, agent_id=7)
    held = result.claimed[0]
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        rule = claim_options(campaign).rule
        assert await recheck_held(s, held.attempt_id, NOW, rule, agent_id=7) is None
    rows = await _records(engine)
    dial = json.loads(rows[-1].record)
    assert (dial["stage"], dial["attempt_id"], dial["outcome"]) == (
        "dial",
        held.attempt_id,
        "dialed",
    )
    assert dial["launch"] == {"dial_mode": "preview", "by": "agent", "agent_id": 7}
    assert (await _verify(engine)).ok


async def test_cli_exports_one_account_as_csv_and_a_range_as_json(engine: AsyncEngine) -> None:
    cid = await _seed(engine)
    await _claim(engine, cid, NOW)
    account = (await _records(engine))[1].account_id
    status, out, err = await _dialer(engine, "evidence", "export", "--account", str(account))
    assert status == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["account_id"]) for r in table] == [account]
    assert chain_hash(table[0]["prev_hash"], table[0]["record"]) == table[0]["hash"]
    status, out, err = await _dialer(
        engine, "evidence", "export", "--from", "2026-06-11", "--to", "2026-06-11",
        "--format", "json",
    )  # fmt: skip
    assert status == 0, err
    assert len(json.loads(out)["records"]) == len(NUMBERS)
    status, out, err = await _dialer(engine, "evidence", "export", "--from", "2026-06-12")
    assert status == 0 and out.count("\n") == 1  # the header only
    async with make_sessionmaker(engine)() as s:
        assert (await s.execute(select(func.count()).select_from(ClaimEvidence))).scalar_one()


async def test_api_exports_per_account_and_range_for_supervisors(engine: AsyncEngine) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from dialer.app import build_app
    from dialer.settings import Settings
    from dialer.store.models import Agent
    from tests.integration.test_api import _HASH, _as

    cid = await _seed(engine)
    await _claim(engine, cid, NOW)
    account = (await _records(engine))[0].account_id
    async with make_sessionmaker(engine).begin() as s:
        s.add(Agent(login="sup", name="sup", password_hash=_HASH, role="supervisor"))
        s.add(Agent(login="agt", name="agt", password_hash=_HASH, role="agent"))
    async with TestClient(TestServer(await build_app(Settings(), engine))) as client:
        h = await _as(client, "sup")
        resp = await client.get(f"/api/evidence?account={account}", headers=h)
        assert resp.status == 200, await resp.text()
        (record,) = (await resp.json())["records"]
        assert record["account_id"] == account and record["record"]["inputs"]["phones"]
        resp = await client.get("/api/evidence?from=2026-06-11&to=2026-06-11&format=csv", headers=h)
        assert resp.status == 200 and len(list(csv.DictReader(io.StringIO(await resp.text())))) == 6
        resp = await client.get("/api/evidence?from=2026-06-11", headers=h)
        assert resp.status == 400 and (await resp.json())["field"] == "from"
        resp = await client.get("/api/evidence?account=x1", headers=h)
        assert resp.status == 400 and (await resp.json())["field"] == "account"
        agent = await _as(client, "agt")
        assert (await client.get(f"/api/evidence?account={account}", headers=agent)).status == 403


async def test_one_rule_appending_across_claims_and_a_rollback_keeps_one_chain(
    engine: AsyncEngine,
) -> None:
    # The engine keeps its rule between ticks: its remembered head is a hint; a rolled-back
    # claim leaves it stale and the next append falls back to reading the head.
    cid = await _seed(engine)
    async with make_sessionmaker(engine)() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        opts = claim_options(campaign)
    sessions = make_sessionmaker(engine)
    for hours, commit in ((0, True), (3, False), (6, True), (9, True)):
        at = NOW + dt.timedelta(hours=hours)
        async with sessions() as s:
            await claim_phones(s, cid, 10, at, opts.rule)
            await (s.commit() if commit else s.rollback())
        async with sessions.begin() as s:  # every call ends: all accounts are due again
            await s.execute(
                update(CallAttempt).values(ended_at=at).where(CallAttempt.ended_at.is_(None))
            )
            await s.execute(update(CampaignAccount).values(next_attempt_at=None))
    report = await _verify(engine)
    assert report.ok and report.records == len(await _records(engine)) > len(NUMBERS)
