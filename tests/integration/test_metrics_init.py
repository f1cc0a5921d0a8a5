"""/metrics of a serving dialer: a campaign's series exist at 0 from the moment it runs (so
dashboards show 0, and increase() sees the first call), with its name in dialer_campaign_info;
the supervisor view gets the same campaign's live figures."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from agents_ws.server import HUB
from dialer.app import build_app
from dialer.runtime import RUNTIME
from dialer.settings import AmiServer, Settings
from dialer.simpbx import SimPbx
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Campaign, CampaignAccount, Phone

pytestmark = pytest.mark.postgres


async def samples(client: TestClient, campaign: str) -> dict[tuple[str, str], float]:  # type: ignore[type-arg]
    text = await (await client.get("/metrics")).text()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("campaign") == campaign:
                rest = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "campaign")
                out[(s.name, rest)] = s.value
    return out


async def test_a_running_campaigns_series_start_at_zero(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine).begin() as s:
        campaign = Campaign(
            # The metrics registry is the process's: an id no other test's campaign has, so that
            # earlier tests' counts under the same label cannot show here.
            id=700_000 + uuid.uuid4().int % 100_000,
            name="Cobranza temprana", state="running", compliance_profile="MX",
            dial_mode="progressive", caller_id="+525550000001",
        )  # fmt: skip
        account = Account(external_ref="M-1", name="Debtor", balance=Decimal("10.00"),
                          currency="MXN")  # fmt: skip
        account.phones = [Phone(number="+525551020001")]
        s.add_all([campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        cid = str(campaign.id)
    pbx = SimPbx(time_scale=0.01)
    await pbx.start()
    settings = Settings(
        ami_servers=(AmiServer.parse(f"{pbx.url}?name=sim"),), process_name="metrics-init"
    )
    app = await build_app(settings, engine)
    try:
        async with TestClient(TestServer(app)) as client:
            await app[RUNTIME].pool.wait_connected(15)
            async with asyncio.timeout(20):
                while True:
                    seen = await samples(client, cid)
                    # (The registry is the process's: an earlier test's campaign 1 may linger.)
                    if (
                        seen.get(("dialer_campaign_running", "")) == 1
                        and ("dialer_campaign_info", "name=Cobranza temprana") in seen
                        and ("dialer_promises_to_pay_total", "currency=MXN") in seen
                    ):
                        break
                    await asyncio.sleep(0.5)
            # The supervisor view gets the same campaign, by name, with the pacing decision.
            async with asyncio.timeout(10):
                while not app[HUB].supervisor_snapshot()["campaigns"]:
                    await asyncio.sleep(0.2)
            [live] = app[HUB].supervisor_snapshot()["campaigns"]
    finally:
        await pbx.stop()
    # No agent is ready: nothing was dialed, and yet every counter is there, at 0.
    assert seen[("dialer_campaign_running", "")] == 1
    assert seen[("dialer_campaign_info", "name=Cobranza temprana")] == 1
    assert seen[("dialer_calls_originated_total", "server=sim")] == 0
    assert seen[("dialer_calls_answered_live_total", "")] == 0
    assert seen[("dialer_call_outcomes_total", "outcome=human")] == 0
    assert seen[("dialer_calls_abandoned_total", "")] == 0
    assert seen[("dialer_bridge_latency_seconds_bucket", "le=0.005")] == 0
    assert seen[("dialer_promises_to_pay_total", "currency=MXN")] == 0
    assert seen[("dialer_campaign_stalled", "")] == 0
    assert live["name"] == "Cobranza temprana" and live["campaign_id"] == int(cid)
    assert (live["dialing"], live["ringing"], live["talking"]) == (0, 0, 0)
    # No agent is ready: progressive pacing launches nothing, and says so.
    assert live["decision"].startswith("progressive: launch 0")
