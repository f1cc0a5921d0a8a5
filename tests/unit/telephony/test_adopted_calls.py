"""Calls adopted after a restart: the engine's telephony adapter turns the dialplan's own events
about them (this process never originated them) into their real end."""

from __future__ import annotations

import asyncio

from panoramisk.message import Message

from dialer.engine.pool_telephony import PoolTelephony, to_engine_event
from dialer.settings import AmiServer
from dialer.telephony.pool import ServerPool

CID = "dialer-41-0a1b2c3d"


def _telephony() -> PoolTelephony:
    pool = ServerPool.from_settings([AmiServer("pbx1", "127.0.0.1", 5038, "u", "s", 10)])
    return PoolTelephony(pool)


def _feed(tel: PoolTelephony, *events: dict[str, str]) -> list[tuple[str, str | None]]:
    listener = tel.pool.servers[0].connection.listeners[-1]
    for fields in events:
        listener(Message(fields))
    out: list[tuple[str, str | None]] = []
    queue: asyncio.Queue = tel.pool.events  # type: ignore[type-arg]
    while not queue.empty():
        mapped = to_engine_event(queue.get_nowait())
        assert mapped is not None and mapped.attempt_id == 41
        out.append((mapped.kind.value, mapped.outcome))
    return out


def test_an_adopted_call_that_rang_out_ends_no_answer() -> None:
    tel = _telephony()
    tel.follow([41])
    ended = _feed(
        tel,
        {"Event": "UserEvent", "UserEvent": "DialerDialResult", "Attempt": "41",
         "DialStatus": "NOANSWER", "HangupCause": "19"},
        {"Event": "Hangup", "Uniqueid": f"{CID}-2", "Cause": "19"},
        {"Event": "Hangup", "Uniqueid": CID, "Cause": "19", "Channel": "Local/555400@x-1;1"},
    )  # fmt: skip
    assert ended == [("ended", "no_answer")]


def test_an_adopted_call_in_the_safe_harbor_ends_abandoned() -> None:
    tel = _telephony()
    tel.follow([41])
    ended = _feed(
        tel,
        {"Event": "UserEvent", "UserEvent": "DialerCallEnd", "Attempt": "41",
         "Stage": "safe-harbor", "Amd": "HUMAN", "HangupCause": "16"},
        {"Event": "Hangup", "Uniqueid": CID, "Cause": "16"},
    )  # fmt: skip
    assert ended == [("abandoned", "abandoned"), ("ended", "abandoned")]


def test_an_adopted_connected_call_ends_human() -> None:
    tel = _telephony()
    tel.follow([41])
    ended = _feed(
        tel,
        {"Event": "UserEvent", "UserEvent": "DialerCallEnd", "Attempt": "41",
         "Stage": "connected", "Amd": "OFF", "HangupCause": "16"},
        {"Event": "Hangup", "Uniqueid": CID, "Cause": "16"},
    )  # fmt: skip
    assert ended == [("ended", "human")]


def test_calls_not_followed_are_left_to_the_call_tracker() -> None:
    tel = _telephony()
    tel.follow([7])
    assert _feed(tel, {"Event": "Hangup", "Uniqueid": CID, "Cause": "16"}) == []
