"""AMI benchmark: tracked vs raw panoramisk events/s, and answer -> bridge latency.

The simulated PBX (dialer.simpbx) runs in a separate process and speaks real AMI over loopback.

Phase 1, ingest: the PBX plays `--calls` calls once with no delays (realistic Asterisk 22 event
sequences of the shipped dialplan, interleaved: Newchannel, Newstate, DialBegin/End, Bridge*,
Dialer* UserEvents, OriginateResponse, Hangup) and keeps the bytes. On request it writes them to
one AMI session as fast as TCP takes them, ending with a marker event. Measured on the same
stream in the same run, alternating, `--rounds` times each (best round reported):
  raw      a plain panoramisk Manager whose '*' callback only counts events;
  tracked  the dialer's AsteriskServer: AmiConnection + CallTracker with every call registered,
           CallEvents delivered to an asyncio.Queue drained by a consumer task.
Phase 2, latency: the dialer originates `--in-flight` calls (1,000) on the live PBX; every debtor
answers after 2-10 s and AMD says HUMAN; an engine stand-in bridges each HUMAN CallEvent to an
agent (Redirect). The PBX measures, with its monotonic clock, from writing DialerAwaitingAgent to
reading the Redirect: answer event -> bridge action, TCP both ways included.

Run: python -m benchmarks.ami [--calls 4000] [--in-flight 1000] [--json benchmarks/results/ami.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from panoramisk import Manager
from panoramisk.message import Message

from dialer.settings import AmiServer
from dialer.simpbx.behaviour import Behaviour, Fate, FateMix, RandomDebtors
from dialer.simpbx.server import AmiSession, Fields, SimPbx, channel_id_for, render
from dialer.telephony.ami import AmiOptions
from dialer.telephony.asterisk import AsteriskServer, TelephonyOptions
from dialer.telephony.calls import CallEvent, CallEventKind
from dialer.telephony.pool import ServerPool

GOAL_RATIO = 0.25
GOAL_P99_MS = 20.0
END_MARKER = "BenchEnd"


# ------------------------------------------------------------------------------- PBX process
class HumansAfterRinging:
    """Every debtor answers after 2-10 s and is a person; they talk long enough to stay up."""

    def __init__(self, seed: int = 11) -> None:
        import random

        self._rng = random.Random(seed)

    def behaviour(self, number: str) -> Behaviour:
        return Behaviour(
            Fate.HUMAN,
            ring_seconds=self._rng.uniform(2.0, 10.0),
            talk_seconds=self._rng.uniform(120.0, 180.0),
            amd_seconds=self._rng.uniform(1.5, 3.0),
        )


class BenchPbx(SimPbx):
    """The simulated PBX plus two benchmark actions: BenchReplay and BenchStats."""

    stream: bytes = b""
    stream_events: int = 0

    def _action_benchreplay(self, session: AmiSession, aid: str, fields: Fields) -> None:
        self._reply(session, aid, True, "Replay follows", Events=str(self.stream_events))
        end = render({"Event": "UserEvent", "Privilege": "user,all", "UserEvent": END_MARKER})
        session.write(self.stream + end)

    def _action_benchstats(self, session: AmiSession, aid: str, fields: Fields) -> None:
        latencies = json.dumps([round(x * 1000, 4) for x in self.redirect_latencies])
        self._reply(
            session, aid, True, "Stats", Latencies=latencies, Live=str(len(self.live_calls()))
        )


async def serve(port_file: Path, calls: int) -> None:
    capture = SimPbx(RandomDebtors(FateMix(), seed=3), time_scale=0.0, auto_connect_agent="1001")
    stream = await capture.capture(calls, first_attempt=1)
    pbx = BenchPbx(HumansAfterRinging(), time_scale=1.0, connect_limit=4.0)
    pbx.stream = stream
    pbx.stream_events = stream.count(b"\r\n\r\n")
    await pbx.start()
    await asyncio.to_thread(port_file.write_text, f"{pbx.port} {pbx.stream_events}")
    try:
        await asyncio.Event().wait()
    finally:
        await pbx.stop()


# ---------------------------------------------------------------------------- dialer process
def settings(port: int, max_channels: int = 5000) -> AmiServer:
    return AmiServer("bench", "127.0.0.1", port, "dialer", "simpbx", max_channels)


async def raw_round(port: int) -> tuple[int, float]:
    done = asyncio.get_running_loop().create_future()
    count = 0

    def on_event(_manager: Manager, message: Message) -> None:
        nonlocal count
        count += 1
        if message.event == "UserEvent" and message.userevent == END_MARKER and not done.done():
            done.set_result(None)

    manager = Manager(
        host="127.0.0.1",
        port=port,
        username="dialer",
        secret="simpbx",
        ping_delay=3600,
        loop=asyncio.get_running_loop(),
    )
    manager.register_event("*", on_event)
    await manager.connect()
    await _until(lambda: bool(manager.authenticated), 10.0)
    await asyncio.sleep(0.05)
    count = 0
    started = time.perf_counter()
    manager.send_action({"Action": "BenchReplay"})
    await asyncio.wait_for(done, 120)
    elapsed = time.perf_counter() - started
    manager.close()
    return count, elapsed


async def tracked_round(port: int, calls: int) -> tuple[int, float, int]:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    queue: asyncio.Queue[CallEvent] = asyncio.Queue()
    ended = 0

    async def consume() -> None:
        nonlocal ended
        while True:
            event = await queue.get()
            if event.kind is CallEventKind.ENDED:
                ended += 1

    server = AsteriskServer(
        settings(port),
        queue.put_nowait,
        options=TelephonyOptions(audit_interval=3600.0, ami=AmiOptions(ping_interval=3600.0)),
    )
    handle = server.tracker.handle

    def on_event(message: Message) -> None:
        handle(message)
        if message.event == "UserEvent" and message.userevent == END_MARKER and not done.done():
            done.set_result(None)

    server.connection.on_event = on_event
    consumer = asyncio.create_task(consume())
    await server.start()
    await server.wait_connected(10)
    await asyncio.sleep(0.05)
    for attempt in range(1, calls + 1):
        call = server.tracker.expect(attempt, channel_id_for(attempt))
        server.tracker.originate_queued(call)
    await _until(queue.empty, 10.0)
    handled_before = server.tracker.events_handled
    started = time.perf_counter()
    reply = await server.connection.send({"Action": "BenchReplay"})
    await asyncio.wait_for(done, 120)
    await _until(queue.empty, 10.0)  # the engine has seen every event too
    elapsed = time.perf_counter() - started
    events = int(reply["Events"]) + 1
    assert server.tracker.events_handled > handled_before
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await server.close()
    return events, elapsed, ended


async def latency_phase(port: int, in_flight: int) -> dict[str, object]:
    pool = ServerPool.from_settings(
        [settings(port)],
        options=TelephonyOptions(audit_interval=3600.0, ami=AmiOptions(ping_interval=3600.0)),
    )
    await pool.start()
    await pool.wait_connected(10)
    bridged = 0
    client_ms: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    in_flight_at_answer: list[int] = []

    async def bridge(attempt: int, human_mono: float) -> None:
        nonlocal bridged
        await pool.connect_agent(attempt, "1001")
        client_ms.append((time.monotonic() - human_mono) * 1000)
        bridged += 1

    async def engine() -> None:
        while True:
            event = await pool.events.get()
            if event.kind is CallEventKind.HUMAN and event.attempt_id is not None:
                call = pool.servers[0].tracker.calls[event.attempt_id]
                in_flight_at_answer.append(pool.in_flight())
                task = asyncio.create_task(bridge(event.attempt_id, call.human_mono))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    runner = asyncio.create_task(engine())
    started = time.perf_counter()
    for attempt in range(1, in_flight + 1):
        await pool.originate(attempt, f"5551{attempt % 100:02d}")
    originate_s = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await _until(lambda: bridged >= in_flight, 60.0)
    reply = await pool.servers[0].connection.send({"Action": "BenchStats"})
    server_ms = sorted(json.loads(reply["Latencies"]))
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    # The calls are still up (long talks); hang them up so the PBX is left clean.
    await pool.close()
    client_ms.sort()
    return {
        "bridged": bridged,
        "originate_all_s": round(originate_s, 3),
        "min_calls_in_flight_at_answer": min(in_flight_at_answer, default=0),
        "server_side_ms": _stats(server_ms),
        "client_human_event_to_redirect_reply_ms": _stats(client_ms),
    }


async def _until(predicate: Callable[[], bool], limit_s: float) -> None:
    """Polls `predicate` every loop turn (a benchmark must not add timer granularity)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        await asyncio.sleep(0)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {
        "n": len(ordered),
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


def start_pbx(calls: int) -> tuple[subprocess.Popen[bytes], int, int]:
    """Starts the PBX process; returns it, its AMI port and the replay stream's event count."""
    port_file = Path(f"/tmp/bench-ami-{os.getpid()}.port")
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ami", "--serve", str(port_file), "--calls", str(calls)]
    )
    deadline = time.monotonic() + 120
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the PBX process did not start")
        time.sleep(0.1)
    port, stream_events = (int(x) for x in port_file.read_text().split())
    port_file.unlink()
    return proc, port, stream_events


