"""Websocket fan-out benchmark: N agent connections on loopback, screen-pop delivery latency.

The server (the real agents_ws hub and aiohttp endpoint) and the client run in separate processes.
Latency = client receipt and JSON parse minus the server's stamp taken just before
`hub.call_bridged` (CLOCK_MONOTONIC is shared by processes on one Linux machine).

Run: python -m benchmarks.ws [--agents 1000] [--json benchmarks/results/ws.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agents_ws.engine_port import (
    Ack,
    AgentIdentity,
    CallOffer,
    CampaignInfo,
    PortRefused,
    ScreenPop,
    StateChange,
    SupervisorAction,
)
from agents_ws.hub import AgentHub
from agents_ws.protocol import (
    CallbackRequest,
    DispositionRequest,
    JsonObject,
    PromiseRequest,
    WrongNumberRequest,
)
from agents_ws.server import HUB, add_agents_ws_routes

GOAL_P99_MS = 50.0


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def sample_pop(i: int) -> ScreenPop:
    """A screen pop the size and shape of a real one (fictitious data)."""
    return {
        "campaign": {"id": 1, "name": "Tarjetas 31-60"},
        "attempt_id": i,
        "account": {
            "id": i,
            "external_ref": f"TC-{i:06d}",
            "name": "Nombre Ficticio Apellido",
            "balance": "1850000.00",
            "currency": "COP",
            "days_past_due": 47,
            "aging_bucket": "31-60",
            "time_zone": "America/Bogota",
            "local_time": "2026-11-23 10:00",
        },
        "phones": [
            {
                "id": i * 3 + k,
                "number": f"+57300{i:07d}",
                "type": "mobile",
                "priority": k + 1,
                "valid": True,
                "dnc": False,
                "current": k == 0,
            }
            for k in range(3)
        ],
        "payments": [
            {
                "amount": "200000.00",
                "currency": "COP",
                "paid_at": "2026-09-15T15:00:00+00:00",
                "reference": "PSE-8812",
            }
            for _ in range(5)
        ],
        "promises": [
            {
                "id": i,
                "amount": "300000.00",
                "currency": "COP",
                "due_date": "2026-10-01",
                "status": "broken",
                "paid_amount": "0.00",
                "instalments": [],
            }
        ],
        "history": [
            {
                "code": "THIRD_PARTY",
                "notes": "Contestó un familiar; volver a llamar en la tarde",
                "created_at": "2026-11-20T22:10:00+00:00",
                "agent": "agente07",
            }
            for _ in range(5)
        ],
        "callback": None,
        "script": {
            "bucket": "31-60",
            "phase": "renegotiation",
            "source": "default",
            "text": "Su cuenta tiene 47 días de atraso. Podemos ofrecerle un plan en cuotas.",
        },
        "custom_fields": {"producto": "Tarjeta Oro", "sucursal": "Medellín", "segmento": "B"},
        "disposition_codes": [
            {"code": c, "label": c.title(), "contact": True, "rpc": True}
            for c in ("PTP", "RPC_NO_PTP", "REFUSED", "DISPUTE", "THIRD_PARTY", "CALLBACK")
        ],
    }


class BenchPort:
    """An in-memory EnginePort: token `bench-N` is agent N. The database is not on the
    screen-pop path (the engine builds the pop while the call rings), so it is left out."""

    async def authenticate(self, token: str) -> AgentIdentity | None:
        if not token.startswith("bench-"):
            return None
        n = int(token.removeprefix("bench-"))
        return AgentIdentity(n, f"agent{n}", f"Agent {n}", "agent")

    async def campaigns(self) -> list[CampaignInfo]:
        return [CampaignInfo(1, "bench", "predictive")]

    async def open_agent_channel(self, agent: AgentIdentity) -> bool:
        return True

    async def close_agent_channel(self, agent: AgentIdentity) -> None:
        return None

    async def softphone_credentials(self, agent: AgentIdentity) -> JsonObject | None:
        return None

    async def softphone_audio_lost(self, agent: AgentIdentity, reason: str) -> None:
        return None

    async def record_state(self, change: StateChange) -> None:
        return None

    async def submit_disposition(
        self, agent: AgentIdentity, call: CallOffer, request: DispositionRequest
    ) -> Ack:
        return Ack(None)

    async def submit_promise(
        self, agent: AgentIdentity, call: CallOffer, request: PromiseRequest
    ) -> Ack:
        return Ack(None)

    async def submit_callback(
        self, agent: AgentIdentity, call: CallOffer, request: CallbackRequest
    ) -> Ack:
        return Ack(None)

    async def wrong_number(
        self, agent: AgentIdentity, call: CallOffer, request: WrongNumberRequest
    ) -> Ack:
        return Ack(None)

    async def hang_up(self, agent: AgentIdentity, call: CallOffer) -> None:
        raise PortRefused("not in the benchmark", None, "unavailable")

    async def next_preview(
        self, agent: AgentIdentity, campaign_id: int | None
    ) -> tuple[CallOffer, ScreenPop] | None:
        return None

    async def dial_preview(self, agent: AgentIdentity, call: CallOffer) -> None:
        return None

    async def skip_preview(self, agent: AgentIdentity, call: CallOffer) -> None:
        return None

    async def supervise(
        self, supervisor: AgentIdentity, action: SupervisorAction, target_agent_id: int
    ) -> None:
        return None


# --- server process -------------------------------------------------------------------------


async def _push_round(hub: AgentHub, round_no: int, rate: float | None) -> int:
    """One screen pop to every ready agent: back to back (rate None) or `rate` pops a second."""
    agents = [a.agent_id for a in hub.snapshot() if a.state.value == "ready"]
    interval = 0.0 if rate is None else 1.0 / rate
    # Built before the clock starts: the engine assembles a pop while the call rings.
    pops = {agent_id: sample_pop(agent_id) for agent_id in agents}
    start = time.monotonic()
    pushed = 0
    for k, agent_id in enumerate(agents):
        # Each bridge is its own AMI event in the engine, so the loop gets a turn in between.
        delay = start + k * interval - time.monotonic()
        await asyncio.sleep(max(0.0, delay))
        call_id = f"r{round_no}-a{agent_id}"
        # A 1 s wrap-up: agents come back ready after the round, not in the middle of it.
        offer = CallOffer(call_id, 1, agent_id, attempt_id=k, wrap_up_limit_s=1.0)
        if hub.reserve(offer, agent_id) is None:
            continue
        pop = pops[agent_id]
        pop["bench_t0"] = time.monotonic()
        hub.call_bridged(call_id, pop)
        hub.call_ended(call_id)
        pushed += 1
    return pushed


async def _serve(port: int) -> None:
    _raise_fd_limit()
    app = web.Application()
    add_agents_ws_routes(app, BenchPort(), grace_seconds=30.0)
    rounds = iter(range(1_000_000))

    async def run_round(request: web.Request) -> web.Response:
        rate = request.query.get("rate")
        pushed = await _push_round(app[HUB], next(rounds), float(rate) if rate else None)
        return web.json_response({"pushed": pushed})

    async def ready_count(_request: web.Request) -> web.Response:
        hub = app[HUB]
        return web.json_response({"ready": sum(a.state.value == "ready" for a in hub.snapshot())})

    app.router.add_post("/bench/round", run_round)
    app.router.add_get("/bench/ready", ready_count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# --- client process -------------------------------------------------------------------------


async def _agent(
    session: aiohttp.ClientSession,
    url: str,
    n: int,
    latencies: list[float],
    connected: asyncio.Event,
    counter: list[int],
    total: int,
) -> None:
    async with session.ws_connect(url, headers={"Authorization": f"Bearer bench-{n}"}) as ws:
        await ws.send_str('{"type": "state.ready", "id": "r"}')
        counter[0] += 1
        if counter[0] == total:
            connected.set()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data["type"] == "screen_pop":
                latencies.append((time.monotonic() - data["pop"]["bench_t0"]) * 1000.0)


async def _wait_ready(session: aiohttp.ClientSession, base: str, agents: int) -> float:
    start = time.monotonic()
    while True:
        async with session.get(f"{base}/bench/ready") as resp:
            if (await resp.json())["ready"] >= agents:
                return time.monotonic() - start
        await asyncio.sleep(0.05)


def _summary(samples: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 3)

    return {
        "pops": len(ordered),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


async def _client(port: int, agents: int, rounds: int, rate: float) -> dict[str, Any]:
    _raise_fd_limit()
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    connected = asyncio.Event()
    counter = [0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(
                    _agent(
                        session, f"{base}/ws/agent", n + 1, latencies, connected, counter, agents
                    )
                )
                for n in range(agents)
            ]
            await connected.wait()
            await _wait_ready(session, base, agents)
            connect_s = time.monotonic() - t0
            phases: dict[str, Any] = {}
            for name, query in (("burst", ""), (f"paced_{rate:.0f}_per_s", f"?rate={rate}")):
                samples: list[float] = []
                for _ in range(rounds):
                    latencies.clear()
                    async with session.post(f"{base}/bench/round{query}") as resp:
                        pushed = (await resp.json())["pushed"]
                    async with asyncio.timeout(30):
                        while len(latencies) < pushed:  # noqa: ASYNC110 - polls a plain list
                            await asyncio.sleep(0.01)
                    samples.extend(latencies)
                    await _wait_ready(session, base, agents)  # wrap-up expiry returns them
                phases[name] = _summary(samples)
            for task in tasks:
                task.cancel()
    return {"connect_all_s": round(connect_s, 3), "phases": phases}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", nargs="?", default="run", choices=["run", "server", "client"])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="pops per agent per phase")
    parser.add_argument("--rate", type=float, default=500.0, help="pops/s in the paced phase")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    if args.role == "server":
        asyncio.run(_serve(args.port))
        return 0
    if args.role == "client":
        result = asyncio.run(_client(args.port, args.agents, args.rounds, args.rate))
        print(json.dumps(result))
        return 0
    port = args.port or _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ws", "server", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("benchmark server did not start")
        client = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.ws",
                "client",
                "--port",
                str(port),
                "--agents",
                str(args.agents),
                "--rounds",
                str(args.rounds),
                "--rate",
                str(args.rate),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
    finally:
        server.terminate()
        server.wait(10)
    measured = json.loads(client.stdout)
    result = {
        "benchmark": "ws",
        "what": "screen-pop delivery latency: server stamp before hub.call_bridged -> client "
        "receipt and JSON parse, agents_ws hub + aiohttp websocket over loopback, server and "
        "client in separate processes",
        "phases_meaning": {
            "burst": "one pop to each of the agents back to back, as fast as the server goes "
            "(the pushing task yields to the event loop between bridges, as separate AMI "
            "events would); each pop also carries the reserved/talking/wrap-up state "
            "pushes; wrap-ups expire (1 s) after the round",
            "paced": "the same at a fixed rate of pops per second",
        },
        "agents": args.agents,
        "rounds_per_phase": args.rounds,
        "pop_bytes": len(json.dumps(sample_pop(1), separators=(",", ":"), ensure_ascii=False)),
        "goal_p99_ms": GOAL_P99_MS,
        **measured,
        "goal_met": all(p["p99_ms"] < GOAL_P99_MS for p in measured["phases"].values()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "platform": platform.platform(),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
