"""`dialer demo`: a fresh embedded database, the simulated PBX, the real service and engine, and ten
simulated agents, with live figures in the terminal and a closing report.

It owns the demo's lifecycle only; every piece it starts is the production code or the simpbx.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import logging
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from aiohttp import web
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from agents_ws.server import HUB
from dialer import logs, reports
from dialer.app import build_app
from dialer.demo.agents import AgentTally, SimulatedAgent
from dialer.demo.seed import DEMO_PASSWORD, Seeded, seed
from dialer.errors import UserError
from dialer.runtime import RUNTIME
from dialer.settings import AmiServer, Settings
from dialer.simpbx import Behaviour, Fate, ScenarioDebtors, SimPbx
from dialer.store import migrate
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt, Campaign, CampaignState, PromiseToPay
from dialer.telephony.softphones import SIMULATED
from pacing.scenario import Scenario, lognormal, uniform

TESTBED_AGENT_PHONE = "Local/s@sim-agent-phone"  # the testbed's always-answering phone
HUMAN_SEAT = "agent10"  # left free for a person at /agent/ unless --headless
BUSY_STATES = ("reserved", "talking", "wrap_up")


def testbed_number(behaviour: Behaviour) -> str:
    """The real testbed's number (asterisk_conf/testbed) that plays out this behaviour."""
    ring = max(1, min(99, round(behaviour.ring_seconds)))
    fate = behaviour.fate
    if fate is Fate.HUMAN:
        return f"5551{ring:02d}"
    if fate is Fate.MACHINE:
        return f"5552{ring:02d}"
    if fate is Fate.SILENT_HANGUP:
        return f"5556{max(1, min(99, round(behaviour.talk_seconds))):02d}"
    return {
        Fate.BUSY: "555300",
        Fate.NO_ANSWER: "555400",
        Fate.CONGESTION: "555500",
        Fate.INVALID: "555800",
    }[fate]


