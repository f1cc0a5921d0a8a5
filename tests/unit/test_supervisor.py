"""The supervisor: every long-running task has an owner that reads its result, restarts it after
the shared backoff, and says what is down meanwhile (what /healthz reports)."""

from __future__ import annotations

import asyncio
import itertools

from dialer.supervisor import Backoff, Supervisor, retry

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


def test_backoff_doubles_up_to_its_maximum() -> None:
    delays = list(itertools.islice(Backoff(initial=0.2, maximum=1.0, jitter=0.0).delays(), 5))
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0]
    spread = list(itertools.islice(Backoff(initial=1.0, maximum=1.0, jitter=0.2).delays(), 50))
    assert all(0.8 <= d <= 1.2 for d in spread)


async def test_a_task_that_fails_is_restarted_and_reported_down_meanwhile() -> None:
    supervisor = Supervisor(policy=Backoff(initial=0.2, maximum=0.2, jitter=0.0))
    runs = 0
    failed = asyncio.Event()
    again = asyncio.Event()

    async def engine() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            failed.set()
            raise RuntimeError("main loop broke")
        again.set()
        await asyncio.Event().wait()

    supervisor.spawn("engine", engine)
    await asyncio.wait_for(failed.wait(), 1)
    await asyncio.sleep(0)
    assert supervisor.problems() == {"engine": "RuntimeError: main loop broke"}
    await asyncio.wait_for(again.wait(), 2)
    assert supervisor.problems() == {} and supervisor.restarts("engine") == 1
    await supervisor.stop()


async def test_a_task_that_returns_unexpectedly_is_restarted_but_not_after_stopping() -> None:
    supervisor = Supervisor(policy=FAST)
    runs = 0

    async def pump() -> None:
        nonlocal runs
        runs += 1

    supervisor.spawn("pump", pump)
    async with asyncio.timeout(2):
        while runs < 3:
            await asyncio.sleep(0.01)
    supervisor.stopping()
    await asyncio.sleep(0.2)
    settled = runs
    await asyncio.sleep(0.2)
    assert runs == settled, "no restart once the process is stopping"
    await supervisor.stop()


async def test_retry_runs_an_operation_until_it_succeeds() -> None:
    attempts: list[int] = []
    seen: list[str] = []

    async def close() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("database away")
        return "closed"

    result = await retry(
        close, what="closing", policy=FAST, on_failure=lambda e: seen.append(str(e))
    )
    assert result == "closed" and len(attempts) == 3 and seen == ["database away"] * 2
