"""`dialer agent add|update|list`: agent, supervisor and admin logins (argon2-hashed passwords)
and the phone the dialer calls each agent on.

The password comes from $DIALER_AGENT_PASSWORD, `--password-stdin` (one line) or a prompt typed
twice on a terminal; never from the command line, where it would land in shell history and
process lists. Without a terminal and without either, the command says so instead of failing.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dialer.auth import hash_password
from dialer.errors import UserError
from dialer.settings import load_settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import SchemaBehindError, check_schema
from dialer.store.models import Agent, Role

PASSWORD_ENV = "DIALER_AGENT_PASSWORD"
PHONE_HELP = (
    "the endpoint the dialer calls to put the agent on line for the shift, e.g. "
    "PJSIP/agent1001 (an endpoint of pjsip.conf; the sandbox's test phone is "
    "Local/s@sim-agent-phone), or 'softphone' for the desktop's WebRTC phone"
)


def _phone(value: str) -> str:
    value = value.strip()
    if value == "softphone":  # the desktop's WebRTC phone, provisioned by the dialer
        return value
    if "/" not in value or value.startswith("/") or len(value) > 128 or "\x00" in value:
        raise argparse.ArgumentTypeError(f"{value!r}: TECHNOLOGY/ENDPOINT, e.g. PJSIP/agent1001")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="add, update and list agent logins and their phones")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="add a login",
        description=f"Add a login. The password comes from ${PASSWORD_ENV}, --password-stdin "
        "or a prompt (on a terminal). An agent needs --phone to take calls.",
    )
    add.add_argument("login")
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.AGENT.value)
    add.add_argument("--phone", "--endpoint", dest="phone", type=_phone, help=PHONE_HELP)
    add.add_argument("--language", default="es", choices=["es", "en"])
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    update = actions.add_parser(
        "update",
        help="change a login's phone, name, role, language, password or activity",
        description="Change only what is given. --password-stdin (or a set "
        f"${PASSWORD_ENV}) resets the password.",
    )
    update.add_argument("login")
    update.add_argument("--phone", "--endpoint", dest="phone", type=_phone, help=PHONE_HELP)
    update.add_argument("--no-phone", action="store_true", help="remove the phone")
    update.add_argument("--name")
    update.add_argument("--role", choices=[r.value for r in Role])
    update.add_argument("--language", choices=["es", "en"])
    update.add_argument(
        "--password-stdin", action="store_true", help="read a new password from standard input"
    )
    state = update.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_true", default=None)
    state.add_argument("--inactive", dest="active", action="store_false")
    actions.add_parser("list", help="list logins with role, state and phone")
    p.set_defaults(func=run)


def read_password(from_stdin: bool = False, *, required: bool = True) -> str | None:
    """The password from --password-stdin, the environment, or a prompt on a terminal."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UserError("--password-stdin: standard input had no password line")
        return line
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if not required:
        return None
    if not sys.stdin.isatty():
        raise UserError(
            f"no password: there is no terminal to ask on; set ${PASSWORD_ENV} or pipe it "
            "with --password-stdin"
        )
    try:
        first = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
    except EOFError as exc:
        raise UserError("no password typed") from exc
    if again != first:
        raise UserError("the passwords differ")
    return first


def _hash(password: str) -> str:
    try:
        return hash_password(password)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


async def _run(args: argparse.Namespace) -> int:
    engine = make_engine(load_settings(args.config).database_url)
    try:
        try:
            await check_schema(engine)
        except SchemaBehindError as exc:
            raise UserError(str(exc)) from exc
        sessions = make_sessionmaker(engine)
        if args.action == "add":
            password = read_password(args.password_stdin)
            assert password is not None
            password_hash = _hash(password)
            try:
                async with sessions.begin() as s:
                    agent = Agent(
                        login=args.login, name=args.name, role=args.role,
                        endpoint=args.phone, language=args.language,
                        password_hash=password_hash,
                    )  # fmt: skip
                    s.add(agent)
                    await s.flush()
                    print(f"agent {agent.id} {agent.login} ({agent.role})" + _phone_note(agent))
            except IntegrityError as exc:
                raise UserError(f"login {args.login!r} is taken") from exc
        elif args.action == "update":
            # Only an explicit --password-stdin resets the password here: an exported
            # $DIALER_AGENT_PASSWORD left over from an `add` must not change it silently.
            password = read_password(True) if args.password_stdin else None
            async with sessions.begin() as s:
                found = (
                    await s.execute(select(Agent).where(Agent.login == args.login))
                ).scalar_one_or_none()
                if found is None:
                    raise UserError(f"no login {args.login!r} (`dialer agent list`)")
                agent = found
                if args.phone:
                    agent.endpoint = args.phone
                if args.no_phone:
                    agent.endpoint = None
                for field in ("name", "role", "language", "active"):
                    value = getattr(args, field)
                    if value is not None:
                        setattr(agent, field, value)
                if password is not None:
                    agent.password_hash = _hash(password)
                print(f"agent {agent.id} {agent.login} ({agent.role}) updated" + _phone_note(agent))
        else:
            async with sessions() as s:
                for a in (await s.execute(select(Agent).order_by(Agent.id))).scalars():
                    state = "active" if a.active else "inactive"
                    phone = a.endpoint or "(no phone)"
                    print(f"{a.id}\t{a.login}\t{a.role}\t{state}\t{phone}\t{a.name}")
    finally:
        await engine.dispose()
    return 0


def _phone_note(agent: Agent) -> str:
    if agent.endpoint:
        return f", phone {agent.endpoint}"
    if agent.role == Role.AGENT.value:
        return (
            "; no phone yet: the agent cannot go Ready until "
            f"`dialer agent update {agent.login} --phone PJSIP/...`"
        )
    return ""


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