def demo_scenario() -> Scenario:
    """The pacing simulator's debtor model with durations short enough for a two-minute demo."""
    return Scenario(
        name="demo",
        agents=10,
        # A friendlier list than a real collections one (contact 0.1-0.35), so that a
        # two-minute demo shows many conversations.
        contact_curve=((0.0, 0.5),),
        answer_time=uniform(2.0, 6.0),
        no_answer_time=uniform(3.0, 20.0),
        talk_time=lognormal(12.0, 0.4),
        wrap_time=uniform(2.0, 5.0),
        machine_share=0.12,
        amd_delay_s=1.5,
        machine_talk_time=uniform(4.0, 10.0),
        ring_timeout_s=15.0,
        patience_s=2.0,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class DemoOptions:
    duration_s: float = 120.0
    headless: bool = False
    json_out: Path | None = None
    port: int = 8080
    workdir: Path | None = None  # where the SQLite file goes; None: a temporary directory
    time_scale: float = 1.0
    seed: int = 7
    asterisk_url: str | None = None  # dial through this real Asterisk (testbed) instead


@dataclasses.dataclass(frozen=True, slots=True)
class LiveFigures:
    calls_in_flight: int
    agents: dict[str, int]
    occupancy: float | None
    abandon_rate: float | None
    promises: int
    dials: int

    def line(self) -> str:
        states = " ".join(f"{k}={v}" for k, v in sorted(self.agents.items()))
        occ = "-" if self.occupancy is None else f"{self.occupancy:.0%}"
        ab = "-" if self.abandon_rate is None else f"{self.abandon_rate:.1%}"
        return (
            f"dials {self.dials:4d} | in flight {self.calls_in_flight:3d} | agents {states} | "
            f"occupancy {occ} | abandon {ab} | promises {self.promises}"
        )


def _urls(base: str, seeded: Seeded, headless: bool) -> str:
    lines = [
        f"Agent desktop     {base}/agent/",
        f"Supervisor view   {base}/supervisor/   (login: supervisor)",
        f"Metrics           {base}/metrics",
        f"API (OpenAPI)     {base}/api/openapi.json",
        f"Demo logins       {', '.join(seeded.agent_logins)}, supervisor; "
        f"password: {DEMO_PASSWORD}",
    ]
    if not headless:
        lines.append(
            f"Your seat         log in at {base}/agent/ as {HUMAN_SEAT} "
            "(the other agents are simulated)"
        )
    return "\n".join(lines)


async def _live(app: web.Application, engine: AsyncEngine, campaign_id: int) -> LiveFigures:
    runtime = app[RUNTIME]
    in_flight = len(runtime.engine.calls) if runtime.engine is not None else 0
    states = Counter(str(a.state) for a in app[HUB].snapshot())
    present = sum(n for s, n in states.items() if s != "offline")
    busy = sum(states.get(s, 0) for s in BUSY_STATES)
    async with engine.connect() as conn:
        outcomes = dict(
            (
                await conn.execute(
                    select(CallAttempt.outcome, func.count())
                    .where(CallAttempt.campaign_id == campaign_id)
                    .group_by(CallAttempt.outcome)
                )
            ).all()
        )
        connected = (
            await conn.execute(
                select(func.count()).where(
                    CallAttempt.campaign_id == campaign_id, CallAttempt.bridged_at.is_not(None)
                )
            )
        ).scalar_one()
        promises = (await conn.execute(select(func.count()).select_from(PromiseToPay))).scalar_one()
    abandoned = outcomes.get("abandoned", 0)
    return LiveFigures(
        calls_in_flight=in_flight,
        agents=dict(states),
        occupancy=busy / present if present else None,
        abandon_rate=abandoned / (abandoned + connected) if abandoned + connected else None,
        promises=int(promises),
        dials=sum(outcomes.values()),
    )


async def _report(
    engine: AsyncEngine,
    seeded: Seeded,
    started: dt.datetime,
    ended: dt.datetime,
    tally: AgentTally,
    options: DemoOptions,
) -> dict[str, object]:
    """The closing figures from `dialer.reports` (the same ones `dialer report` prints)."""
    query = reports.ReportQuery(started.date(), ended.date(), campaign_id=seeded.campaign_id)
    by_campaign = await reports.build_report(engine, query, ended)
    by_agent = await reports.build_report(
        engine, dataclasses.replace(query, by=reports.GroupBy.AGENT), ended
    )
    row = next((r for r in by_campaign.rows if r.key == seeded.campaign_id), None)
    agents_used = sum(1 for r in by_agent.rows if r.key is not None and r.connected_to_agent > 0)
    ptp_amount: dict[str, str] = {}
    if row is not None:
        ptp_amount = {c: str(a.quantize(Decimal("0.01"))) for c, a in row.ptp_amount.items()}
    return {
        "duration_s": round((ended - started).total_seconds(), 1),
        "started_at": started.isoformat(),
        "ended_at": ended.isoformat(),
        "campaign_id": seeded.campaign_id,
        "accounts": seeded.accounts,
        "calls_placed": row.dials if row else 0,
        "live_contacts": row.live_contacts if row else 0,
        "connected_to_agent": row.connected_to_agent if row else 0,
        "abandoned": row.abandoned if row else 0,
        "abandon_rate": (row.abandon_rate or 0.0) if row else 0.0,
        "agents_used": agents_used,
        "agents_simulated": tally.logged_in,
        "promises_to_pay": row.ptp_count if row else 0,
        "promised_amount": ptp_amount,
        "occupancy": row.occupancy if row else None,
        "contact_rate": row.contact_rate if row else None,
        "dials_per_agent_hour": row.dials_per_agent_hour if row else None,
        "talk_s": round(row.talk_s, 1) if row else 0.0,
        "wrap_up_s": round(row.wrap_up_s, 1) if row else 0.0,
        "agent_acks": dict(tally.acks),
        "agent_errors": dict(tally.errors),
        "time_scale": options.time_scale,
    }


def _summary(report: dict[str, object]) -> str:
    def pct(v: object) -> str:
        return "-" if not isinstance(v, float | int) else f"{float(v):.1%}"

    return "\n".join(
        [
            "Demo report",
            f"  duration            {report['duration_s']} s",
            f"  calls placed        {report['calls_placed']}",
            f"  live contacts       {report['live_contacts']}",
            f"  connected to agents {report['connected_to_agent']}",
            f"  abandoned           {report['abandoned']} ({pct(report['abandon_rate'])})",
            f"  agents used         {report['agents_used']}",
            f"  occupancy           {pct(report['occupancy'])}",
            f"  promises-to-pay     {report['promises_to_pay']} {report['promised_amount']}",
        ]
    )


async def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> dict[str, object]:
    """Runs the whole demo and returns its report (also written to `options.json_out`)."""
    if options.workdir is not None:
        return await _run(options, _fresh_database(options.workdir), out)
    with tempfile.TemporaryDirectory(prefix="dialer-demo-") as tmp:
        return await _run(options, _fresh_database(Path(tmp)), out)


def _fresh_database(workdir: Path) -> str:
    db_path = workdir / "dialer-demo.sqlite3"
    for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        stale.unlink(missing_ok=True)  # a fresh database each run
    return f"sqlite+aiosqlite:///{db_path}"


async def _run(options: DemoOptions, url: str, out: TextIO) -> dict[str, object]:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    scenario = demo_scenario()
    engine = make_engine(url)
    debtors = ScenarioDebtors(scenario, seed=options.seed)
    pbx = SimPbx(debtors, time_scale=options.time_scale, ring_timeout=scenario.ring_timeout_s)
    runner: web.AppRunner | None = None
    try:
        await migrate.upgrade(engine)
        now = dt.datetime.now(dt.UTC)
        serial = itertools.count()
        async with make_sessionmaker(engine).begin() as s:
            if options.asterisk_url is None:
                seeded = await seed(s, now, rng_seed=options.seed)
            else:
                # The testbed's number decides what the debtor does: draw it from the model.
                seeded = await seed(
                    s,
                    now,
                    rng_seed=options.seed,
                    # A suffix of its own per debtor (the testbed reads the first six digits):
                    # the dialer rings one number once at a time.
                    numbers=lambda: testbed_number(debtors.behaviour("")) + f"{next(serial):04d}",
                    agent_endpoint=lambda _i: TESTBED_AGENT_PHONE,
                )
        if options.asterisk_url is None:
            await pbx.start()
            ami = AmiServer.parse(f"{pbx.url}?name=simpbx")
            where = f"simulated PBX at {pbx.host}:{pbx.port}"
        else:
            ami = AmiServer.parse(options.asterisk_url)
            where = f"Asterisk at {ami.redacted()}"
        settings = Settings(
            database_url=url,
            ami_servers=(ami,),
            http_host="127.0.0.1",
            http_port=options.port,
            process_name="demo",
            recordings_dir=str(Path(tempfile.gettempdir()) / "dialer-demo-recordings"),
            # The desktop's softphone: shown as simulated (the simulated PBX plays both sides).
            softphone_ws_url=SIMULATED if options.asterisk_url is None else "",
        )
        app = await build_app(settings, engine)
        runner = web.AppRunner(app, access_log_class=logs.AccessLog)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", options.port).start()
        except OSError as exc:
            raise UserError(
                f"--port {options.port}: cannot listen on 127.0.0.1 ({exc.strerror}); "
                "pick another port"
            ) from exc
        port = _bound_port(runner) or options.port
        base = f"http://127.0.0.1:{port}"
        try:
            await app[RUNTIME].pool.wait_connected(15)
        except TimeoutError as exc:
            raise UserError(f"AMI: could not log in to the {where} within 15 s") from exc
        say(f"collections-dialer demo: {where}, database {url}")
        say(_urls(base, seeded, options.headless))
        say(f"Running for {options.duration_s:g} s (Ctrl-C ends it early).")
        report = await _drive(app, engine, seeded, base, options, say)
    finally:
        # The AMI links going down at the end is the demo stopping, not news for the terminal.
        logging.getLogger("dialer.telephony").setLevel(logging.ERROR)
        if runner is not None:
            await runner.cleanup()
        await pbx.stop()
        await engine.dispose()
    say(_summary(report))
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(report, indent=2) + "\n")
        say(f"report written to {options.json_out}")
    return report


