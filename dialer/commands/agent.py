"""`dialer agent add|list`: agent, supervisor and admin logins (argon2-hashed passwords).

The password is read from $DIALER_AGENT_PASSWORD or prompted twice; never from the command line,
where it would land in shell history and process lists.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dialer.auth import hash_password
from dialer.errors import UserError
from dialer.settings import load_settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import SchemaBehindError, check_schema
from dialer.store.models import Agent, Role

PASSWORD_ENV = "DIALER_AGENT_PASSWORD"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("agent", help="add and list agent logins")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="add a login",
        description=f"Add a login. The password comes from ${PASSWORD_ENV} or a prompt.",
    )
    add.add_argument("login")
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.AGENT.value)
    add.add_argument(
        "--endpoint",
        help="the agent's phone, e.g. PJSIP/agent1001, or 'softphone' for the desktop's "
        "WebRTC phone",
    )
    add.add_argument("--language", default="es")
    actions.add_parser("list", help="list logins")
    p.set_defaults(func=run)


def read_password() -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the passwords differ")
    return first


async def _run(args: argparse.Namespace) -> int:
    engine = make_engine(load_settings(args.config).database_url)
    try:
        try:
            await check_schema(engine)
        except SchemaBehindError as exc:
            raise UserError(str(exc)) from exc
        sessions = make_sessionmaker(engine)
        if args.action == "add":
            try:
                password_hash = hash_password(read_password())
            except ValueError as exc:
                raise UserError(str(exc)) from exc
            try:
                async with sessions.begin() as s:
                    agent = Agent(
                        login=args.login, name=args.name, role=args.role,
                        endpoint=args.endpoint, language=args.language,
                        password_hash=password_hash,
                    )  # fmt: skip
                    s.add(agent)
                    await s.flush()
                    print(f"agent {agent.id} {agent.login} ({agent.role})")
            except IntegrityError as exc:
                raise UserError(f"login {args.login!r} is taken") from exc
        else:
            async with sessions() as s:
                for a in (await s.execute(select(Agent).order_by(Agent.id))).scalars():
                    state = "active" if a.active else "inactive"
                    print(f"{a.id}\t{a.login}\t{a.role}\t{state}\t{a.name}")
    finally:
        await engine.dispose()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
