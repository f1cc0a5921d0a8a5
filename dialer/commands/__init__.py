"""The `dialer` subcommands, one module each; every module exposes `register(subparsers)`.

Modules are found automatically; `ORDER` only sets how `dialer --help` lists the known ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

ORDER = [
    "demo",
    "serve",
    "migrate",
    "doctor",
    "campaign",
    "import",
    "dnc",
    "consent",
    "agent",
    "report",
    "evidence",
    "simulate",
    "config",
]


def _discover() -> list[str]:
    names = [
        m.name.rstrip("_") for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    ]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


COMMANDS = _discover()


def load(name: str) -> ModuleType:
    # `import` is a keyword, so its module is `import_.py`.
    module = f"{name}_" if name in ("import",) else name
    return importlib.import_module(f"dialer.commands.{module}")
