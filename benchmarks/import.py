"""Account import throughput and peak memory, per file size and backend (SQLite, Postgres).

Each measurement runs in its own subprocess so peak RSS is that import's alone; the generated
files are written first and not timed. Results go to benchmarks/results/import.json.

    .venv/bin/python benchmarks/import.py                      # 10k, 100k, 1M rows, both backends
    .venv/bin/python benchmarks/import.py --sizes 10000 --backends sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.fixtures` (the throwaway Postgres) lives at the root

from dialer.importer import sample  # noqa: E402
from dialer.importer.load import ImportOptions, import_file  # noqa: E402
from dialer.store import migrate  # noqa: E402
from dialer.store.db import make_engine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "import.json"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _child(url: str, path: Path) -> dict[str, float]:
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        before = _peak_rss_mb()
        start = time.perf_counter()
        report = await import_file(engine, path, ImportOptions(source="bench"))
        seconds = time.perf_counter() - start
    finally:
        await engine.dispose()
    return {
        "rows": report.rows,
        "accounts": report.accounts_created,
        "phones": report.phones_added,
        "seconds": round(seconds, 2),
        "rows_per_second": round(report.rows / seconds),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_import_mb": round(before, 1),
    }


def _measure(url: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(path)],
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def _postgres() -> Iterator[object]:
    from tests.fixtures.postgres import throwaway_cluster

    with throwaway_cluster() as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child[0], Path(args.child[1])))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dialer-import-bench-") as tmp:
        files = {}
        for size in sizes:
            files[size] = Path(tmp) / f"accounts-{size}.csv"
            with files[size].open("w", newline="") as f:
                sample.write(f, sample.SampleSpec(size, seed=size))
        for backend in backends:
            if backend == "sqlite":
                for size in sizes:
                    url = f"sqlite+aiosqlite:///{tmp}/bench-{size}.sqlite3"
                    runs.append({"backend": "sqlite", **_measure(url, files[size])})
                    print(runs[-1], flush=True)
            elif backend == "postgres":
                with _postgres() as server:
                    for size in sizes:
                        url = asyncio.run(server.create_database())  # type: ignore[attr-defined]
                        runs.append({"backend": "postgres", **_measure(url, files[size])})
                        print(runs[-1], flush=True)
                        asyncio.run(server.drop_database(url))  # type: ignore[attr-defined]
            else:
                raise SystemExit(f"unknown backend {backend}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "account import (dialer.importer): generated US files, "
                "1.7 phones per row, no bad rows",
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_at_end": os.getloadavg(),
                    "python": platform.python_version(),
                },
                "goal": ">= 20000 rows/s; peak memory flat as the file grows",
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
