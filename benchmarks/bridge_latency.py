"""Answer -> agent bridged latency over the real Asterisk sandbox, the whole service in the path.

A progressive campaign of `--calls` people (testbed 555101: answers after 1 s, AMD says HUMAN) runs
through `build_app` (engine, pool, hub) against a real Postgres, with `--agents` websocket agents
on nailed-up channels who talk `--talk` seconds and record a disposition. Measured per bridged
call, with Asterisk's own clock (AMI `Timestamp`, timestampevents=yes):

  asterisk   UserEvent DialerAwaitingAgent (the dialplan hands the live, AMD-confirmed call to the
             dialer and starts its 2-second clock) -> BridgeEnter of the debtor's channel into the
             agent's nailed-up channel ([dialer-connect]). This is the latency the debtor hears.
  database   attempts.answered_at -> attempts.bridged_at as the dialer recorded them, both on the
             dialer's clock: answered_at when the AMD HUMAN event reached the telephony layer,
             bridged_at after the Redirect was accepted and the agent's desktop was told.
  pop        the debtor's BridgeEnter (Asterisk's clock) -> the screen pop's arrival at the agent's
             websocket client (this machine's wall clock, the same clock): negative when the pop
             arrived first. The pop is read while the call rings, so it goes out with the bridge.

Needs root for the sandbox (or ASTERISK_AMI_URL) and Postgres binaries (or
DIALER_TEST_DATABASE_URL). Goals: answered -> bridged p50 <= 20 ms and p99 <= 60 ms; the pop no
later than 50 ms after the bridge.

Run: python -m benchmarks.bridge_latency [--calls 120] [--agents 5]
         [--json benchmarks/results/bridge_latency.json] [--baseline OTHER.json]

`--baseline` takes the JSON of a run of other code (e.g. an older commit's checkout, run just
before or after on the same machine) and adds its figures and the ratios to this run's JSON: on a
shared machine the absolute figures move with the load, the ratios much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dialer.app import build_app
from dialer.runtime import RUNTIME
from dialer.settings import AmiServer, Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt
from tests.e2e.campaign_harness import (
    Desk,
    asterisk_view,
    hang_up_agent_phones,
    open_desks,
    seed_campaign,
)
from tests.fixtures.asterisk import SANDBOX, AsteriskAmi, connect, parse_ami_url
from tests.fixtures.postgres import PgServer, _migrated, throwaway_cluster

GOAL_P50_MS = 20.0
GOAL_P99_MS = 60.0
GOAL_POP_AFTER_BRIDGE_MS = 50.0
BENCH_AMI_PORT = 15190


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values_ms: Sequence[float]) -> dict[str, float | int]:
    return {
        "count": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 1),
        "p90_ms": round(percentile(values_ms, 90), 1),
        "p99_ms": round(percentile(values_ms, 99), 1),
        "max_ms": round(max(values_ms), 1),
        "mean_ms": round(sum(values_ms) / len(values_ms), 1),
    }


@contextlib.contextmanager
def asterisk() -> Iterator[AsteriskAmi]:
    given = os.environ.get("ASTERISK_AMI_URL")
    if given:
        yield parse_ami_url(given)
        return
    where = ["--port", str(BENCH_AMI_PORT), "--instance", f"bench-{os.getpid()}"]
    started = subprocess.run(
        [str(SANDBOX), "start", *where], capture_output=True, text=True, timeout=900, check=False
    )
    if started.returncode != 0:
        sys.exit(f"asterisk-sandbox start failed (root needed):\n{started.stderr[-2000:]}")
    env = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    try:
        yield AsteriskAmi(
            env["ASTERISK_AMI_HOST"],
            int(env["ASTERISK_AMI_PORT"]),
            env["ASTERISK_AMI_USERNAME"],
            env["ASTERISK_AMI_SECRET"],
            "sandbox",
        )
    finally:
        subprocess.run(
            [str(SANDBOX), "stop", *where, "--purge"], capture_output=True, timeout=120, check=False
        )


@contextlib.contextmanager
def postgres() -> Iterator[PgServer]:
    given = os.environ.get("DIALER_TEST_DATABASE_URL")
    if given:
        u = make_url(given)
        yield PgServer(
            u.host or "127.0.0.1", u.port or 5432, u.username or "postgres", u.password, "given"
        )
        return
    with throwaway_cluster() as server:
        yield server


async def measure(
    pg: PgServer, ami: AsteriskAmi, calls: int, agents: int, talk_s: float
) -> dict[str, object]:
    url = await _migrated(await pg.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    try:
        campaign_id, logins = await seed_campaign(
            sessions, ["555101"] * calls, agents=agents, dial_mode="progressive", name="bench"
        )
        listener = await connect(ami)
        server = AmiServer("pbx1", ami.host, ami.port, ami.username, ami.secret)
        app = await build_app(Settings(ami_servers=(server,), process_name="bench"), db)
        client = TestClient(TestServer(app))
        await client.start_server()
        desks: list[Desk] = []
        readers: list[asyncio.Task[None]] = []
        started = time.monotonic()
        try:
            await app[RUNTIME].pool.wait_connected(15)
            desks, readers = await open_desks(client, logins, campaign_id, talk_s)
            async with asyncio.timeout(60 + calls * 2):
                while True:
                    async with sessions() as s:
                        rows = list((await s.execute(select(CallAttempt))).scalars())
                    if len(rows) >= calls and all(r.ended_at for r in rows):
                        break
                    await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
        finally:
            for desk in desks:
                await desk.close()
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await client.close()
            await hang_up_agent_phones(listener)
        view = asterisk_view(listener)
        listener.manager.close()
    finally:
        await db.dispose()
        await pg.drop_database(url)

    by_asterisk: list[float] = []
    by_database: list[float] = []
    pop_after_bridge: list[float] = []
    pop_at = {attempt: at for desk in desks for attempt, at in desk.pop_at.items()}
    for row in rows:
        call = view.get(row.id)
        awaiting = call.first("DialerAwaitingAgent") if call else None
        if call and awaiting is not None and call.agent_bridge_ts is not None:
            by_asterisk.append((call.agent_bridge_ts - float(awaiting["Timestamp"])) * 1000)
            if row.id in pop_at:
                pop_after_bridge.append((pop_at[row.id] - call.agent_bridge_ts) * 1000)
        if row.answered_at and row.bridged_at:
            by_database.append((row.bridged_at - row.answered_at).total_seconds() * 1000)
    outcomes: dict[str, int] = {}
    for row in rows:
        outcomes[str(row.outcome)] = outcomes.get(str(row.outcome), 0) + 1
    asterisk_stats = summary(by_asterisk)
    pop_stats = summary(pop_after_bridge)
    return {
        "benchmark": "bridge_latency",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "setup": {
            "calls": calls,
            "agents": agents,
            "talk_s": talk_s,
            "dial_mode": "progressive",
            "number": "555101 (answers after 1 s, AMD HUMAN)",
            "path": "build_app: engine + ServerPool + agents hub, websocket agents, Postgres",
            "elapsed_s": round(elapsed, 1),
        },
        "outcomes": outcomes,
        "asterisk_awaiting_agent_to_bridge_enter": asterisk_stats,
        "database_answered_at_to_bridged_at": summary(by_database) if by_database else None,
        "bridge_enter_to_screen_pop_received": pop_stats,
        "goal_p50_ms": GOAL_P50_MS,
        "goal_p99_ms": GOAL_P99_MS,
        "goal_pop_after_bridge_ms": GOAL_POP_AFTER_BRIDGE_MS,
        "goal_met": float(asterisk_stats["p50_ms"]) <= GOAL_P50_MS
        and float(asterisk_stats["p99_ms"]) <= GOAL_P99_MS
        and float(pop_stats["max_ms"]) <= GOAL_POP_AFTER_BRIDGE_MS,
    }


def compare(baseline: dict[str, object], run: dict[str, object]) -> dict[str, object]:
    """The baseline's answered -> bridged figures, and baseline / this run for each of them."""
    key = "asterisk_awaiting_agent_to_bridge_enter"
    theirs, ours = baseline[key], run[key]
    assert isinstance(theirs, dict) and isinstance(ours, dict)
    return {
        "at": baseline.get("at"),
        "code": baseline.get("code", "see the README"),
        key: theirs,
        "outcomes": baseline.get("outcomes"),
        "speedup": {
            k: round(float(theirs[k]) / float(ours[k]), 2)
            for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")
            if float(ours[k]) > 0
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=120)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--talk", type=float, default=1.0, help="agent talk time, seconds")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--baseline", type=Path, default=None, help="another run's JSON")
    args = parser.parse_args(argv)
    with postgres() as pg, asterisk() as ami:
        result = asyncio.run(measure(pg, ami, args.calls, args.agents, args.talk))
    if args.baseline is not None:
        result["baseline"] = compare(json.loads(args.baseline.read_text()), result)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
