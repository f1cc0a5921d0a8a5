"""Hostile clients against a running `dialer serve` (a real process on Postgres, dialing the
simulated PBX over real AMI) with a live progressive campaign answered by websocket agents.

In order: a wrong-password login flood while calls are answered; an agent disabled mid-shift; a
password reset; oversized, deeply nested, NUL- and surrogate-bearing input on every route and the
websocket while the server's memory is sampled; then every log line (this server's and a short
`dialer demo`'s) is scanned for tokens, phone numbers, names and balances.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from dialer.auth import hash_password
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    AgentStateLog,
    CallAttempt,
    Campaign,
    CampaignAccount,
    Phone,
)
from tests.e2e.campaign_harness import Desk, midday_zone
from tests.e2e.test_dialer_restart import free_port
from tests.fixtures.postgres import PgServer, _migrated, run_sync

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "agent-pass-123"
ADMIN_PASSWORD = "admin-pass-123"
DESKS = 4
ACCOUNTS = 400
RSS_LIMIT_MB = 200.0
# Distinctive debtor data, so that the log scan cannot miss it nor mistake something else for it.
NAME = "Zebulon Quixote"
Msg = dict[str, Any]


def _number(i: int) -> str:
    return f"555708{i:04d}"  # a person answers after 1 s and hangs up 8 s later


def _balance(i: int) -> Decimal:
    return Decimal(f"{48000 + i}.77")


class RssSampler:
    """The server process's resident memory, read from /proc every 20 ms on a thread; and the
    peak of the server with its children (the password-hashing worker) together."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self.peak_tree_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def rss_mb(pid: int) -> float:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return 0.0
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else 0.0

    def children(self) -> list[int]:
        kids: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids += [int(k) for k in task.read_text().split()]
        return kids

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            own = self.rss_mb(self.pid)
            tree = own + sum(self.rss_mb(k) for k in self.children())
            self.peak_mb = max(self.peak_mb, own)
            self.peak_tree_mb = max(self.peak_tree_mb, tree)
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


@dataclass
class Site:
    base_url: str
    db_url: str
    log_path: Path
    proc: subprocess.Popen[bytes]
    rss: RssSampler
    campaign_id: int
    admin: dict[str, str]
    http: aiohttp.ClientSession
    desks: list[Desk] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # every token the suite was given

    async def login(self, login: str, password: str = PASSWORD) -> str:
        async with self.http.post("/api/login", json={"login": login, "password": password}) as r:
            assert r.status == 200, await r.text()
            token = str((await r.json())["token"])
        self.tokens.append(token)
        return token

    async def socket(self, token: str) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
        async with asyncio.timeout(10):
            while json.loads((await ws.receive()).data)["type"] != "welcome":
                pass
        return ws

    def agent_id(self, login: str) -> int:
        async def find() -> int:
            engine = make_engine(self.db_url)
            try:
                async with make_sessionmaker(engine)() as s:
                    return int(
                        (await s.execute(select(Agent.id).where(Agent.login == login))).scalar_one()
                    )
            finally:
                await engine.dispose()

        return run_sync(find())


