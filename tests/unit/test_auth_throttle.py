"""Login throttling, the password pool and the scrubbed access log, without a server.

Oracle (the issue's text): too many failed logins for one login name, or from one address, lock
it for a while; every attempt meanwhile is refused with the time to wait, right password or not;
an administrator can lift the lock; a success clears the login's count. Unknown logins cost a
hash like known ones.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import make_mocked_request
from aiohttp.web import Response

from dialer import auth
from dialer.logs import AccessLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_fifth_failure_locks_the_login_for_the_lockout() -> None:
    clock = Clock()
    t = auth.LoginThrottle(per_login=5, per_address=100, window_s=60, lockout_s=300, clock=clock)
    for _ in range(4):
        t.failed("Ana", "10.0.0.1")
    assert t.retry_after("ana", "10.0.0.9") == 0  # four failures: still allowed
    t.failed("ana", "10.0.0.1")
    assert t.retry_after("ANA", "10.0.0.9") == pytest.approx(300)  # from any address
    assert t.retry_after("bob", "10.0.0.9") == 0  # other logins are not affected
    clock.now += 299
    assert t.retry_after("ana", "10.0.0.9") == pytest.approx(1)
    clock.now += 2
    assert t.retry_after("ana", "10.0.0.9") == 0


def test_failures_outside_the_window_do_not_add_up() -> None:
    clock = Clock()
    t = auth.LoginThrottle(per_login=3, per_address=100, window_s=60, lockout_s=300, clock=clock)
    t.failed("ana", "a")
    t.failed("ana", "a")
    clock.now += 61
    t.failed("ana", "a")
    assert t.retry_after("ana", "a") == 0


def test_an_address_trying_many_logins_is_locked() -> None:
    clock = Clock()
    t = auth.LoginThrottle(per_login=5, per_address=10, window_s=60, lockout_s=120, clock=clock)
    for i in range(10):
        t.failed(f"user{i}", "203.0.113.7")
    assert t.retry_after("someone-else", "203.0.113.7") == pytest.approx(120)
    assert t.retry_after("someone-else", "203.0.113.8") == 0
    assert {"kind": "address", "key": "203.0.113.7", "retry_after_s": 120.0} in t.locks()


def test_an_admin_lifts_a_lock_and_a_success_clears_the_count() -> None:
    clock = Clock()
    t = auth.LoginThrottle(per_login=2, per_address=100, window_s=60, lockout_s=300, clock=clock)
    t.failed("ana", "a")
    t.failed("ana", "a")
    assert t.retry_after("ana", "a") > 0
    assert t.lift(login="ana") == 1
    assert t.retry_after("ana", "a") == 0
    t.failed("ana", "a")
    t.succeeded("ana")
    t.failed("ana", "a")
    assert t.retry_after("ana", "a") == 0  # one failure since the success
    t.failed("bob", "b")
    t.failed("bob", "b")
    assert t.lift() == 1  # everything
    assert t.locks() == []


def test_random_login_names_cannot_grow_the_throttle_without_bound() -> None:
    t = auth.LoginThrottle(clock=Clock())
    for i in range(auth.LoginThrottle.MAX_KEYS + 500):
        t.failed(f"guess{i}", "a")
    assert len(t._keys) <= auth.LoginThrottle.MAX_KEYS


async def test_unknown_logins_are_hashed_against_a_dummy_in_the_pool() -> None:
    work = auth.PasswordWork(max_waiting=4, processes=False)
    auth._DUMMY.clear()
    try:
        stored = await work.hash("right-password")
        assert await work.verify(stored, "right-password")
        assert not await work.verify(stored, "wrong-password")
        assert auth._DUMMY == []
        assert not await work.verify(None, "right-password")
        assert auth._DUMMY != []  # the unknown login did an argon2 verify too
    finally:
        await work.aclose()


async def test_the_worker_process_hashes_and_verifies() -> None:
    work = auth.PasswordWork(max_waiting=4)
    stored = await work.hash("right-password")
    assert await work.verify(stored, "right-password")
    assert not await work.verify(stored, "wrong-password")
    assert not await work.verify(None, "right-password")
    await work.aclose()


async def test_a_full_password_queue_refuses_at_once() -> None:
    work = auth.PasswordWork(max_waiting=2, processes=False)
    stored = auth.hash_password("a-password")
    try:
        results = await asyncio.gather(
            *(work.verify(stored, "wrong-guess") for _ in range(6)), return_exceptions=True
        )
        busy = [r for r in results if isinstance(r, auth.HasherBusy)]
        assert len(busy) == 4 and results.count(False) == 2
    finally:
        await work.aclose()


def test_the_access_log_prints_query_names_never_values_or_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.access")
    access = AccessLog(logger, "")
    request = make_mocked_request(
        "GET",
        "/api/dnc?number=%2B13055550123&active=true&token=secret-token-value",
        headers={"Authorization": "Bearer another-secret", "Cookie": "dialer_session=s3cret"},
    )
    with caplog.at_level(logging.INFO, "test.access"):
        access.log(request, Response(status=200), 0.0123)
    line = caplog.records[0].getMessage()
    assert "/api/dnc?active&number&token" in line
    for secret in ("13055550123", "secret-token-value", "another-secret", "s3cret"):
        assert secret not in line
