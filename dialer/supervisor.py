"""Long-running tasks with an owner: one shared backoff policy, restarts, and what /healthz says.

Every task that should live as long as the process is started here (`Supervisor.spawn`), never
bare with `asyncio.create_task`: its result is read, an unexpected exit is logged and restarted
after the policy's delay, and while it is down `/healthz` says so. The AMI reconnect loop and
the database retries use the same `Backoff`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger("dialer.supervisor")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: `initial`, doubled each time up to `maximum`, each delay
    spread by +-`jitter` so that many retriers do not knock at once."""

    initial: float = 0.2
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * (1.0 - self.jitter + 2 * self.jitter * random.random())
            delay = min(delay * self.factor, self.maximum)


# The one policy of the process (AMI reconnects, database retries, task restarts). Five seconds at
# most between attempts: dialing resumes within that of a dependency coming back.
DEFAULT_BACKOFF = Backoff()


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: Backoff = DEFAULT_BACKOFF,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    retry_if: Callable[[BaseException], bool] | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
) -> T:
    """Run `operation` until it succeeds, waiting the policy's delays between failures of the
    kinds `retry_on` (or that `retry_if` accepts); any other error is raised at once."""
    delays = policy.delays()
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not isinstance(exc, retry_on) and not (retry_if is not None and retry_if(exc)):
                raise
            if on_failure is not None:
                on_failure(exc)
            delay = next(delays)
            log.warning("%s failed (%s: %s); retrying in %.1f s", what, type(exc).__name__, exc,
                        delay)  # fmt: skip
            await asyncio.sleep(delay)


async def keep_running(
    name: str, factory: Callable[[], Awaitable[None]], *, policy: Backoff = DEFAULT_BACKOFF
) -> None:
    """Run `factory()` again after an unexpected exception (logged), with the policy's delays,
    until it returns normally or is cancelled: for loops owned by a component (AMI audit)."""
    delays = policy.delays()
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting", name)
            await asyncio.sleep(next(delays))


@dataclass(slots=True)
class _Supervised:
    name: str
    factory: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    down_reason: str | None = None


@dataclass
class Supervisor:
    """Owns the process's long-running tasks (see the module docstring)."""

    policy: Backoff = DEFAULT_BACKOFF
    _tasks: dict[str, _Supervised] = field(default_factory=dict)
    _problems: dict[str, tuple[str, float]] = field(default_factory=dict)
    _stopping: bool = False

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run `factory()` until `stop()`; an exception or an unexpected return restarts it."""
        entry = _Supervised(name, factory)
        self._tasks[name] = entry
        entry.task = asyncio.create_task(self._keep(entry), name=f"supervised-{name}")

    async def _keep(self, entry: _Supervised) -> None:
        delays = self.policy.delays()
        while not self._stopping:
            started = time.monotonic()
            try:
                await entry.factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                log.exception("task %s failed; restarting", entry.name)
            else:
                if self._stopping:
                    return
                reason = "returned unexpectedly"
                log.error("task %s returned; restarting", entry.name)
            entry.restarts += 1
            entry.down_reason = reason
            self.report(entry.name, reason)
            if time.monotonic() - started > 30.0:
                delays = self.policy.delays()  # it ran a good while: start the backoff over
            await asyncio.sleep(next(delays))
            self.clear(entry.name)
            entry.down_reason = None

    # -- health -------------------------------------------------------------------------------
    def report(self, what: str, reason: str) -> None:
        """`what` is down (a task restarting, a connection lost) until `clear(what)`."""
        self._problems[what] = (reason, time.monotonic())

    def clear(self, what: str) -> None:
        self._problems.pop(what, None)

    def problems(self) -> dict[str, str]:
        """What is down now and why (empty: healthy)."""
        return {what: reason for what, (reason, _) in self._problems.items()}

    def restarts(self, name: str) -> int:
        entry = self._tasks.get(name)
        return entry.restarts if entry else 0

    def stopping(self) -> None:
        """From now on an exit is the end, not a failure (graceful shutdown)."""
        self._stopping = True

    async def finish(self, name: str, within_s: float) -> None:
        """Wait up to `within_s` for `name` to return by itself (after its own stop signal)."""
        entry = self._tasks.get(name)
        if entry is not None and entry.task is not None:
            await asyncio.wait([entry.task], timeout=within_s)

    async def stop(self) -> None:
        """Cancel what is still running and read every result."""
        self._stopping = True
        tasks = [e.task for e in self._tasks.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