async def _seed(url: str) -> int:
    engine = make_engine(url)
    try:
        zone = midday_zone(dt.datetime.now(dt.UTC))
        async with make_sessionmaker(engine).begin() as s:
            campaign = Campaign(
                name="hostile",
                dial_mode="progressive",
                state="running",
                amd_enabled=False,
                abandon_limit_s=2.0,
                compliance_profile="MX",
                dispositions=[{"code": "RPC", "label": "RPC", "contact": True, "rpc": True}],
            )
            s.add(campaign)
            agent_hash = hash_password(PASSWORD)
            logins = [f"agent{i}" for i in range(DESKS)] + ["watcher", "victim", "resetme"]
            s.add_all(
                Agent(
                    login=login,
                    name=login.title(),
                    password_hash=agent_hash,
                    endpoint=f"Local/{login}@dialer-agent",
                )
                for login in logins
            )
            s.add(
                Agent(
                    login="root",
                    name="Root",
                    role="admin",
                    password_hash=hash_password(ADMIN_PASSWORD),
                )
            )
            await s.flush()
            accounts = []
            for i in range(ACCOUNTS):
                account = Account(
                    external_ref=f"H-{i:04d}",
                    name=f"{NAME} {i}",
                    balance=_balance(i),
                    currency="MXN",
                    days_past_due=40,
                    aging_bucket="31-60",
                    time_zone=zone,
                )
                account.phones = [Phone(number=_number(i))]
                accounts.append(account)
            s.add_all(accounts)
            await s.flush()
            s.add_all(CampaignAccount(campaign_id=campaign.id, account_id=a.id) for a in accounts)
            return int(campaign.id)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def server(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = run_sync(_migrated(run_sync(pg_server.create_database())))
    campaign_id = run_sync(_seed(url))
    logs = tmp_path_factory.mktemp("hostile")
    pbx = subprocess.Popen(
        [sys.executable, "-m", "dialer.simpbx", "--port", str(free_port())],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert pbx.stdout is not None
    line = pbx.stdout.readline().decode()
    ami = re.search(r"(ami://\S+)", line)
    assert ami, line
    port = free_port()
    log_path = logs / "serve.log"
    log = log_path.open("wb")
    env = {
        **os.environ,
        "DIALER_DATABASE_URL": url,
        "DIALER_AMI_SERVERS": ami.group(1),
        "DIALER_HTTP_PORT": str(port),
        "DIALER_PROCESS_NAME": "hostile",
        "DIALER_LOG_LEVEL": "INFO",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", "serve"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    site = Site(
        f"http://127.0.0.1:{port}",
        url,
        log_path,
        proc,
        RssSampler(proc.pid),
        campaign_id,
        {},
        None,  # type: ignore[arg-type]  # set by the `site` fixture, on the test loop
    )
    try:
        yield site
    finally:
        site.rss.stop()
        for p in (proc, pbx):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        log.close()
        run_sync(pg_server.drop_database(url))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def site(server: Site) -> AsyncIterator[Site]:
    server.http = aiohttp.ClientSession(base_url=server.base_url)
    async with asyncio.timeout(30):
        while True:
            assert server.proc.poll() is None, server.log_path.read_text()[-3000:]
            try:
                async with server.http.get("/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    server.admin = {"Authorization": f"Bearer {await server.login('root', ADMIN_PASSWORD)}"}
    for i in range(DESKS):
        token = await server.login(f"agent{i}")
        desk = Desk(f"agent{i}", await server.socket(token), 2.0, server.campaign_id)
        server.desks.append(desk)
        server.readers.append(asyncio.create_task(desk.read()))
    await asyncio.gather(*(d.go_ready() for d in server.desks))
    try:
        yield server
    finally:
        for desk in server.desks:
            await desk.ws.close()
        for reader in server.readers:
            reader.cancel()
        await asyncio.gather(*server.readers, return_exceptions=True)
        await server.http.close()


async def _attempts(site: Site) -> dict[str, int]:
    engine = make_engine(site.db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = await s.execute(
                select(CallAttempt.outcome, func.count())
                .where(CallAttempt.bridged_at.is_not(None) | CallAttempt.abandoned.is_(True))
                .group_by(CallAttempt.outcome)
            )
            counts = {str(o): int(n) for o, n in rows}
            abandoned = await s.execute(select(func.count()).where(CallAttempt.abandoned.is_(True)))
            counts["abandoned_flag"] = int(abandoned.scalar_one())
            bridged = await s.execute(
                select(func.count()).where(CallAttempt.bridged_at.is_not(None))
            )
            counts["bridged"] = int(bridged.scalar_one())
            return counts
    finally:
        await engine.dispose()


FLOOD = """
import asyncio, json, sys
import aiohttp

async def main(base):
    statuses = []
    connector = aiohttp.TCPConnector(limit=20)  # 20 connections, kept alive
    async with aiohttp.ClientSession(base, connector=connector) as attacker:
        async def one(i):
            body = {"login": ["agent0", "victim", "root", f"nobody{i}"][i % 4], "password": "g"}
            async with attacker.post("/api/login", json=body) as r:
                statuses.append(r.status)
        await asyncio.gather(*(one(i) for i in range(200)))
    print(json.dumps(statuses))

asyncio.run(main(sys.argv[1]))
"""


async def _abandons_with_an_agent_ready(site: Site, since: dt.datetime) -> tuple[int, int]:
    """Calls abandoned since `since`, and of them those abandoned while an agent was ready for
    the whole wait (the dialer was too slow, not short of agents)."""
    engine = make_engine(site.db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            answered = (
                (
                    await s.execute(
                        select(CallAttempt.answered_at).where(
                            CallAttempt.abandoned.is_(True), CallAttempt.answered_at >= since
                        )
                    )
                )
                .scalars()
                .all()
            )
            slow = 0
            for at in answered:
                ready = await s.execute(
                    select(func.count()).where(
                        AgentStateLog.state == "ready",
                        AgentStateLog.started_at <= at,
                        (AgentStateLog.ended_at.is_(None))
                        | (AgentStateLog.ended_at >= at + dt.timedelta(seconds=2)),
                    )
                )
                slow += int(ready.scalar_one() > 0)
            return len(answered), slow
    finally:
        await engine.dispose()


async def _loop_lag_buckets(site: Site) -> dict[float, float]:
    async with site.http.get("/metrics") as r:
        text = await r.text()
    found = re.findall(r'dialer_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)', text)
    return {float(le): float(n) for le, n in found}


def _quantile(after: dict[float, float], before: dict[float, float], q: float) -> float:
    """The bucket bound under which `q` of the samples between two scrapes fell."""
    total = after[float("inf")] - before.get(float("inf"), 0.0)
    for le in sorted(after):
        if after[le] - before.get(le, 0.0) >= q * total:
            return le
    return float("inf")


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def test_a_wrong_password_flood_abandons_no_call_and_the_floor_stays_fast(
    site: Site,
) -> None:
    watcher = await site.socket(await site.login("watcher"))
    stop = asyncio.Event()
    rtts: list[float] = []

    async def measure() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            await watcher.send_str(json.dumps({"v": 1, "type": "ping", "id": f"w{n}"}))
            while True:
                msg = await watcher.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.TEXT, (msg, watcher.close_code)
                if json.loads(msg.data).get("re") == f"w{n}":
                    break
            rtts.append(time.perf_counter() - started)
            await asyncio.sleep(0.08)  # ~10 a second: under the socket's 20 messages/s limit

    async def flood() -> list[int]:
        # From another process, so that the attacker's own work does not slow this process's
        # measurement of the watcher's round trips.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, site.base_url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return [int(x) for x in json.loads(out)]

    # The same measurement without the flood first: this machine's own noise, in this run.
    base_from = dt.datetime.now(dt.UTC)
    meter = asyncio.create_task(measure())
    await asyncio.sleep(10.0)
    stop.set()
    await meter
    base_rtts, rtts[:] = list(rtts), []
    base_abandoned, base_slow = await _abandons_with_an_agent_ready(site, base_from)
    before = await _attempts(site)
    stop.clear()
    lag_before = await _loop_lag_buckets(site)
    meter = asyncio.create_task(measure())
    started = time.monotonic()
    flood_from = dt.datetime.now(dt.UTC)
    try:
        statuses = await flood()
    finally:
        # The admin lifts the lockouts the flood caused (127.0.0.1 is the whole test's address).
        async with site.http.post("/api/login-locks/lift", json={}, headers=site.admin) as r:
            assert r.status == 200
    flood_s = time.monotonic() - started
    await asyncio.sleep(6.0)  # calls answered during the flood reach their end
    stop.set()
    await meter
    after = await _attempts(site)
    server_lag = _quantile(await _loop_lag_buckets(site), lag_before, 0.99)
    abandoned, too_slow = await _abandons_with_an_agent_ready(site, flood_from)
    p99_ms, base_p99_ms = _p99(rtts) * 1000, _p99(base_rtts) * 1000
    print(
        f"\nflood: 200 logins in {flood_s:.2f} s, statuses "
        f"{ {s: statuses.count(s) for s in set(statuses)} }; watcher round trip over "
        f"{len(rtts)} pings p50 {sorted(rtts)[len(rtts) // 2] * 1000:.1f} ms, p99 {p99_ms:.1f} ms; "
        f"calls bridged meanwhile {after['bridged'] - before['bridged']}, abandoned {abandoned} "
        f"({too_slow} with an agent ready); server loop lag p99 <= {server_lag * 1000:.0f} ms; "
        f"peak RSS {site.rss.peak_mb:.0f} MB.\nwithout the flood, just before: round trip p99 "
        f"{base_p99_ms:.1f} ms over {len(base_rtts)} pings, abandoned {base_abandoned} "
        f"({base_slow} with an agent ready)"
    )
    assert len(statuses) == 200 and set(statuses) <= {401, 429}, statuses
    assert statuses.count(429) > 0  # the throttle answered, not only the hasher
    assert after["bridged"] > before["bridged"], "no call was answered during the flood"
    assert too_slow <= base_slow, "abandoned while an agent was ready: the flood slowed the dialer"
    # 100 ms, unless this shared machine is slower than that without any flood (then the flood
    # may not make it more than twice as slow); the bug this guards against gave 1.5 s.
    assert p99_ms < max(100.0, 2 * base_p99_ms)
    await watcher.close()


async def test_an_agent_disabled_mid_shift_is_out_within_a_second_and_never_reserved(
    site: Site,
) -> None:
    victim = Desk("victim", await site.socket(await site.login("victim")), 2.0, site.campaign_id)
    reader = asyncio.create_task(victim.read())
    await victim.go_ready()
    victim_id = site.agent_id("victim")
    disabled_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    async with site.http.patch(
        f"/api/agents/{victim_id}", json={"active": False}, headers=site.admin
    ) as r:
        assert r.status == 200
    await asyncio.wait_for(reader, 1.0)  # the server closed the socket
    closed_s = time.monotonic() - started
    print(f"\ndisabled agent's socket closed {closed_s * 1000:.0f} ms after the PATCH")
    assert victim.ws.close_code == 4001
    assert any(e.get("code") == "session_revoked" for e in victim.errors)
    before = await _attempts(site)
    await asyncio.sleep(5.0)  # the campaign goes on with the other agents
    assert (await _attempts(site))["bridged"] > before["bridged"]
    engine = make_engine(site.db_url)
    try:
        async with make_sessionmaker(engine)() as s:
            states = (
                await s.execute(
                    select(AgentStateLog.state).where(
                        AgentStateLog.agent_id == victim_id,
                        AgentStateLog.started_at > disabled_at + dt.timedelta(seconds=1),
                    )
                )
            ).scalars()
            reserved = await s.execute(
                select(func.count()).where(
                    CallAttempt.agent_id == victim_id,
                    CallAttempt.created_at > disabled_at + dt.timedelta(seconds=1),
                )
            )
            assert not {"reserved", "talking", "ready"} & set(states)
            assert reserved.scalar_one() == 0
    finally:
        await engine.dispose()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    ops = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "patch", "put", "delete"):
                ops.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path), op))
    return ops


async def test_a_reset_passwords_old_token_gets_401_on_every_route_and_the_socket(
    site: Site,
) -> None:
    old = await site.login("resetme")
    ws = await site.socket(old)
    reset_id = site.agent_id("resetme")
    async with site.http.patch(
        f"/api/agents/{reset_id}", json={"password": "another-pass-456"}, headers=site.admin
    ) as r:
        assert r.status == 200
    async with asyncio.timeout(1.0):
        while not ws.closed:
            await ws.receive()
    assert ws.close_code == 4001
    async with site.http.get("/api/openapi.json") as r:
        doc = await r.json()
    header = {"Authorization": f"Bearer {old}"}
    checked = 0
    for method, path, op in _operations(doc):
        if op.get("security") == []:
            continue  # the login itself
        async with site.http.request(method, path, headers=header, json={}) as r:
            assert r.status == 401, (method, path, r.status)
            checked += 1
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await site.http.ws_connect("/ws/agent", headers=header)
    assert refused.value.status == 401
    print(f"\nold token refused on {checked} operations and the socket")
    assert checked >= 20
    await site.login("resetme", "another-pass-456")


NASTY = ["a\u0000b", "\ud800", "x\udfffy"]


def _nasty_body(schema: dict[str, Any], value: object) -> dict[str, Any]:
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return {name: value for name in props} or {"x": value}


async def test_hostile_input_on_every_route_and_the_socket_is_a_clear_4xx_within_200_mb(
    site: Site,
) -> None:
    async with site.http.get("/api/openapi.json") as r:
        doc = await r.json()
    answers: dict[int, int] = {}
    bad: list[str] = []

    async def send(method: str, path: str, data: str | bytes | None = None) -> None:
        headers = {**site.admin, "Content-Type": "application/json"}
        try:
            async with site.http.request(method, path, headers=headers, data=data) as r:
                text = await r.text()
                answers[r.status] = answers.get(r.status, 0) + 1
                if r.status >= 500 or '"internal"' in text:
                    bad.append(f"{method} {path} -> {r.status} {text[:200]}")
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            # Refusing a huge body may close the connection before the client finished sending.
            answers[0] = answers.get(0, 0) + 1

    deep = "[" * 6000 + "]" * 6000
    for method, path, op in _operations(doc):
        content = op.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        if "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        if method != "GET":
            await send(method, path, b'{"a":"' + b"x" * 400_000 + b'"}')
            await send(method, path, deep)
            for value in NASTY:
                await send(method, path, json.dumps(_nasty_body(schema, value)))
        for param in op.get("parameters", []) + doc["paths"].get(path, {}).get("parameters", []):
            if param.get("in") == "query":
                for value in ("%00", "%ED%A0%80", "a%00b"):
                    await send(method, f"{path}?{param['name']}={value}")
        await send(method, path.replace("/1", "/%00", 1))

    # Uploads: CSV files with a NUL, a lone surrogate's UTF-8 bytes and invalid UTF-8.
    for csv_body in (
        b"external_ref,name,balance,phone\nX1,Ana\x00Nul,10.00,5551010000\n",
        b"external_ref,name,balance,phone\nX2,Ana\xed\xa0\x80,10.00,5551010001\n",
        b"external_ref,name,balance,phone\nX3,\xff\xfe,10.00,5551010002\n",
    ):
        for path in ("/api/accounts/import", "/api/dnc/import"):
            headers = {**site.admin, "Content-Type": "text/csv"}
            async with site.http.post(path, data=csv_body, headers=headers) as r:
                text = await r.text()
                answers[r.status] = answers.get(r.status, 0) + 1
                if r.status >= 500 or '"internal"' in text:
                    bad.append(f"POST {path} (csv) -> {r.status} {text[:200]}")

    # Five unauthenticated 60 MB login bodies at once, and one sent chunked.
    big = b"x" * (60 * 1024 * 1024)

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(60 * 16):
            yield b"y" * 65536

    async with aiohttp.ClientSession(site.base_url) as anon:

        async def post(data: Any) -> int:
            try:
                async with anon.post("/api/login", data=data) as r:
                    return r.status
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                return 0

        big_statuses = await asyncio.gather(*(post(big) for _ in range(5)), post(chunked()))
    assert set(big_statuses) <= {413, 0} and 413 in big_statuses, big_statuses

    # The websocket: nesting, NUL, surrogates and a frame over the hard limit.
    ws = await site.socket(await site.login("watcher"))
    for frame in (
        "[" * 6000 + "]" * 6000,
        '{"v":1,"type":"disposition","id":"n1","call_id":"1","code":"X","notes":"\\u0000"}',
        '{"v":1,"type":"disposition","id":"s1","call_id":"1","code":"X","notes":"\\ud800"}',
        '{"v":1,"type":"ptp","id":"s2","call_id":"1","\\udc00":1}',
    ):
        await ws.send_str(frame)
        data = json.loads((await ws.receive()).data)
        while data["type"] != "error":
            data = json.loads((await ws.receive()).data)
        assert data["code"] in ("bad_json", "invalid_field"), data
    await ws.send_str(json.dumps({"v": 1, "type": "ping", "id": "alive"}))
    assert json.loads((await ws.receive()).data)["type"] == "pong"
    await ws.send_str("x" * (70 * 1024))  # over the hard limit: the socket is closed, 1009
    msg = await ws.receive()
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    async with site.http.get("/healthz") as r:
        assert r.status == 200
    print(
        f"\nhostile input: {sum(answers.values())} requests, statuses "
        f"{dict(sorted(answers.items()))}; peak RSS of dialer serve {site.rss.peak_mb:.0f} MB "
        f"(with its password-hashing worker process {site.rss.peak_tree_mb:.0f} MB) over "
        f"{site.rss.samples} samples"
    )
    assert not bad, bad[:10]
    assert 0 < site.rss.peak_mb < RSS_LIMIT_MB


def _debtor_data(site: Site) -> list[str]:
    patterns = [NAME, "Zebulon", "Quixote"]
    patterns += [_number(i) for i in range(ACCOUNTS)]
    patterns += [str(_balance(i)) for i in range(ACCOUNTS)]
    return patterns


def _demo_data(workdir: Path) -> list[str]:
    db = next(workdir.glob("*.sqlite3"))
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM accounts")]
        numbers = [r[0] for r in conn.execute("SELECT number FROM phones")]
        balances = [str(r[0]) for r in conn.execute("SELECT balance FROM accounts")]
    found = names + numbers + [n.lstrip("+") for n in numbers] + [n[-10:] for n in numbers]
    return found + [b for b in balances if len(b) >= 6]  # "123.45" and longer


async def test_no_log_line_holds_a_token_a_phone_a_name_or_a_balance(
    site: Site, tmp_path: Path
) -> None:
    # A lookup whose query holds a phone number, on top of whatever the tests above sent.
    async with site.http.get("/api/dnc?number=%2B13055550123", headers=site.admin) as r:
        assert r.status == 200
    workdir = tmp_path / "demo"
    workdir.mkdir()
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialer.cli", "demo", "--duration", "20", "--headless",
        "--port", "0", "--workdir", str(workdir),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(demo.communicate(), 180)
    demo_log = err.decode(errors="replace")
    assert demo.returncode == 0, demo_log[-3000:]
    await asyncio.sleep(0.5)  # the access log line of the last request is written
    serve_log = site.log_path.read_text(errors="replace")
    assert "/api/login" in serve_log and "/api/dnc?number" in serve_log  # names, not values
    assert "13055550123" not in serve_log
    secrets = site.tokens + _debtor_data(site)
    demo_secrets = _demo_data(workdir)
    leaks = [
        (where, value)
        for where, text, wanted in (
            ("serve", serve_log, secrets),
            ("demo", demo_log, demo_secrets),
        )
        for value in wanted
        if value and value in text
    ]
    lines = serve_log.count("\n") + demo_log.count("\n")
    print(
        f"\nscanned {lines} log lines ({len(out)} bytes of demo report not scanned) for "
        f"{len(secrets) + len(demo_secrets)} values: {len(leaks)} found"
    )
    assert lines > 50
    assert not leaks, leaks[:10]
