"""Account import throughput and peak memory, per file, size and backend (SQLite, Postgres).

Two kinds of generated file: `us` (12 columns, US numbers, no bad rows: the file the fast paths
were first measured on) and `agency` (50 columns as agencies send them: Spanish headers,
semicolons, decimal commas, a byte order mark and Windows-1252 rows in a UTF-8 file, a country
per row in codes and names, national numbers of seven countries with Mexico's retired formats,
duplicates next to each other and 20,000 rows apart, multi-line records, 1 row in 23 bad).

Each measurement runs in its own subprocess so peak RSS is that import's alone; the generated
files are written first and not timed. Two baselines are measured in the same run on the same
`us` files: the importer as it was at a git revision (`--baseline`) and a plain `csv.reader` pass
over the file (the floor no importer can beat). The old importer cannot read the agency file, so
that file has only the csv floor. Results go to benchmarks/results/import.json with the ratios.

    .venv/bin/python benchmarks/import.py                      # 10k, 100k, 1M rows, both files
    .venv/bin/python benchmarks/import.py --sizes 10000 --backends sqlite --baseline none
    .venv/bin/python benchmarks/import.py --files agency --sizes 100000,1000000
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

from dialer.importer import agency, sample  # noqa: E402
from dialer.store import migrate  # noqa: E402
from dialer.store.db import make_engine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "import.json"
# The importer before the per-prefix phone cache and the set-based writes (issue #8).
BASELINE_REV = "6be92e4"
BASELINE_PACKAGE = "import_baseline"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# Rows per account in the agency file: near duplicates (1 in 11) and far ones (1 in 13).
AGENCY_ROWS_PER_ACCOUNT = 1 + 1 / 11 + 1 / 13
AGENCY_FAR = 20_000  # rows between an account's first row and its far duplicate (4 batches)


async def _child(
    url: str, path: Path, workers: int, package: str, kind: str = "us"
) -> dict[str, float]:
    load: Any = importlib.import_module(f"{package}.load")
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        before = _peak_rss_mb()
        start = time.perf_counter()
        options = load.ImportOptions(source="bench", workers=workers)
        if kind == "agency":
            parse: Any = importlib.import_module(f"{package}.parse")
            options = load.ImportOptions(
                source="bench", workers=workers,
                parse=parse.ParseOptions(default_region="MX", decimal=","),
            )  # fmt: skip
        report = await load.import_file(engine, path, options)
        seconds = time.perf_counter() - start
    finally:
        await engine.dispose()
    return {
        "rows": report.rows,
        "rejected_rows": report.rejected_rows,
        "accounts": report.accounts_created,
        "phones": report.phones_added,
        "seconds": round(seconds, 2),
        "rows_per_second": round(report.rows / seconds),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_import_mb": round(before, 1),
    }


def _csv_pass(path: Path, delimiter: str = ",") -> dict[str, float]:
    start = time.perf_counter()
    # Windows-1252 rows are read as replacement characters here: only the floor's speed counts.
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = sum(1 for _ in csv.reader(f, delimiter=delimiter)) - 1
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def _measure(
    url: str, path: Path, workers: int, package: str, pythonpath: str, kind: str = "us"
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(path), str(workers), package, kind],
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
    parser.add_argument("--files", default="us,agency", help="us, agency or both")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, path, workers, package, kind = args.child
        print(json.dumps(asyncio.run(_child(url, Path(path), int(workers), package, kind))))
        return
    kinds = args.files.split(",")
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
        files: dict[tuple[str, int], Path] = {}
        csv_pass = {}
        for kind in kinds:
            for size in sizes:
                path = files[kind, size] = Path(tmp) / f"{kind}-{size}.csv"
                if kind == "us":
                    with path.open("w", newline="") as f:
                        sample.write(f, sample.SampleSpec(size, seed=size))
                else:
                    spec = agency.AgencySpec(
                        round(size / AGENCY_ROWS_PER_ACCOUNT), seed=size, columns=50,
                        far_distance=AGENCY_FAR, keep_truth=False,
                    )  # fmt: skip
                    with path.open("wb") as fb:
                        agency.AgencyFile(spec).write(fb)
                csv_pass[kind, size] = _csv_pass(path, "," if kind == "us" else ";")
                print({"file": kind, "csv_read_only": csv_pass[kind, size]}, flush=True)

        def with_baseline(kind: str, size: int) -> bool:
            return kind == "us" and baseline_commit is not None and size in baseline_sizes

        def measure(backend: str, kind: str, size: int, urls: list[str]) -> None:
            run: dict[str, Any] = {"file": kind, "backend": backend, "workers": args.workers}
            path = files[kind, size]
            run.update(_measure(urls[0], path, args.workers, "dialer.importer", "", kind))
            if with_baseline(kind, size):
                base = _measure(urls[1], path, 0, BASELINE_PACKAGE, str(Path(tmp) / "baseline"))
                run["baseline"] = base
                run["speedup_vs_baseline"] = round(
                    run["rows_per_second"] / base["rows_per_second"], 2
                )
            floor = csv_pass[kind, size]["rows_per_second"]
            run["csv_read_only_rows_per_second"] = floor
            run["fraction_of_csv_read_speed"] = round(run["rows_per_second"] / floor, 3)
            run["meets_20k_rows_per_second"] = run["rows_per_second"] >= 20_000
            # The machine may be shared: the load while this run ran says how fair it was.
            run["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            runs.append(run)
            print(run, flush=True)
            _write(runs, baseline_commit, complete=False)

        for backend in backends:
            if backend == "sqlite":
                for kind in kinds:
                    for size in sizes:
                        urls = [
                            f"sqlite+aiosqlite:///{tmp}/{kind}-{tag}-{size}.sqlite3"
                            for tag in ("n", "b")
                        ]
                        measure("sqlite", kind, size, urls)
            elif backend == "postgres":
                with _postgres() as server:
                    create: Any = server.create_database  # type: ignore[attr-defined]
                    drop: Any = server.drop_database  # type: ignore[attr-defined]
                    for kind in kinds:
                        for size in sizes:
                            n = 1 + with_baseline(kind, size)
                            urls = [asyncio.run(create()) for _ in range(n)]
                            measure("postgres", kind, size, urls)
                            for url in urls:
                                asyncio.run(drop(url))
            else:
                raise SystemExit(f"unknown backend {backend}")
    _write(runs, baseline_commit, complete=True)
    print(f"written {RESULTS}")


def _write(runs: list[dict[str, Any]], baseline_commit: str | None, *, complete: bool) -> None:
    """The results so far: written after every run, so a long run interrupted keeps its figures."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "account import (dialer.importer): generated files, 'us' (12 "
                "columns, US numbers, 1.7 phones per row, no bad rows) and 'agency' (50 columns, "
                "seven countries, old Mexican formats, Windows-1252 rows, duplicates near and "
                "20,000 rows apart, multi-line records, 1 row in 23 bad)",
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "complete": complete,
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


if __name__ == "__main__":
    main()
