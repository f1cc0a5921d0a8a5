"""`dialer doctor` against each broken set-up a newcomer meets, on real Postgres and the real
Asterisk sandbox: every failure is reported with its fix, and the exit status says so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.auth import hash_password
from dialer.runtime import RUNTIME
from dialer.settings import AmiServer, Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Agent, Campaign, CampaignAccount, Phone
from tests.fixtures.asterisk import SANDBOX, AsteriskAmi

SANDBOX_PHONE = "Local/s@sim-agent-phone"  # the testbed's always-answering agent phone


def doctor(database_url: str, ami_servers: str = "", *args: str) -> tuple[int, dict[str, dict]]:
    """Runs `dialer doctor --json` as a newcomer would; returns the exit status and the checks
    by name."""
    out = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "doctor", "--json", "--timeout", "3", *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DIALER_DATABASE_URL": database_url,
            "DIALER_AMI_SERVERS": ami_servers,
        },
        timeout=120,
        check=False,
    )
    assert out.stdout, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is (out.returncode == 0)
    return out.returncode, {c["name"]: c for c in report["checks"]}


def failed(checks: dict[str, dict]) -> dict[str, dict]:
    return {name: c for name, c in checks.items() if c["status"] == "fail"}


def ami_url(asterisk: AsteriskAmi) -> str:
    return f"{asterisk.url}?name=pbx"


async def seed(
    engine: AsyncEngine,
    *,
    caller_id: str | None = "+525550000001",
    endpoint: str | None = SANDBOX_PHONE,
    window: dict[str, list[list[str]]] | None = None,
    cease: bool = False,
) -> int:
    """One agent, one running MX campaign with two accounts on sandbox numbers."""
    async with make_sessionmaker(engine).begin() as s:
        s.add(
            Agent(login="ana", name="Ana", password_hash=hash_password("pass-1234"),
                  endpoint=endpoint)
        )  # fmt: skip
        campaign = Campaign(
            name="doctor",
            state="running",
            dial_mode="progressive",
            compliance_profile="MX",
            caller_id=caller_id,
            calling_window=window or {},
        )
        s.add(campaign)
        await s.flush()
        for i in range(2):
            account = Account(
                external_ref=f"D-{i}",
                name="Debtor",
                balance=Decimal("100.00"),
                currency="MXN",
                # A zone where it is midday now: the window is open unless the test closes it.
                time_zone=_midday_zone(),
                cease_communication=cease,
            )
            account.phones = [Phone(number=f"+52555102{i:04d}")]
            s.add(account)
            await s.flush()
            s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        return campaign.id


def _midday_zone() -> str:
    from tests.e2e.test_engine_asterisk import midday_zone

    return midday_zone(dt.datetime.now(dt.UTC))


@pytest.fixture
def sandbox_cli(asterisk_ami: AsteriskAmi) -> Iterator[list[str]]:
    """How to reach this session's sandbox with `scripts/asterisk-sandbox cli`; the dialplan is
    reloaded from the shipped files afterwards, undoing what a test removed."""
    if asterisk_ami.origin != "sandbox":
        pytest.skip("needs this session's own sandbox to break its dialplan")
    fixed = os.environ.get("ASTERISK_SANDBOX_AMI_PORT")
    where = ["--port", str(asterisk_ami.port)]
    if not fixed:
        where += ["--instance", f"pytest-{os.getpid()}"]
    yield where
    subprocess.run([str(SANDBOX), "cli", *where, "dialplan reload"], check=True, timeout=60)


def test_an_empty_database_is_reported_with_the_migrate_fix(tmp_path: Path) -> None:
    status, checks = doctor(f"sqlite+aiosqlite:///{tmp_path}/empty.sqlite3")
    assert status == 1
    schema = checks["database schema"]
    assert schema["status"] == "fail" and "empty database" in schema["detail"]
    assert schema["fix"] == "run `dialer migrate`"
    # Without Asterisk configured, `dialer serve` would not dial: said, with the setting.
    assert "DIALER_AMI_SERVERS" in checks["asterisk"]["fix"]


@pytest.mark.postgres
@pytest.mark.asterisk
async def test_a_healthy_setup_passes(pg_engine: AsyncEngine, pg_url: str,
                                      asterisk_ami: AsteriskAmi) -> None:  # fmt: skip
    campaign_id = await seed(pg_engine)
    status, checks = await asyncio.to_thread(doctor, pg_url, ami_url(asterisk_ami))
    assert failed(checks) == {}, failed(checks)
    assert status == 0
    assert checks["asterisk pbx test call"]["status"] == "ok"
    assert checks["agent ana phone"]["detail"].startswith(SANDBOX_PHONE)
    accounts = checks[f"campaign {campaign_id} (doctor) accounts"]
    assert accounts["detail"].startswith("2 dialable now of 2 accounts")


@pytest.mark.postgres
async def test_an_unreachable_asterisk_is_reported(pg_engine: AsyncEngine, pg_url: str) -> None:
    await seed(pg_engine)
    status, checks = await asyncio.to_thread(
        doctor, pg_url, "ami://dialer:secret@127.0.0.1:1?name=gone"
    )
    assert status == 1
    login = checks["asterisk gone login"]
    assert login["status"] == "fail" and "Connect call failed" in login["detail"]
    assert "DIALER_AMI_SERVERS" in login["fix"] and "manager.conf" in login["fix"]


@pytest.mark.postgres
@pytest.mark.asterisk
async def test_a_missing_dialplan_context_is_reported(
    pg_engine: AsyncEngine, pg_url: str, asterisk_ami: AsteriskAmi, sandbox_cli: list[str]
) -> None:
    await seed(pg_engine)
    removed = await asyncio.to_thread(
        subprocess.run,
        [str(SANDBOX), "cli", *sandbox_cli, "dialplan remove context dialer-agent-session"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "Removed context" in removed.stdout, removed.stdout
    status, checks = await asyncio.to_thread(doctor, pg_url, ami_url(asterisk_ami))
    assert status == 1
    dialplan = checks["asterisk pbx dialplan"]
    assert dialplan["status"] == "fail"
    assert dialplan["detail"] == "missing context [dialer-agent-session]"
    assert "asterisk_conf/extensions.conf" in dialplan["fix"]
    assert "dialplan reload" in dialplan["fix"]


@pytest.mark.postgres
@pytest.mark.asterisk
async def test_agents_without_a_usable_phone_are_reported(
    pg_engine: AsyncEngine, pg_url: str, asterisk_ami: AsteriskAmi
) -> None:
    await seed(pg_engine, endpoint=None)
    async with make_sessionmaker(pg_engine).begin() as s:
        s.add(Agent(login="ben", name="Ben", password_hash="x", endpoint="PJSIP/agent9999"))
    status, checks = await asyncio.to_thread(doctor, pg_url, ami_url(asterisk_ami))
    assert status == 1
    ana = checks["agent ana phone"]
    assert ana["status"] == "fail" and "no phone endpoint" in ana["detail"]
    assert ana["fix"].startswith("`dialer agent update ana --phone PJSIP/")
    ben = checks["agent ben phone"]
    assert ben["status"] == "fail" and "not configured on any Asterisk server" in ben["detail"]
    assert "pjsip.conf" in ben["fix"]


@pytest.mark.postgres
@pytest.mark.asterisk
async def test_a_campaign_without_caller_id_is_reported(
    pg_engine: AsyncEngine, pg_url: str, asterisk_ami: AsteriskAmi
) -> None:
    campaign_id = await seed(pg_engine, caller_id=None)
    status, checks = await asyncio.to_thread(doctor, pg_url, ami_url(asterisk_ami))
    assert status == 1
    assert list(failed(checks)) == [f"campaign {campaign_id} (doctor) caller ID"]
    fix = failed(checks)[f"campaign {campaign_id} (doctor) caller ID"]["fix"]
    assert fix.startswith(f"`dialer campaign update {campaign_id} --caller-id +")


@pytest.mark.postgres
@pytest.mark.asterisk
@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        # Every day closed by the campaign's own narrowing of the MX window.
        (
            {"window": {d: [] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}},
            "window",
        ),
        ({"cease": True}, "cease"),
    ],
    ids=["window-closed", "cease-communication"],
)
async def test_a_campaign_with_nothing_dialable_says_which_rule_blocks_it(
    pg_engine: AsyncEngine,
    pg_url: str,
    asterisk_ami: AsteriskAmi,
    setup: dict[str, object],
    reason: str,
) -> None:
    campaign_id = await seed(pg_engine, **setup)  # type: ignore[arg-type]
    status, checks = await asyncio.to_thread(doctor, pg_url, ami_url(asterisk_ami))
    assert status == 1
    accounts = checks[f"campaign {campaign_id} (doctor) accounts"]
    assert accounts["status"] == "fail"
    assert accounts["detail"].startswith("nothing to dial now: 0 dialable now of 2 accounts")
    blocked = [p for p in accounts["detail"].split("; ") if p.startswith("2 blocked: ")]
    assert len(blocked) == 1 and reason in blocked[0].lower(), accounts["detail"]
    assert accounts["fix"]


@pytest.mark.postgres
@pytest.mark.asterisk
async def test_a_missing_trunk_is_reported_and_refuses_the_start(
    pg_engine: AsyncEngine, pg_url: str, asterisk_ami: AsteriskAmi, sandbox_cli: list[str]
) -> None:
    campaign_id = await seed(pg_engine)
    async with make_sessionmaker(pg_engine).begin() as s:
        campaign = await s.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.state = "draft"
        s.add(Agent(login="sup", name="Sup", role="supervisor",
                    password_hash=hash_password("pass-1234")))  # fmt: skip
    # The dialplan's trunk points at a context that does not exist (undone by the fixture).
    await asyncio.to_thread(
        subprocess.run,
        [str(SANDBOX), "cli", *sandbox_cli, "dialplan set global DIALER_TRUNK_SUFFIX @nowhere"],
        check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    status, checks = await asyncio.to_thread(
        doctor, pg_url, ami_url(asterisk_ami), "--campaign", str(campaign_id)
    )
    assert status == 1
    trunk = checks["asterisk pbx trunk"]
    assert trunk["status"] == "fail" and "context nowhere not found" in trunk["detail"]
    assert "DIALER_TRUNK_SUFFIX" in trunk["fix"]

    # The API's start path asks the same of the Asterisk the service is logged in to.
    settings = Settings(
        ami_servers=(AmiServer.parse(ami_url(asterisk_ami)),), process_name="doctor-start"
    )
    app = await build_app(settings, pg_engine)
    async with TestClient(TestServer(app)) as client:
        await app[RUNTIME].pool.wait_connected(15)
        login = await client.post("/api/login", json={"login": "sup", "password": "pass-1234"})
        token = (await login.json())["token"]
        resp = await client.post(
            f"/api/campaigns/{campaign_id}/start", headers={"Authorization": f"Bearer {token}"}
        )
        body = await resp.json()
    assert resp.status == 409 and body["error"] == "cannot_dial"
    assert [r["name"] for r in body["reasons"]] == ["asterisk pbx trunk"]
