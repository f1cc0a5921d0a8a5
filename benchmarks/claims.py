"""Claims per second with and without the evidence record, on SQLite and Postgres.

Two identical databases per backend (same accounts, same clock): one claims with evidence
recording, the other without; the same compliance rule decides in both. Rounds alternate between
them so that machine noise hits both alike; the figure is the median round. A decision is one
account the rule looked at (allowed or refused); a claim is an attempt row written. Results go to
benchmarks/results/claims.json with the ratio (goal: with / without >= 0.90).

    .venv/bin/python -m benchmarks.claims [--accounts 20000] [--rounds 5] [--backends sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.fixtures` (the throwaway Postgres) lives at the root

from dialer.compliance.claiming import claim_options  # noqa: E402
from dialer.store import migrate  # noqa: E402
from dialer.store.claim import claim_phones  # noqa: E402
from dialer.store.db import make_engine, make_sessionmaker  # noqa: E402
from dialer.store.models import (  # noqa: E402
    Account,
    CallAttempt,
    Campaign,
    CampaignAccount,
    ClaimEvidence,
    Phone,
)

RESULTS = ROOT / "benchmarks" / "results" / "claims.json"
# 14:00 UTC on a Wednesday: 10:00 in New York, 07:00 in Los Angeles (closed), 04:00 in Honolulu.
NOW = dt.datetime(2026, 6, 10, 14, 0, tzinfo=dt.UTC)
# Area codes across the US zones, multi-zone ones included: about a third are refused.
AREAS = ("212", "305", "312", "214", "303", "602", "208", "701", "907", "808", "310", "206")
BATCH = 50  # calls a pacing decision asks for at once


async def _seed(engine: AsyncEngine, accounts: int) -> int:
    await migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        campaign = Campaign(name="bench", dial_mode="predictive", compliance_profile="US")
        s.add(campaign)
        await s.flush()
        cid = campaign.id
        await s.execute(
            insert(Account),
            [
                {"source": "bench", "external_ref": f"B{i}", "name": "x", "balance": _money(),
                 "currency": "USD", "days_past_due": i % 120, "aging_bucket": "1-30",
                 "cease_communication": False, "attorney_represented": False,
                 "custom_fields": {}, "created_at": NOW, "updated_at": NOW}
                for i in range(accounts)
            ],
        )  # fmt: skip
        ids = list((await s.execute(select(Account.id).order_by(Account.id))).scalars())
        await s.execute(
            insert(Phone),
            [
                {"account_id": a, "number": f"+1{AREAS[i % len(AREAS)]}555{i % 10000:04d}",
                 "phone_type": "mobile", "priority": 1, "valid": True, "dnc": False,
                 "created_at": NOW}
                for i, a in enumerate(ids)
            ],
        )  # fmt: skip
        await s.execute(
            insert(CampaignAccount),
            [
                {"campaign_id": cid, "account_id": a, "state": "active", "priority": 0,
                 "attempts": 0, "added_at": NOW}
                for a in ids
            ],
        )  # fmt: skip
        # A history for some accounts, so the frequency rules count something.
        phones = dict((await s.execute(select(Phone.account_id, Phone.id))).all())
        history = []
        for n, a in enumerate(ids[::3]):
            for k in range(1 + n % 4):
                at = NOW - dt.timedelta(days=1 + k, hours=n % 5)
                history.append(
                    {"campaign_id": cid, "account_id": a, "phone_id": phones[a],
                     "number": "+10000000000", "created_at": at, "ended_at": at,
                     "outcome": "no_answer", "abandoned": False}
                )  # fmt: skip
        await s.execute(insert(CallAttempt), history)
    return cid


def _money() -> Any:
    from decimal import Decimal

    return Decimal("100.00")


async def _batch(
    sessions: async_sessionmaker[AsyncSession], cid: int, rule: Any, order: Any, evidence: bool
) -> tuple[int, int, float, float]:
    """One claim of BATCH: (claims, decisions, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    async with sessions.begin() as s:
        result = await claim_phones(s, cid, BATCH, NOW, rule, order=order, record_evidence=evidence)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(result.claimed), len(result.claimed) + sum(result.blocked.values()), wall, cpu


async def _backend(
    urls: tuple[str, str], accounts: int, rounds: int, batches: int
) -> dict[str, Any]:
    engines = {"with": make_engine(urls[0]), "without": make_engine(urls[1])}
    try:
        cids = {k: await _seed(e, accounts) for k, e in engines.items()}
        sessions = {k: make_sessionmaker(e) for k, e in engines.items()}
        rules = {}
        for k in engines:
            async with sessions[k]() as s:
                campaign = await s.get(Campaign, cids[k])
                assert campaign is not None
                rules[k] = claim_options(campaign)
        # Batches alternate between the two databases (order flipped each time), so that load
        # from elsewhere on the machine falls on both alike; a round is `batches` of each.
        runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
        # Per adjacent pair of batches (one of each, back to back): without's time / with's time
        # for the same number of decisions, the figure least moved by load from elsewhere.
        pairs: list[float] = []
        pairs_cpu: list[float] = []
        for r in range(rounds):
            totals = {k: [0, 0, 0.0, 0.0] for k in engines}
            for b in range(batches):
                order = ("with", "without") if (r + b) % 2 == 0 else ("without", "with")
                pair = {}
                for mode in order:
                    got = await _batch(
                        sessions[mode], cids[mode], rules[mode].rule, rules[mode].order,
                        mode == "with",
                    )  # fmt: skip
                    pair[mode] = got
                    for i, v in enumerate(got):
                        totals[mode][i] += v
                (cw, _, ww, uw), (co, _, wo, uo) = pair["with"], pair["without"]
                if cw and co:
                    pairs.append((cw / ww) / (co / wo))
                    pairs_cpu.append((cw / uw) / (co / uo))
            for mode, (claims, decisions, wall, cpu) in totals.items():
                runs[mode].append(
                    {"claims": claims, "decisions": decisions, "wall_s": wall, "cpu_s": cpu,
                     "claims_per_s": claims / wall, "claims_per_cpu_s": claims / cpu}
                )  # fmt: skip
        async with sessions["with"]() as s:
            records = (
                await s.execute(select(func.count()).select_from(ClaimEvidence))
            ).scalar_one()
        out: dict[str, Any] = {}
        for mode, rs in runs.items():
            out[mode] = {
                "claims_per_s": round(statistics.median(x["claims_per_s"] for x in rs), 1),
                "claims_per_cpu_s": round(statistics.median(x["claims_per_cpu_s"] for x in rs), 1),
                "rounds": [{k: round(v, 3) for k, v in x.items()} for x in rs],
            }
        out["ratio"] = round(statistics.median(pairs), 3)
        out["ratio_cpu"] = round(statistics.median(pairs_cpu), 3)
        out["ratio_of_medians"] = round(
            out["with"]["claims_per_s"] / out["without"]["claims_per_s"], 3
        )
        out["pairs"] = len(pairs)
        out["evidence_records"] = int(records)
        return out
    finally:
        for e in engines.values():
            await e.dispose()


@contextlib.contextmanager
def _sqlite_urls() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        yield (
            f"sqlite+aiosqlite:///{tmp}/with.sqlite3",
            f"sqlite+aiosqlite:///{tmp}/without.sqlite3",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="claims of 50 per round, each")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with _sqlite_urls() as urls:
                results["sqlite"] = asyncio.run(
                    _backend(urls, args.accounts, args.rounds, args.batches)
                )
        elif backend == "postgres":
            from tests.fixtures.postgres import throwaway_cluster

            with throwaway_cluster(durable=True) as server:

                async def create() -> tuple[str, str]:
                    return (await server.create_database(), await server.create_database())

                urls = asyncio.run(create())
                results["postgres"] = asyncio.run(
                    _backend(urls, args.accounts, args.rounds, args.batches)
                )
        else:
            raise SystemExit(f"--backends: unknown {backend!r} (sqlite, postgres)")
        print(backend, json.dumps(results[backend], indent=None)[:400])
    body = {
        "benchmark": "claims per second with and without the evidence record",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "settings": {"accounts": args.accounts, "rounds": args.rounds, "batches": args.batches,
                     "batch": BATCH, "profile": "US", "clock": NOW.isoformat(),
                     "figure": "claims_per_s: median round; ratio: median over back-to-back "
                               "pairs of batches (one with, one without) of with's claims/s over "
                               "without's (goal >= 0.90); ratio_cpu: the same in the dialer "
                               "process's CPU seconds"},
        "results": results,
    }  # fmt: skip
    Path(args.json).write_text(json.dumps(body, indent=2) + "\n")
    for backend, r in results.items():
        print(f"{backend}: with {r['with']['claims_per_s']} claims/s, without "
              f"{r['without']['claims_per_s']} claims/s, ratio {r['ratio']} "
              f"(per CPU second of the dialer: {r['ratio_cpu']})")  # fmt: skip


if __name__ == "__main__":
    main()
