"""`dialer campaign create|update|start|pause|stop|list|show`: campaigns from the command line.

Fields are checked by the same rules as the API (`dialer.api.campaigns.check_fields`); `start`
refuses, naming why, a campaign that could not dial (the checks of `dialer doctor`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dialer import doctor
from dialer.api import campaigns as api
from dialer.api.schema import Invalid
from dialer.doctor import AmiProbe, check_ami_server, start_refusals
from dialer.errors import UserError
from dialer.settings import load_settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import SchemaBehindError, check_schema
from dialer.store.models import Campaign, CampaignState

T = TypeVar("T")


def _fields_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", dest="dial_mode", help="preview, progressive, power or predictive")
    p.add_argument("--profile", dest="compliance_profile", help="US, MX, CO, ES, UK, PE, CL")
    p.add_argument(
        "--window",
        action="append",
        metavar="DAY=HH:MM-HH:MM[,HH:MM-HH:MM]",
        help="narrow the profile's window for a day (repeatable); DAY= closes the day",
    )
    p.add_argument(
        "--cap", action="append", metavar="NAME=N",
        help="phone_per_day, phone_total, account_per_day, account_total (repeatable)",
    )  # fmt: skip
    p.add_argument("--caller-id", dest="caller_id", help="E.164 caller ID")
    p.add_argument("--caller-id-pool", help="comma-separated E.164 numbers")
    p.add_argument("--match-area", action="store_true", help="prefer pool numbers in the area")
    p.add_argument("--order", help="comma-separated claim order, e.g. aging_youngest_first")
    p.add_argument("--set", action="append", metavar="FIELD=JSON", help="any other field")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "campaign",
        help="create, update, start, pause, stop and list campaigns",
        description="Manage campaigns in the database of the settings.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a campaign (state draft)")
    create.add_argument("name")
    _fields_args(create)
    update = actions.add_parser("update", help="change a campaign's settings")
    update.add_argument("campaign", help="id or name")
    _fields_args(update)
    for action in api.TRANSITIONS:
        a = actions.add_parser(
            action,
            help=f"{action} a campaign"
            + (
                " (refused, naming why, without a caller ID, a valid profile and pacing, or a "
                "reachable Asterisk from DIALER_AMI_SERVERS with the dialer's dialplan and trunk)"
                if action == "start"
                else ""
            ),
        )
        a.add_argument("campaign", help="id or name")
    actions.add_parser("list", help="list campaigns with state and abandon rate")
    show = actions.add_parser("show", help="one campaign as JSON")
    show.add_argument("campaign", help="id or name")
    p.set_defaults(func=run)


def _pairs(values: list[str] | None, what: str) -> list[tuple[str, str]]:
    out = []
    for raw in values or []:
        if "=" not in raw:
            raise UserError(f"{what}: expected NAME=VALUE, got {raw!r}")
        key, value = raw.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out


def fields_from(args: argparse.Namespace) -> dict[str, object]:
    data: dict[str, object] = {}
    for name in ("dial_mode", "compliance_profile", "caller_id"):
        if getattr(args, name, None):
            data[name] = getattr(args, name)
    if args.window:
        data["calling_window"] = {
            day: [part.split("-", 1) for part in value.split(",") if part]
            for day, value in _pairs(args.window, "--window")
        }
    if args.cap:
        caps: dict[str, object] = {}
        for key, value in _pairs(args.cap, "--cap"):
            if not value.isdigit():
                raise UserError(f"--cap {key}: a whole number, got {value!r}")
            caps[key] = int(value)
        data["caps"] = caps
    if args.caller_id_pool:
        data["caller_id_pool"] = [n.strip() for n in args.caller_id_pool.split(",") if n.strip()]
    if args.match_area:
        data["caller_id_match_area"] = True
    if args.order:
        data["claim_order"] = [o.strip() for o in args.order.split(",") if o.strip()]
    for key, value in _pairs(args.set, "--set"):
        try:
            data[key] = json.loads(value)
        except ValueError as exc:
            raise UserError(f"--set {key}: not JSON: {value}") from exc
    return data


async def _with_db(args: argparse.Namespace, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    engine = make_engine(load_settings(args.config).database_url)
    try:
        try:
            await check_schema(engine)
        except SchemaBehindError as exc:
            raise UserError(str(exc)) from exc
        return await work(engine)
    finally:
        await engine.dispose()


async def _find(s: AsyncSession, ref: str) -> Campaign:
    query = select(Campaign).where(
        Campaign.id == int(ref) if ref.isdigit() and int(ref) < 2**63 else Campaign.name == ref
    )
    campaign = (await s.execute(query)).scalar_one_or_none()
    if campaign is None:
        raise UserError(f"no campaign {ref!r}")
    return campaign


def _check(data: dict[str, object], schema: api.JsonSchema) -> None:
    try:
        api.check_fields(data, schema)
    except Invalid as exc:
        raise UserError(str(exc)) from exc


def _check_settings(campaign: Campaign) -> None:
    try:
        api.check_settings(campaign)
    except Invalid as exc:
        raise UserError(str(exc)) from exc


async def _run(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)

    async def work(engine: AsyncEngine) -> int:
        sessions = make_sessionmaker(engine)
        if args.action == "list":
            async with sessions() as s:
                rows = (await s.execute(select(Campaign).order_by(Campaign.id))).scalars().all()
                print(f"{'id':>4}  {'name':<24} {'state':<9} {'mode':<12} profile  abandon")
                for c in rows:
                    ab = await api.abandon_stats(s, c, now)
                    rate = "-" if ab["rate"] is None else f"{float(ab['rate']):.2%}"  # type: ignore[arg-type]
                    print(f"{c.id:>4}  {c.name:<24} {c.state:<9} {c.dial_mode:<12} "
                          f"{c.compliance_profile:<8} {rate} ({ab['window']})")  # fmt: skip
            return 0
        if args.action == "show":
            async with sessions() as s:
                c = await _find(s, args.campaign)
                out = {**api.as_json(c), "abandon": await api.abandon_stats(s, c, now)}
            print(api.common.dumps(out))
            return 0
        if args.action == "start":
            await _refuse_if_it_cannot_dial(args, sessions)
        try:
            async with sessions.begin() as s:
                if args.action == "create":
                    data = {"name": args.name, **fields_from(args)}
                    _check(data, api.CREATE)
                    campaign = Campaign(
                        name=args.name, caps={}, calling_window={}, pacing={}, retry_rules={}
                    )
                    api.apply_fields(campaign, data)
                    _check_settings(campaign)
                    s.add(campaign)
                elif args.action == "update":
                    data = fields_from(args)
                    _check(data, api.UPDATE)
                    campaign = await _find(s, args.campaign)
                    api.apply_fields(campaign, data)
                    _check_settings(campaign)
                else:
                    allowed, target = api.TRANSITIONS[args.action]
                    campaign = await _find(s, args.campaign)
                    if campaign.state not in allowed:
                        raise UserError(f"cannot {args.action} a campaign that is {campaign.state}")
                    campaign.state = target.value
                await s.flush()
                print(f"campaign {campaign.id} {campaign.name}: {campaign.state}")
        except IntegrityError as exc:
            raise UserError("a campaign with that name exists") from exc
        return 0

    return await _with_db(args, work)


async def _refuse_if_it_cannot_dial(
    args: argparse.Namespace, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The start path's checks (`dialer.doctor`): the campaign's settings, then each Asterisk
    server of the settings (login, dialplan, trunk, a test call). Refused naming every reason."""
    async with sessions() as s:
        campaign = await _find(s, args.campaign)
        if campaign.state == CampaignState.RUNNING.value:
            return  # the transition itself says it is running already
        servers = load_settings(args.config).ami_servers
        problems = start_refusals(campaign, servers, None)
    for server in servers:
        probe = AmiProbe(server)
        try:
            problems.extend(c for c in await check_ami_server(probe) if not c.ok)
        finally:
            await probe.close()
    if servers and all(
        any(p.name == f"asterisk {server.name} login" for p in problems) for server in servers
    ):
        problems.append(doctor.fail("asterisk", "no Asterisk server is reachable", "see above"))
    if problems:
        lines = [f"  - {p.detail}\n    fix: {p.fix}" for p in problems]
        raise UserError(f"campaign {campaign.id} cannot dial, not started:\n" + "\n".join(lines))


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
