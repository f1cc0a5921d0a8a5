"""TCPA: with `wireless_consent_required`, the dialer itself never launches a call to a wireless
(or possibly wireless) number without a consent on record; an agent's click in preview may, and
its evidence says whose click it was."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.compliance.claiming import claim_options
from dialer.engine.engine import Engine
from dialer.store.claim import claim_phones, recheck_held
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Campaign, CampaignAccount, ClaimEvidence, Consent, Phone
from tests.integration.test_engine import Hub, Telephony

pytestmark = pytest.mark.postgres
# 12:00 in Madrid on a Wednesday, 06:00 in New York: the Spanish window (09-21) is open.
NOW = dt.datetime(2026, 6, 10, 10, 0, tzinfo=dt.UTC)
MOBILE = "+34612345{:03d}"  # Spanish mobiles: the numbering plan says wireless
FIXED = "+34912345{:03d}"  # Madrid landlines


async def _seed(engine: AsyncEngine, mode: str, phones: list[tuple[str, str]]) -> int:
    """One account per (number, declared type); consents as each case says."""
    async with make_sessionmaker(engine).begin() as s:
        c = Campaign(
            name=f"tcpa-{mode}", dial_mode=mode, compliance_profile="ES", state="running",
            caps={"wireless_consent_required": True},
        )  # fmt: skip
        s.add(c)
        await s.flush()
        for i, (number, declared) in enumerate(phones):
            acc = Account(external_ref=f"T{mode}{i}", name="x", balance=Decimal("1.00"))
            acc.phones = [Phone(number=number, phone_type=declared)]
            s.add(acc)
            await s.flush()
            s.add(CampaignAccount(campaign_id=c.id, account_id=acc.id, priority=100 - i))
        return c.id


async def _claim(engine: AsyncEngine, cid: int) -> list[str]:
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        opts = claim_options(campaign)
        result = await claim_phones(s, cid, 10, NOW, opts.rule, order=opts.order)
    return sorted(c.number for c in result.claimed)


async def test_predictive_dials_only_landlines_and_consented_wireless(engine: AsyncEngine) -> None:
    mobile, consented, revoked = MOBILE.format(1), MOBILE.format(2), MOBILE.format(3)
    fixed, fixed_said_mobile = FIXED.format(4), FIXED.format(5)
    cid = await _seed(
        engine, "predictive",
        [(mobile, "unknown"), (consented, "mobile"), (revoked, "mobile"), (fixed, "home"),
         (fixed_said_mobile, "mobile")],
    )  # fmt: skip
    async with make_sessionmaker(engine).begin() as s:
        s.add(
            Consent(
                number=consented, source="application form", given_at=NOW - dt.timedelta(days=90)
            )
        )
        s.add(
            Consent(number=revoked, source="web", given_at=NOW - dt.timedelta(days=90),
                    revoked_at=NOW - dt.timedelta(days=1))
        )  # fmt: skip
    # A landline the file calls "mobile" is treated as wireless: either source saying so counts.
    assert await _claim(engine, cid) == sorted([consented, fixed])
    async with make_sessionmaker(engine)() as s:
        refused = [
            json.loads(r)
            for r in (
                await s.execute(
                    select(ClaimEvidence.record).where(ClaimEvidence.allowed.is_(False))
                )
            ).scalars()
        ]
    assert {r["decision"]["reason"] for r in refused} == {
        "wireless number without consent: human-initiated calls only"
    }
    assert len(refused) == 3


async def test_the_engine_never_originates_a_wireless_number_without_consent(
    engine: AsyncEngine,
) -> None:
    await _seed(engine, "predictive", [(MOBILE.format(i), "mobile") for i in range(5)])
    tel, hub = Telephony(), Hub()
    hub.add_ready(1, 0.0)
    eng = Engine(make_sessionmaker(engine), tel, hub, owner="t", tick_hz=20, clock=lambda: NOW)
    task = asyncio.create_task(eng.run())
    try:
        async with asyncio.timeout(10):
            while True:  # until every account was judged (and refused)
                async with make_sessionmaker(engine)() as s:
                    judged = len((await s.execute(select(ClaimEvidence.id))).all())
                if judged >= 5:
                    break
                await asyncio.sleep(0.05)
    finally:
        eng.stop()
        await task
    assert tel.originated == []


async def test_preview_lets_the_agents_click_call_it_and_records_the_click(
    engine: AsyncEngine,
) -> None:
    cid = await _seed(engine, "preview", [(MOBILE.format(9), "mobile")])
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        opts = claim_options(campaign)
        held = (await claim_phones(s, cid, 1, NOW, opts.rule, agent_id=3)).claimed[0]
        assert await recheck_held(s, held.attempt_id, NOW, opts.rule, agent_id=3) is None
    async with make_sessionmaker(engine)() as s:
        last = (
            (await s.execute(select(ClaimEvidence).order_by(ClaimEvidence.id.desc())))
            .scalars()
            .first()
        )
    assert last is not None and last.allowed and last.attempt_id == held.attempt_id
    record = json.loads(last.record)
    assert record["stage"] == "dial"
    assert record["launch"] == {"dial_mode": "preview", "by": "agent", "agent_id": 3}
    assert record["rules"]["wireless_consent_required"] is True
