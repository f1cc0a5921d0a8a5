"""The `dialer` subcommands, one module each; every module exposes `register(subparsers)`.

`COMMANDS` lists them in the order `dialer --help` shows them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMANDS = ["serve", "migrate", "config"]


def load(name: str) -> ModuleType:
    return importlib.import_module(f"dialer.commands.{name}")
