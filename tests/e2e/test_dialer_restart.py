"""`dialer serve` as a real process on the real Asterisk and Postgres, killed with SIGKILL in the
middle of a campaign and started again: nothing is dialed twice (Asterisk's view), the attempts the
crash left open are reconciled, and the campaign resumes with agents reconnected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt, CampaignLease
from tests.e2e.campaign_harness import (
    Desk,
    asterisk_view,
    expected_outcomes,
    hang_up_agent_phones,
    numbers_for,
    open_desks,
    seed_campaign,
)
from tests.fixtures.asterisk import AsteriskAmi, connect
from tests.fixtures.postgres import PgServer, _migrated

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]
REPO = Path(__file__).resolve().parents[2]

MIX = {
    "555400": 2,  # rings 25 s: in flight when the dialer dies, still live in Asterisk after
    "555300": 14,  # busy
    "555500": 10,  # congestion
    "555704": 10,  # a person who hangs up 4 s after answering
}
AGENTS = 3
LEASE_S = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """One `dialer serve` subprocess with its own log file."""

    def __init__(
        self, name: str, db_url: str, ami: AsteriskAmi, log_dir: Path, server_name: str = "pbx1"
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        env = {
            **os.environ,
            "DIALER_DATABASE_URL": db_url,
            "DIALER_AMI_SERVERS": f"{ami.url}?name={server_name}",
            "DIALER_HTTP_PORT": str(self.port),
            "DIALER_PROCESS_NAME": name,
            "DIALER_LEASE_SECONDS": str(LEASE_S),
        }
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "serve"],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_up(self, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
            while True:
                assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
                try:
                    async with http.get(self.base_url + "/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


async def connect_agents(
    serve: Serve, logins: list[str], campaign_id: int
) -> tuple[aiohttp.ClientSession, list[Desk], list[asyncio.Task[None]]]:
    http = aiohttp.ClientSession(base_url=serve.base_url)
    desks, readers = await open_desks(http, logins, campaign_id, talk_s=1.0)
    return http, desks, readers


async def drop_agents(
    http: aiohttp.ClientSession, desks: list[Desk], readers: list[asyncio.Task[None]]
) -> None:
    for desk in desks:
        await desk.close()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await http.close()


async def test_a_killed_dialer_restarts_without_dialing_anything_twice(
    pg_server: PgServer, asterisk_ami: AsteriskAmi, log_dir: Path
) -> None:
    url = await _migrated(await pg_server.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    numbers = numbers_for(MIX)
    campaign_id, logins = await seed_campaign(
        sessions, numbers, agents=AGENTS, dial_mode="progressive", name="restart"
    )
    listener = await connect(asterisk_ami)
    first = Serve("dialer-first", url, asterisk_ami, log_dir)
    second: Serve | None = None
    agents = None
    try:
        await first.wait_up()
        agents = await connect_agents(first, logins, campaign_id)

        async def attempts() -> list[CallAttempt]:
            async with sessions() as s:
                return list((await s.execute(select(CallAttempt))).scalars())

        async with asyncio.timeout(60):
            while True:
                rows = await attempts()
                live_400 = [r for r in rows if r.number.startswith("555400") and not r.ended_at]
                if len(rows) >= 12 and live_400:
                    break
                await asyncio.sleep(0.2)
        first.kill()
        killed_at = dt.datetime.now(dt.UTC)
        await drop_agents(*agents)
        agents = None
        left_open = {r.id: r.number for r in await attempts() if r.ended_at is None}
        assert any(n.startswith("555400") for n in left_open.values()), left_open

        second = Serve("dialer-second", url, asterisk_ami, log_dir)
        await second.wait_up()
        agents = await connect_agents(second, logins, campaign_id)
        async with asyncio.timeout(90):
            while True:
                rows = await attempts()
                if len(rows) >= len(numbers) and all(r.ended_at for r in rows):
                    break
                await asyncio.sleep(0.5)
        await asyncio.sleep(1.5)  # a few more ticks: nothing may be dialed again
        rows = await attempts()
        async with sessions() as s:
            lease = await s.get(CampaignLease, campaign_id)
    finally:
        if agents is not None:
            await drop_agents(*agents)
        first.kill() if first.proc.poll() is None else None
        if second is not None:
            second.stop()
        await hang_up_agent_phones(listener)
        await db.dispose()
    await asyncio.sleep(1.0)
    view = asterisk_view(listener)
    listener.manager.close()
    await pg_server.drop_database(url)

    # No account dialed twice, and Asterisk saw exactly one Originate (one ChannelId) per attempt.
    assert sorted(Counter(r.account_id for r in rows).values()) == [1] * len(numbers)
    assert set(view) == {r.id for r in rows}
    assert {i: c.linkedids for i, c in view.items() if len(c.linkedids) != 1} == {}
    # The attempts the crash left open were reconciled: the ringing ones followed to their end in
    # Asterisk (closed after their last channel hung up, with the outcome Asterisk reported),
    # the rest closed as lost.
    for attempt_id in left_open:
        row = next(r for r in rows if r.id == attempt_id)
        if row.number.startswith("555400"):  # rang out 25 s after the dial: surely adopted alive
            assert row.outcome == "no_answer", (row.number, row.outcome)
        else:
            real = expected_outcomes(row.number) | {"lost"}
            assert row.outcome in real, (row.number, row.outcome)
        assert row.ended_at is not None
        assert row.ended_at.timestamp() >= view[attempt_id].last_hangup_ts - 0.5, row.number
    # The campaign resumed under the second process, which dialed the rest.
    assert lease is not None and lease.owner == "dialer-second"
    resumed = [r for r in rows if r.created_at > killed_at]
    assert resumed and len(rows) == len(numbers)
    closed_normally = [r for r in rows if r.id not in left_open]
    assert [
        (r.number, r.outcome)
        for r in closed_normally
        if r.outcome not in expected_outcomes(r.number)
    ] == []
    print(
        f"\nleft open by the kill: {sorted(left_open.values())}; "
        f"reconciled as {Counter(r.outcome for r in rows if r.id in left_open)}; "
        f"dialed after the restart: {len(resumed)}"
    )


# Calls that end while no dialer process runs: people who answer after the kill (the dialplan
# plays them the safe harbor by itself) and conversations bridged before it that the debtor ends
# during it.
OUTAGE_MIX = {
    "555106": 6,  # a person answers 6 s after the dial: while nobody runs, safe harbor
    "555709": 6,  # a person answers after 1 s, is bridged, hangs up 9 s later (during the outage)
    "555300": 6,  # busy
}


async def test_calls_that_end_while_no_dialer_runs_are_recorded_from_asterisks_records(
    pg_server: PgServer, asterisk_ami: AsteriskAmi, log_dir: Path
) -> None:
    url = await _migrated(await pg_server.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    numbers = numbers_for(OUTAGE_MIX, seed=15)
    campaign_id, logins = await seed_campaign(
        sessions, numbers, agents=5, dial_mode="progressive", name="outage"
    )
    listener = await connect(asterisk_ami)
    first = Serve("dialer-records-1", url, asterisk_ami, log_dir)
    second: Serve | None = None
    agents = None

    async def attempts() -> list[CallAttempt]:
        async with sessions() as s:
            return list((await s.execute(select(CallAttempt))).scalars())

    try:
        await first.wait_up()
        http = aiohttp.ClientSession(base_url=first.base_url)
        # Agents who stay on the line: the debtor (555709) ends the conversation.
        desks, readers = await open_desks(http, logins, campaign_id, talk_s=60.0)
        agents = (http, desks, readers)
        async with asyncio.timeout(90):
            while True:
                rows = await attempts()
                talking = [r for r in rows if r.bridged_at and not r.ended_at]
                ringing = [
                    r
                    for r in rows
                    if r.number.startswith("555106") and not r.answered_at and not r.ended_at
                ]
                if talking and ringing:
                    break
                await asyncio.sleep(0.1)
        first.kill()
        await drop_agents(*agents)
        agents = None
        left_open = {r.id: r.number for r in await attempts() if r.ended_at is None}
        # Wait, with no dialer running, until Asterisk has ended every one of them.
        async with asyncio.timeout(40):
            while True:
                view = asterisk_view(listener)
                if all(
                    i in view and not view[i].open_channels and view[i].last_hangup_ts > 0
                    for i in left_open
                ):
                    break
                await asyncio.sleep(0.5)
        second = Serve("dialer-records-2", url, asterisk_ami, log_dir)
        await second.wait_up()
        async with asyncio.timeout(30):
            while True:
                rows = {r.id: r for r in await attempts()}
                if all(rows[i].ended_at for i in left_open):
                    break
                await asyncio.sleep(0.3)
    finally:
        if agents is not None:
            await drop_agents(*agents)
        first.kill() if first.proc.poll() is None else None
        if second is not None:
            second.stop()
        await hang_up_agent_phones(listener)
        await db.dispose()
    view = asterisk_view(listener)
    listener.manager.close()
    await pg_server.drop_database(url)

    from tests.e2e.test_campaign_e2e import asterisk_verdict

    checked: Counter[str] = Counter()
    for attempt_id, number in left_open.items():
        row = rows[attempt_id]
        outcome, bridged, abandoned = asterisk_verdict(view[attempt_id])
        expected = outcome or next(iter(expected_outcomes(number)))
        got = (row.outcome, row.bridged_at is not None, row.abandoned)
        assert got == (expected, bridged, abandoned), (
            f"attempt {attempt_id} ({number}): db {got}, Asterisk {(expected, bridged, abandoned)}"
            + "\n  " + "\n  ".join(view[attempt_id].trace)
        )  # fmt: skip
        checked[row.outcome or ""] += 1
    # Asterisk has a record of every one of them: none is lost.
    assert checked["lost"] == 0
    assert checked["human"] >= 1 and checked["abandoned"] >= 1, checked
    print(f"\nended while no dialer ran, recorded from Asterisk's records: {dict(checked)}")