async def _wind_down(
    app: web.Application, engine: AsyncEngine, campaign_id: int, say: Callable[[str], None]
) -> None:
    """Stop dialing before the agents leave, so that the end of the demo abandons nobody: pause
    the campaign, hang up calls nobody answered yet, let answered ones reach an agent."""
    async with make_sessionmaker(engine).begin() as s:
        await s.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(state=CampaignState.PAUSED.value)
        )
    runtime = app[RUNTIME]
    dialer = runtime.engine
    if dialer is None:
        return
    say("Stopping: no new calls; calls being answered still go to the agents.")
    await asyncio.sleep(1.0)  # the runner reloads the campaign every tick and stops launching
    for call in list(dialer.calls.values()):
        if call.answered is None:
            with contextlib.suppress(Exception):
                await runtime.pool.hang_up(call.attempt_id)
    for _ in range(80):  # at most 8 s: AMD and the connect limit take less
        if all(c.bridged or c.machine or c.abandoned for c in dialer.calls.values()):
            break
        await asyncio.sleep(0.1)


async def _hang_up_testbed_phones(app: web.Application) -> None:
    """Agents' phones stay in the holding bridge after the socket closes (the service does not
    hang them up at logout); on a real Asterisk the demo hangs up the testbed's stand-ins."""
    servers = app[RUNTIME].pool.in_rotation()
    if servers:
        with contextlib.suppress(Exception):
            await servers[0].connection.send(
                {"Action": "Hangup", "Channel": "/^Local/s@sim-agent-phone-/"}
            )


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


async def _drive(
    app: web.Application,
    engine: AsyncEngine,
    seeded: Seeded,
    base: str,
    options: DemoOptions,
    say: Callable[[str], None],
) -> dict[str, object]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    started = dt.datetime.now(dt.UTC)
    tally = AgentTally()
    logins = [login for login in seeded.agent_logins if options.headless or login != HUMAN_SEAT]
    agents = [
        SimulatedAgent(
            base,
            login,
            DEMO_PASSWORD,
            demo_scenario(),
            tally,
            seed=options.seed * 100 + i,
            today=started.date(),
        )
        for i, login in enumerate(logins)
    ]
    tasks = [asyncio.create_task(a.run(stop), name=f"demo-{a.login}") for a in agents]
    deadline = loop.time() + options.duration_s
    try:
        while not stop.is_set() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(1.0, max(0.0, deadline - loop.time())))
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise RuntimeError(f"a simulated agent failed: {failed[0].exception()}")
            if not options.headless:
                say((await _live(app, engine, seeded.campaign_id)).line())
        await _wind_down(app, engine, seeded.campaign_id, say)
    finally:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        _done, pending = await asyncio.wait(tasks, timeout=5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if options.asterisk_url is not None:
            await _hang_up_testbed_phones(app)
    ended = dt.datetime.now(dt.UTC)
    # Let the hub write the agents' last states before the figures are read.
    await asyncio.sleep(0.5)
    return await _report(engine, seeded, started, ended, tally, options)
