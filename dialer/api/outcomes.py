"""What calls produced: dispositions and promises-to-pay (query; PTP kept/broken), and callbacks.

Agents create these from their desktop; operations query them here, settle promises and schedule
or move callbacks.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from aiohttp import web
from sqlalchemy import Select, select

from dialer import auth
from dialer.api import common
from dialer.api.common import JSON, body, fail, path_id, reply, responses
from dialer.api.schema import MAX_ID, array, integer, money, obj, string
from dialer.auth import require_role
from dialer.store.models import (
    Account,
    Agent,
    Callback,
    CallbackStatus,
    Campaign,
    Disposition,
    Phone,
    PromiseToPay,
    PtpStatus,
    Role,
)

PTP_UPDATE = obj(
    {
        "status": string(enum=[s.value for s in PtpStatus]),
        "paid_amount": money(),
    }
)
CALLBACK_CREATE = obj(
    {
        "account_id": integer(1, MAX_ID),
        "campaign_id": integer(1, MAX_ID, nullable=True),
        "phone_id": integer(1, MAX_ID, nullable=True),
        "due_at": string(fmt="date-time"),
        "owner_agent_id": integer(1, MAX_ID, nullable=True, description="Null: any agent."),
        "notes": string(2000, nullable=True),
    },
    ["account_id", "due_at"],
)
CALLBACK_UPDATE = obj(
    {
        "status": string(enum=[s.value for s in CallbackStatus]),
        "due_at": string(fmt="date-time"),
        "owner_agent_id": integer(1, MAX_ID, nullable=True),
        "notes": string(2000, nullable=True),
    }
)
_ANY = {"type": "object", "additionalProperties": True}


def _page(request: web.Request, query: Select[Any]) -> Select[Any]:
    limit = common.query_int(request, "limit", 100, 1, 1000)
    offset = common.query_int(request, "offset", 0, 0, 10**9)
    return query.limit(limit).offset(offset)


def _filters(request: web.Request, query: Select[Any], model: Any, time_column: Any) -> Select[Any]:
    for name in ("campaign_id", "account_id"):
        value = common.query_optional_int(request, name)
        if value is not None:
            query = query.where(getattr(model, name) == value)
    since, until = common.query_time(request, "since"), common.query_time(request, "until")
    if since is not None:
        query = query.where(time_column >= since)
    if until is not None:
        query = query.where(time_column < until)
    return query


def _disposition(d: Disposition) -> JSON:
    return {
        "id": d.id,
        "attempt_id": d.attempt_id,
        "account_id": d.account_id,
        "campaign_id": d.campaign_id,
        "agent_id": d.agent_id,
        "code": d.code,
        "contact": d.contact,
        "right_party": d.right_party,
        "notes": d.notes,
        "created_at": d.created_at,
    }


def _promise(p: PromiseToPay) -> JSON:
    return {
        "id": p.id,
        "account_id": p.account_id,
        "campaign_id": p.campaign_id,
        "agent_id": p.agent_id,
        "attempt_id": p.attempt_id,
        "amount": p.amount,
        "currency": p.currency,
        "due_date": p.due_date,
        "status": p.status,
        "paid_amount": p.paid_amount,
        "notes": p.notes,
        "instalments": [
            {"seq": i.seq, "due_date": i.due_date, "amount": i.amount} for i in p.instalments
        ],
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def _callback(c: Callback) -> JSON:
    return {
        "id": c.id,
        "account_id": c.account_id,
        "campaign_id": c.campaign_id,
        "phone_id": c.phone_id,
        "due_at": c.due_at,
        "owner_agent_id": c.owner_agent_id,
        "created_by_agent_id": c.created_by_agent_id,
        "status": c.status,
        "notes": c.notes,
        "created_at": c.created_at,
    }


@require_role(Role.SUPERVISOR.value)
async def list_dispositions(request: web.Request) -> web.StreamResponse:
    query = _filters(request, select(Disposition), Disposition, Disposition.created_at)
    code = common.query_str(request, "code", 32)
    if code:
        query = query.where(Disposition.code == code)
    async with common.sessions(request)() as s:
        rows = (await s.execute(_page(request, query.order_by(Disposition.id)))).scalars().all()
    return reply({"dispositions": [_disposition(d) for d in rows]})


@require_role(Role.SUPERVISOR.value)
async def list_promises(request: web.Request) -> web.StreamResponse:
    from sqlalchemy.orm import selectinload

    query = _filters(request, select(PromiseToPay), PromiseToPay, PromiseToPay.created_at)
    status = common.query_enum(request, "status", [s.value for s in PtpStatus])
    if status:
        query = query.where(PromiseToPay.status == status)
    due_before = common.query_time(request, "due_before")
    if due_before is not None:
        query = query.where(PromiseToPay.due_date < due_before.date())
    query = query.options(selectinload(PromiseToPay.instalments)).order_by(PromiseToPay.id)
    async with common.sessions(request)() as s:
        rows = (await s.execute(_page(request, query))).scalars().all()
        return reply({"promises": [_promise(p) for p in rows]})


@require_role(Role.SUPERVISOR.value)
async def update_promise(request: web.Request) -> web.StreamResponse:
    from sqlalchemy.orm import selectinload

    promise_id = path_id(request, "promise_id")
    data = await body(request, PTP_UPDATE)
    async with common.sessions(request).begin() as s:
        promise = (
            await s.execute(
                select(PromiseToPay)
                .where(PromiseToPay.id == promise_id)
                .options(selectinload(PromiseToPay.instalments))
                .with_for_update()
            )
        ).scalar_one_or_none()
        if promise is None:
            fail(404, "not_found", f"promise {promise_id} does not exist")
        if "paid_amount" in data:
            promise.paid_amount = Decimal(str(data["paid_amount"])).quantize(Decimal("0.01"))
        if "status" in data:
            promise.status = str(data["status"])
        promise.updated_at = dt.datetime.now(dt.UTC)
        await s.flush()
        return reply(_promise(promise))


@require_role(Role.SUPERVISOR.value)
async def list_callbacks(request: web.Request) -> web.StreamResponse:
    query = _filters(request, select(Callback), Callback, Callback.due_at)
    status = common.query_enum(request, "status", [s.value for s in CallbackStatus])
    if status:
        query = query.where(Callback.status == status)
    owner = common.query_optional_int(request, "owner_agent_id")
    if owner is not None:
        query = query.where(Callback.owner_agent_id == owner)
    async with common.sessions(request)() as s:
        rows = (
            await s.execute(_page(request, query.order_by(Callback.due_at, Callback.id)))
        ).scalars()
        return reply({"callbacks": [_callback(c) for c in rows]})


def _when(value: object) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)


async def _check_refs(s: Any, data: JSON, account_id: int | None) -> None:
    """Foreign keys checked up front so a bad id is a 404 naming the field, not a 500."""
    for name, model in (
        ("account_id", Account),
        ("campaign_id", Campaign),
        ("owner_agent_id", Agent),
        ("phone_id", Phone),
    ):
        value = data.get(name)
        if value is not None and await s.get(model, value) is None:
            fail(404, "not_found", f"{name} {value} does not exist", name)
    phone_id = data.get("phone_id")
    if phone_id is not None and account_id is not None:
        phone = await s.get(Phone, phone_id)
        if phone.account_id != account_id:
            fail(400, "invalid_request", "phone_id: not a phone of this account", "phone_id")


@require_role(Role.SUPERVISOR.value)
async def create_callback(request: web.Request) -> web.StreamResponse:
    data = await body(request, CALLBACK_CREATE)
    async with common.sessions(request).begin() as s:
        await _check_refs(s, data, int(data["account_id"]))  # type: ignore[call-overload]
        callback = Callback(
            account_id=data["account_id"],
            campaign_id=data.get("campaign_id"),
            phone_id=data.get("phone_id"),
            due_at=_when(data["due_at"]),
            owner_agent_id=data.get("owner_agent_id"),
            created_by_agent_id=request[auth.PRINCIPAL_KEY].agent_id,
            notes=data.get("notes"),
            status=CallbackStatus.PENDING.value,
            created_at=dt.datetime.now(dt.UTC),
        )
        s.add(callback)
        await s.flush()
        return reply(_callback(callback), 201)


@require_role(Role.SUPERVISOR.value)
async def update_callback(request: web.Request) -> web.StreamResponse:
    callback_id = path_id(request, "callback_id")
    data = await body(request, CALLBACK_UPDATE)
    async with common.sessions(request).begin() as s:
        callback = await s.get(Callback, callback_id)
        if callback is None:
            fail(404, "not_found", f"callback {callback_id} does not exist")
        await _check_refs(s, data, callback.account_id)
        for key, value in data.items():
            setattr(callback, key, _when(value) if key == "due_at" else value)
        await s.flush()
        return reply(_callback(callback))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/dispositions", list_dispositions)
    app.router.add_get("/api/promises", list_promises)
    app.router.add_patch("/api/promises/{promise_id}", update_promise)
    app.router.add_get("/api/callbacks", list_callbacks)
    app.router.add_post("/api/callbacks", create_callback)
    app.router.add_patch("/api/callbacks/{callback_id}", update_callback)


_COMMON_QUERY = [
    common.query_param("campaign_id", integer(1, MAX_ID), "Only this campaign's."),
    common.query_param("account_id", integer(1, MAX_ID), "Only this account's."),
    common.query_param("since", string(40, fmt="date-time"), "From this moment (inclusive)."),
    common.query_param("until", string(40, fmt="date-time"), "Before this moment."),
    common.query_param("limit", integer(1, 1000), "Page size (default 100)."),
    common.query_param("offset", integer(0, 10**9), "Skip this many."),
]
OPENAPI_PATHS: JSON = {
    "/api/dispositions": {
        "get": {
            "summary": "Dispositions agents recorded",
            "tags": ["outcomes"],
            "parameters": [*_COMMON_QUERY, common.query_param("code", string(32), "This code.")],
            "responses": responses(obj({"dispositions": array(_ANY)}, additional=True), 400),
        }
    },
    "/api/promises": {
        "get": {
            "summary": "Promises-to-pay",
            "tags": ["outcomes"],
            "parameters": [
                *_COMMON_QUERY,
                common.query_param(
                    "status", string(enum=[s.value for s in PtpStatus]), "This status."
                ),
                common.query_param("due_before", string(40, fmt="date-time"), "Due before."),
            ],
            "responses": responses(obj({"promises": array(_ANY)}, additional=True), 400),
        }
    },
    "/api/promises/{promise_id}": {
        "parameters": [common.id_param("promise_id", "The promise's id.")],
        "patch": {
            "summary": "Settle a promise: kept, broken, cancelled; record the amount paid",
            "tags": ["outcomes"],
            "requestBody": common.json_body(PTP_UPDATE),
            "responses": responses(_ANY, 400, 404),
        },
    },
    "/api/callbacks": {
        "get": {
            "summary": "Callbacks",
            "tags": ["outcomes"],
            "parameters": [
                *_COMMON_QUERY,
                common.query_param(
                    "status", string(enum=[s.value for s in CallbackStatus]), "This status."
                ),
                common.query_param("owner_agent_id", integer(1, MAX_ID), "This agent's."),
            ],
            "responses": responses(obj({"callbacks": array(_ANY)}, additional=True), 400),
        },
        "post": {
            "summary": "Schedule a callback (due callbacks are claimed first)",
            "tags": ["outcomes"],
            "requestBody": common.json_body(CALLBACK_CREATE),
            "responses": responses(_ANY, 400, 404, ok_status=201),
        },
    },
    "/api/callbacks/{callback_id}": {
        "parameters": [common.id_param("callback_id", "The callback's id.")],
        "patch": {
            "summary": "Move, reassign, cancel or complete a callback",
            "tags": ["outcomes"],
            "requestBody": common.json_body(CALLBACK_UPDATE),
            "responses": responses(_ANY, 400, 404),
        },
    },
}