async def measure(args: argparse.Namespace, port: int, stream_events: int) -> dict[str, object]:
    # Other work on the machine shows up in the latency tail: the load is reported with it.
    load_before = round(os.getloadavg()[0], 2)
    raw: list[float] = []
    tracked: list[float] = []
    ended = 0
    for _ in range(args.rounds):
        count, elapsed = await raw_round(port)
        raw.append(count / elapsed)
        events, elapsed, ended = await tracked_round(port, args.calls)
        tracked.append(events / elapsed)
    latency = await latency_phase(port, args.in_flight)
    best_raw, best_tracked = max(raw), max(tracked)
    server_side = latency["server_side_ms"]
    assert isinstance(server_side, dict)
    result: dict[str, object] = {
        "raw_ingest_events_per_s": round(best_raw),
        "tracked_events_per_s": round(best_tracked),
        "tracked_to_raw_ratio": round(best_tracked / best_raw, 3),
        "answer_to_bridge_ms": {"p50": server_side.get("p50"), "p99": server_side.get("p99")},
        "calls_in_flight": args.in_flight,
        "benchmark": "ami",
        "what": "raw: panoramisk Manager counting events; tracked: AsteriskServer (AmiConnection "
        "+ CallTracker, every call registered, CallEvents to a drained asyncio.Queue); both on "
        "the same replayed stream in the same run. answer_to_bridge: simulated PBX's monotonic "
        "clock from writing DialerAwaitingAgent to reading the engine stand-in's Redirect, with "
        "the PBX in another process",
        "stream": {"calls": args.calls, "events": stream_events, "calls_ended_by_tracker": ended},
        "rounds": {
            "raw_events_per_s": [round(x) for x in raw],
            "tracked_events_per_s": [round(x) for x in tracked],
        },
        "latency": latency,
        "goals": {
            "tracked_to_raw_ratio_min": GOAL_RATIO,
            "answer_to_bridge_p99_ms_max": GOAL_P99_MS,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_before": load_before,
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
    }
    p99 = server_side.get("p99")
    result["goal_met"] = bool(
        best_tracked / best_raw >= GOAL_RATIO and p99 is not None and float(p99) <= GOAL_P99_MS
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve, args.calls))
        return 0
    proc, port, stream_events = start_pbx(args.calls)
    try:
        result = asyncio.run(measure(args, port, stream_events))
    finally:
        proc.terminate()
        proc.wait(10)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
