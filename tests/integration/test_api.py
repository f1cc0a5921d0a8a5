"""The operations API over HTTP from the real app on loopback, against SQLite and Postgres."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.auth import hash_password
from dialer.runtime import RUNTIME
from dialer.settings import AmiServer, Settings
from dialer.simpbx import SimPbx
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    CallAttempt,
    Campaign,
    CampaignLease,
    Phone,
    PromiseToPay,
)

pytestmark = pytest.mark.postgres
Client = TestClient[web.Request, web.Application]
Headers = dict[str, str]
_HASH = hash_password("secret-pw")  # argon2 is slow on purpose: hash once for the module


@pytest_asyncio.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[Client]:
    async with make_sessionmaker(engine).begin() as s:
        for login, role in (("boss", "admin"), ("sup", "supervisor"), ("agt", "agent")):
            s.add(Agent(login=login, name=login, password_hash=_HASH, role=role))
    app = await build_app(Settings(), engine)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _as(client: Client, login: str, password: str = "secret-pw") -> Headers:
    resp = await client.post("/api/login", json={"login": login, "password": password})
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['token']}"}


async def _campaign(client: Client, h: Headers, **fields: object) -> dict[str, object]:
    resp = await client.post("/api/campaigns", json={"name": "early", **fields}, headers=h)
    assert resp.status == 201, await resp.text()
    body: dict[str, object] = await resp.json()
    return body


async def test_openapi_document_lists_every_module_and_needs_no_login(client: Client) -> None:
    resp = await client.get("/api/openapi.json")
    doc = await resp.json()
    assert resp.status == 200 and doc["openapi"].startswith("3.")
    for path in (
        "/api/campaigns", "/api/accounts/import", "/api/dnc", "/api/promises", "/api/callbacks",
        "/api/agents", "/api/reports", "/api/campaigns/{campaign_id}/pacing",
    ):  # fmt: skip
        assert path in doc["paths"], path


async def test_campaigns_need_a_login(client: Client) -> None:
    assert (await client.get("/api/campaigns")).status == 401


async def test_agents_may_not_manage_campaigns(client: Client) -> None:
    resp = await client.get("/api/campaigns", headers=await _as(client, "agt"))
    assert resp.status == 403


async def test_supervisors_may_not_manage_agents(client: Client) -> None:
    resp = await client.get("/api/agents", headers=await _as(client, "sup"))
    assert resp.status == 403


async def test_create_campaign_returns_its_settings(client: Client) -> None:
    h = await _as(client, "sup")
    body = await _campaign(
        client,
        h,
        compliance_profile="CO",
        calling_window={"sat": [["09:00", "12:00"]]},
        caps={"phone_per_day": 2, "account_total": 20},
        claim_order=["aging_youngest_first", "balance_highest_first"],
        caller_id_pool=["+573001112233"],
        caller_id_match_area=True,
    )
    assert body["state"] == "draft" and body["compliance_profile"] == "CO"
    assert body["caps"] == {"phone_per_day": 2, "account_total": 20}
    assert body["claim_order"] == ["aging_youngest_first", "balance_highest_first"]
    assert body["caller_id_match_area"] is True


async def test_duplicate_campaign_name_is_a_conflict(client: Client) -> None:
    h = await _as(client, "sup")
    await _campaign(client, h)
    resp = await client.post("/api/campaigns", json={"name": "early"}, headers=h)
    assert resp.status == 409 and (await resp.json())["field"] == "name"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "caps": {"phone_per_day": "3"}}, "caps.phone_per_day"),
        ({"name": "x", "calling_window": {"mon": [["21:00", "08:00"]]}}, "calling_window.mon[0]"),
        ({"name": "x", "compliance_profile": "XX"}, "compliance_profile"),
        ({"name": "x", "surprise": 1}, "surprise"),
        ({"name": ""}, "name"),
        ({"name": "x", "retry_rules": {"busy": -1}}, "retry_rules.busy"),
    ],
)
async def test_invalid_campaign_is_refused_naming_the_field(
    client: Client, body: dict[str, object], field: str
) -> None:
    resp = await client.post("/api/campaigns", json=body, headers=await _as(client, "sup"))
    assert resp.status == 400
    assert (await resp.json())["field"] == field


async def test_campaign_start_pause_stop(engine: AsyncEngine) -> None:
    # Starting needs a connected Asterisk: the simulated PBX speaks real AMI.
    pbx = SimPbx(time_scale=0.01)
    await pbx.start()
    async with make_sessionmaker(engine).begin() as s:
        s.add(Agent(login="sup", name="sup", password_hash=_HASH, role="supervisor"))
    settings = Settings(ami_servers=(AmiServer.parse(f"{pbx.url}?name=sim"),))
    app = await build_app(settings, engine)
    try:
        async with TestClient(TestServer(app)) as client:
            await app[RUNTIME].pool.wait_connected(15)
            h = await _as(client, "sup")
            cid = (await _campaign(client, h, caller_id="+525550000001"))["id"]
            states = []
            for action in ("start", "pause", "start", "stop"):
                resp = await client.post(f"/api/campaigns/{cid}/{action}", headers=h)
                states.append((await resp.json())["state"])
    finally:
        await pbx.stop()
    assert states == ["running", "paused", "running", "stopped"]


async def test_a_campaign_that_cannot_dial_is_not_started(client: Client) -> None:
    h = await _as(client, "sup")
    cid = (await _campaign(client, h))["id"]
    resp = await client.post(f"/api/campaigns/{cid}/start", headers=h)
    assert resp.status == 409
    body = await resp.json()
    assert body["error"] == "cannot_dial"
    reasons = {r["name"]: r for r in body["reasons"]}
    assert set(reasons) == {f"campaign {cid} (early) caller ID", "asterisk"}
    assert reasons["asterisk"]["detail"].startswith("no Asterisk server is configured")
    assert "DIALER_AMI_SERVERS" in reasons["asterisk"]["fix"]
    assert "--caller-id" in reasons[f"campaign {cid} (early) caller ID"]["fix"]
    assert (await (await client.get(f"/api/campaigns/{cid}", headers=h)).json())["state"] == "draft"


async def test_pausing_a_draft_campaign_is_a_conflict(client: Client) -> None:
    h = await _as(client, "sup")
    cid = (await _campaign(client, h))["id"]
    resp = await client.post(f"/api/campaigns/{cid}/pause", headers=h)
    assert resp.status == 409


async def test_update_changes_only_the_fields_sent(client: Client) -> None:
    h = await _as(client, "sup")
    cid = (await _campaign(client, h, caps={"phone_per_day": 2}))["id"]
    resp = await client.patch(f"/api/campaigns/{cid}", json={"dial_mode": "power"}, headers=h)
    body = await resp.json()
    assert (body["dial_mode"], body["caps"]) == ("power", {"phone_per_day": 2})


async def test_pacing_decision_is_empty_before_the_campaign_runs(client: Client) -> None:
    h = await _as(client, "sup")
    cid = (await _campaign(client, h))["id"]
    body = await (await client.get(f"/api/campaigns/{cid}/pacing", headers=h)).json()
    assert body["decision"] == {} and body["owner"] is None


async def test_pacing_decision_comes_from_the_lease(client: Client, engine: AsyncEngine) -> None:
    h = await _as(client, "sup")
    cid = (await _campaign(client, h))["id"]
    now = dt.datetime.now(dt.UTC)
    async with make_sessionmaker(engine).begin() as s:
        s.add(
            CampaignLease(
                campaign_id=cid, owner="host:1", expires_at=now,
                last_decision={"launch": 3, "reason": "predictive"}, updated_at=now,
            )
        )  # fmt: skip
    body = await (await client.get(f"/api/campaigns/{cid}/pacing", headers=h)).json()
    assert body["decision"] == {"launch": 3, "reason": "predictive"} and body["owner"] == "host:1"


async def _attempts(
    engine: AsyncEngine, cid: int, answered: dt.datetime, abandoned: int, bridged: int
) -> None:
    async with make_sessionmaker(engine).begin() as s:
        acc = Account(external_ref=f"R{answered.timestamp()}", name="x", balance=Decimal("1.00"))
        acc.phones = [Phone(number="+12125550100")]
        s.add(acc)
        await s.flush()
        for i in range(abandoned + bridged):
            s.add(
                CallAttempt(
                    campaign_id=cid, account_id=acc.id, phone_id=acc.phones[0].id,
                    number="+12125550100", created_at=answered, answered_at=answered,
                    ended_at=answered, abandoned=i < abandoned,
                    bridged_at=None if i < abandoned else answered,
                )
            )  # fmt: skip


async def test_us_campaign_shows_its_abandon_rate_over_30_days(
    client: Client, engine: AsyncEngine
) -> None:
    h = await _as(client, "sup")
    cid = int((await _campaign(client, h))["id"])  # type: ignore[call-overload]
    now = dt.datetime.now(dt.UTC)
    await _attempts(engine, cid, now - dt.timedelta(days=29), abandoned=1, bridged=3)
    await _attempts(engine, cid, now - dt.timedelta(days=31), abandoned=5, bridged=0)
    abandon = (await (await client.get(f"/api/campaigns/{cid}", headers=h)).json())["abandon"]
    assert (abandon["abandoned"], abandon["connected"], abandon["rate"]) == (1, 3, 0.25)
    assert abandon["window"] == "rolling 30 days" and abandon["max_rate"] == 0.03


async def test_uk_campaign_counts_only_todays_calls(client: Client, engine: AsyncEngine) -> None:
    h = await _as(client, "sup")
    cid = int((await _campaign(client, h, compliance_profile="UK"))["id"])  # type: ignore[call-overload]
    now = dt.datetime.now(dt.UTC)
    await _attempts(engine, cid, now - dt.timedelta(days=2), abandoned=3, bridged=1)
    abandon = (await (await client.get(f"/api/campaigns/{cid}", headers=h)).json())["abandon"]
    assert abandon["rate"] is None and abandon["window"].startswith("calendar day")


async def test_uploaded_csv_is_imported_and_exported_back_unchanged(client: Client) -> None:
    h = await _as(client, "sup")
    cid = (await _campaign(client, h))["id"]
    upload = (
        "account,name,balance,phone,phone2\n"
        'A1,Ana,"1,234.50",(212) 555-0100,(310) 555-0100\n'
        "A2,Ben,10.00,bad,\n"
    )
    resp = await client.post(
        "/api/accounts/import",
        params={"campaign_id": str(cid), "source": "bank"},
        data=upload.encode(),
        headers={**h, "Content-Type": "text/csv"},
    )
    report = await resp.json()
    assert (report["accepted_rows"], report["rejected_rows"], report["memberships_added"]) == (
        1, 1, 1,
    )  # fmt: skip
    assert report["sample_rejects"][0]["row"] == 3
    exported = await (
        await client.get("/api/accounts/export", params={"source": "bank"}, headers=h)
    ).text()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["external_ref"], r["balance"], r["phone_1"], r["phone_2"]) for r in rows] == [
        ("A1", "1234.50", "+12125550100", "+13105550100")
    ]
    again = await client.post(
        "/api/accounts/import",
        params={"source": "bank"},
        data=exported.encode(),
        headers={**h, "Content-Type": "text/csv"},
    )
    assert (await again.json())["accounts_unchanged"] == 1


async def test_dry_run_upload_reports_what_would_happen_and_writes_nothing(
    client: Client, engine: AsyncEngine
) -> None:
    h = await _as(client, "sup")
    upload = (
        "account;name;balance;País;phone\n"
        "A1;Ana;10.00;México;044 55 1234 5678\n"
        "A2;Ben;12.00;EE. UU.;(646) 264-4909\n"
        "A3;Cai;1.00;Narnia;612 345 678\n"
    )
    resp = await client.post(
        "/api/accounts/import",
        params={"source": "bank", "dry_run": "true"},
        data=upload.encode("cp1252"),
        headers={**h, "Content-Type": "text/csv"},
    )
    report = await resp.json()
    assert resp.status == 200, report
    assert report["dry_run"] is True
    assert (report["accounts_created"], report["rejected_rows"]) == (2, 1)
    assert report["numbers_by_country"] == {"MX": 1, "US": 1}
    assert report["zones_assigned"] == {"America/Mexico_City": 1, "America/New_York": 1}
    reason = "País: unknown country 'Narnia': give an ISO code (MX) or a name (México, Spain)"
    assert report["rejected_by_reason"][reason] == 1
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Account))).scalar_one() == 0
    bad = await client.post(
        "/api/accounts/import", params={"dry_run": "maybe"}, data=upload.encode(),
        headers={**h, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert bad.status == 400


async def test_upload_of_another_media_type_is_refused(client: Client) -> None:
    resp = await client.post(
        "/api/accounts/import", json={"a": 1}, headers=await _as(client, "sup")
    )
    assert resp.status == 415


async def test_account_cease_flag_is_set(client: Client, engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine).begin() as s:
        acc = Account(external_ref="A1", name="x", balance=Decimal("1.00"))
        s.add(acc)
        await s.flush()
        aid = acc.id
    resp = await client.patch(
        f"/api/accounts/{aid}", json={"cease_communication": True}, headers=await _as(client, "sup")
    )
    assert (await resp.json())["cease_communication"] is True


async def test_dnc_entry_with_expiry_is_listed_as_active_until_it_expires(client: Client) -> None:
    h = await _as(client, "sup")
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    for number, expiry, source in (("(212) 555-0100", future, "a"), ("2125550199", past, "a")):
        resp = await client.post(
            "/api/dnc", json={"number": number, "expires_at": expiry, "source": source}, headers=h
        )
        assert resp.status == 201
    active = await (await client.get("/api/dnc", params={"active": "true"}, headers=h)).json()
    assert [e["number"] for e in active["entries"]] == ["+12125550100"]


async def test_dnc_list_upload_is_idempotent(client: Client) -> None:
    h = {**await _as(client, "sup"), "Content-Type": "text/csv"}
    data = b"number,expires_at,reason\n2125550100,2030-01-01,asked\n(212) 555-0101,,\nxx,,\n"
    first = await (await client.post("/api/dnc/import", data=data, headers=h)).json()
    second = await (await client.post("/api/dnc/import", data=data, headers=h)).json()
    assert (first["added"], first["rejected_rows"]) == (2, 1)
    assert (second["added"], second["updated"]) == (0, 2)


async def test_promise_is_marked_kept(client: Client, engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine).begin() as s:
        acc = Account(external_ref="A1", name="x", balance=Decimal("100.00"))
        s.add(acc)
        await s.flush()
        ptp = PromiseToPay(
            account_id=acc.id, amount=Decimal("50.00"), currency="USD",
            due_date=dt.date(2026, 12, 1),
        )  # fmt: skip
        s.add(ptp)
        await s.flush()
        pid = ptp.id
    h = await _as(client, "sup")
    resp = await client.patch(
        f"/api/promises/{pid}", json={"status": "kept", "paid_amount": "50.00"}, headers=h
    )
    assert (await resp.json())["status"] == "kept"
    listed = await (await client.get("/api/promises", params={"status": "kept"}, headers=h)).json()
    assert [(p["id"], p["paid_amount"]) for p in listed["promises"]] == [(pid, "50.00")]


async def test_callback_is_scheduled_and_moved(client: Client, engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine).begin() as s:
        acc = Account(external_ref="A1", name="x", balance=Decimal("1.00"))
        s.add(acc)
        await s.flush()
        aid = acc.id
    h = await _as(client, "sup")
    made = await client.post(
        "/api/callbacks", json={"account_id": aid, "due_at": "2026-12-01T15:00:00Z"}, headers=h
    )
    cb = await made.json()
    assert made.status == 201 and cb["status"] == "pending"
    moved = await client.patch(
        f"/api/callbacks/{cb['id']}", json={"due_at": "2026-12-02T15:00:00Z"}, headers=h
    )
    assert (await moved.json())["due_at"] == "2026-12-02T15:00:00Z"


async def test_callback_for_a_missing_account_is_a_404_naming_it(client: Client) -> None:
    resp = await client.post(
        "/api/callbacks",
        json={"account_id": 999, "due_at": "2026-12-01T15:00:00Z"},
        headers=await _as(client, "sup"),
    )
    assert resp.status == 404 and (await resp.json())["field"] == "account_id"


async def test_admin_creates_an_agent_who_can_then_log_in(
    client: Client, engine: AsyncEngine
) -> None:
    resp = await client.post(
        "/api/agents",
        json={"login": "ana", "name": "Ana", "password": "a-long-password", "role": "agent"},
        headers=await _as(client, "boss"),
    )
    assert resp.status == 201 and "password_hash" not in await resp.json()
    async with make_sessionmaker(engine)() as s:
        stored = (await s.execute(select(Agent.password_hash).where(Agent.login == "ana"))).scalar()
    assert stored is not None and stored.startswith("$argon2")
    await _as(client, "ana", "a-long-password")


async def test_short_agent_password_is_refused(client: Client) -> None:
    resp = await client.post(
        "/api/agents",
        json={"login": "ana", "name": "Ana", "password": "short"},
        headers=await _as(client, "boss"),
    )
    assert resp.status == 400 and (await resp.json())["field"] == "password"


async def test_unknown_campaign_is_404(client: Client) -> None:
    h = await _as(client, "sup")
    assert (await client.get("/api/campaigns/424242", headers=h)).status == 404
    assert (await client.get("/api/campaigns/99999999999999999999999", headers=h)).status == 404


async def test_body_that_is_not_json_is_a_400(client: Client) -> None:
    resp = await client.post("/api/campaigns", data=b"{nope", headers=await _as(client, "sup"))
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_json"


async def test_campaign_created_through_the_api_is_in_the_database(
    client: Client, engine: AsyncEngine
) -> None:
    await _campaign(client, await _as(client, "sup"), caps={"account_per_day": 1})
    async with make_sessionmaker(engine)() as s:
        row = (await s.execute(select(Campaign))).scalar_one()
    assert row.caps == {"account_per_day": 1}
