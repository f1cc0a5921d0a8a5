"""The `dialer` command line: one parser, subcommands registered from `dialer.commands`.

Errors the user can fix end with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dialer import __version__
from dialer.commands import COMMANDS, load
from dialer.errors import UserError
from dialer.settings import SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialer",
        description="Predictive and progressive outbound dialer for collections contact centers.",
        epilog="First time: README, 'Your first real call' (migrate, agent add --phone, campaign "
        "create/start, import, serve). Before a shift, and whenever nothing dials: `dialer "
        "doctor` checks the database, Asterisk, agents' phones and campaigns and says how to fix "
        "each failure. `dialer COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"dialer {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (default: $DIALER_CONFIG; env vars win)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        load(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (UserError, SettingsError) as exc:
        print(f"dialer {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
