"""Account import throughput and peak memory, per file size and backend (SQLite, Postgres).

Each measurement runs in its own subprocess so peak RSS is that import's alone; the generated
files are written first and not timed. Two baselines are measured in the same run on the same
files: the importer as it was at a git revision (`--baseline`, the code before the fast path) and a
plain `csv.reader` pass over the file (the floor no importer can beat). Results go to
benchmarks/results/import.json with the ratios.

    .venv/bin/python benchmarks/import.py                      # 10k, 100k, 1M rows, both backends
    .venv/bin/python benchmarks/import.py --sizes 10000 --backends sqlite --baseline none
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import importlib
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.fixtures` (the throwaway Postgres) lives at the root

from dialer.importer import sample  # noqa: E402
from dialer.store import migrate  # noqa: E402
from dialer.store.db import make_engine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "import.json"
# The importer before the per-prefix phone cache and the set-based writes (issue #8).
BASELINE_REV = "6be92e4"
BASELINE_PACKAGE = "import_baseline"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _child(url: str, path: Path, workers: int, package: str) -> dict[str, float]:
    load: Any = importlib.import_module(f"{package}.load")
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        before = _peak_rss_mb()
        start = time.perf_counter()
        options = load.ImportOptions(source="bench", workers=workers)
        report = await load.import_file(engine, path, options)
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


def _csv_pass(path: Path) -> dict[str, float]:
    start = time.perf_counter()
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = sum(1 for _ in csv.reader(f)) - 1
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def _measure(url: str, path: Path, workers: int, package: str, pythonpath: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(path), str(workers), package],
        capture_output=True, text=True, check=True, timeout=3600, env=env,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _extract_baseline(rev: str, into: Path) -> str:
    """The importer package at `rev`, renamed so it can run beside today's `dialer`."""
    full = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    package = into / BASELINE_PACKAGE
    package.mkdir(parents=True)
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", full, "dialer/importer/"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in names:
        if not name.endswith(".py"):
            continue
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{full}:{name}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        text = text.replace("dialer.importer", BASELINE_PACKAGE)
        (package / Path(name).name).write_text(text)
    return full


@contextlib.contextmanager
def _postgres() -> Iterator[object]:
    from tests.fixtures.postgres import throwaway_cluster

    # Postgres's default durability (fsync, synchronous commit, full-page writes), as in
    # production; the test suite's clusters run without it.
    with throwaway_cluster(durable=True) as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--workers", type=int, default=0, help="parsing processes (ImportOptions.workers)"
    )
    parser.add_argument(
        "--baseline", default=BASELINE_REV,
        help=f"git revision of the importer to compare with (default {BASELINE_REV}; 'none')",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-sizes", default=None, help="sizes to run the baseline on (default: --sizes)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, path, workers, package = args.child
        print(json.dumps(asyncio.run(_child(url, Path(path), int(workers), package))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    baseline_sizes = (
        [int(s) for s in args.baseline_sizes.split(",")] if args.baseline_sizes else sizes
    )
    backends = args.backends.split(",")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dialer-import-bench-") as tmp:
        baseline_commit = None
        if args.baseline != "none":
            baseline_commit = _extract_baseline(args.baseline, Path(tmp) / "baseline")
        files = {}
        csv_pass = {}
        for size in sizes:
            files[size] = Path(tmp) / f"accounts-{size}.csv"
            with files[size].open("w", newline="") as f:
                sample.write(f, sample.SampleSpec(size, seed=size))
            csv_pass[size] = _csv_pass(files[size])
            print({"csv_read_only": csv_pass[size]}, flush=True)

        def with_baseline(size: int) -> bool:
            return baseline_commit is not None and size in baseline_sizes

        def measure(backend: str, size: int, urls: list[str]) -> None:
            run: dict[str, Any] = {"backend": backend, "workers": args.workers}
            run.update(_measure(urls[0], files[size], args.workers, "dialer.importer", ""))
            if with_baseline(size):
                base = _measure(
                    urls[1], files[size], 0, BASELINE_PACKAGE, str(Path(tmp) / "baseline")
                )
                run["baseline"] = base
                run["speedup_vs_baseline"] = round(
                    run["rows_per_second"] / base["rows_per_second"], 2
                )
            run["csv_read_only_rows_per_second"] = csv_pass[size]["rows_per_second"]
            run["fraction_of_csv_read_speed"] = round(
                run["rows_per_second"] / csv_pass[size]["rows_per_second"], 3
            )
            run["meets_20k_rows_per_second"] = run["rows_per_second"] >= 20_000
            runs.append(run)
            print(run, flush=True)

        for backend in backends:
            if backend == "sqlite":
                for size in sizes:
                    urls = [f"sqlite+aiosqlite:///{tmp}/{tag}-{size}.sqlite3" for tag in ("n", "b")]
                    measure("sqlite", size, urls)
            elif backend == "postgres":
                with _postgres() as server:
                    create: Any = server.create_database  # type: ignore[attr-defined]
                    drop: Any = server.drop_database  # type: ignore[attr-defined]
                    for size in sizes:
                        urls = [asyncio.run(create()) for _ in range(1 + with_baseline(size))]
                        measure("postgres", size, urls)
                        for url in urls:
                            asyncio.run(drop(url))
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
                "postgres": "a throwaway cluster with Postgres's default durability: fsync, "
                "synchronous_commit and full_page_writes on",
                "sqlite": "the dialer's own settings: WAL, synchronous=NORMAL",
                "baseline": {
                    "importer_at_commit": baseline_commit,
                    "what": "the same import with the importer code of that commit, same machine, "
                    "same run, same files; csv_read_only is a bare csv.reader pass",
                },
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
