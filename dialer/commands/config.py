"""`dialer config`: show the settings in force (secrets hidden) or every knob's documentation."""

from __future__ import annotations

import argparse
from dataclasses import fields

from dialer.settings import Settings, load_settings, settings_reference


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config",
        help="show the settings in force, or document every setting",
        description="Print the settings this process would run with (secrets hidden), "
        "or with --reference the table of every setting and its environment variable.",
    )
    p.add_argument("--reference", action="store_true", help="print the Markdown table of settings")
    p.set_defaults(func=run)


def show(settings: Settings) -> str:
    lines = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "ami_servers":
            value = ", ".join(s.redacted() for s in value) or "(none)"
        elif f.name == "database_url" and "@" in str(value):
            scheme, rest = str(value).split("://", 1)
            value = f"{scheme}://***@{rest.split('@', 1)[1]}"
        lines.append(f"{f.name} = {value}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(settings_reference() if args.reference else show(load_settings(args.config)))
    return 0
