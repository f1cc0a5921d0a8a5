"""`dialer import FILE`: import debtor accounts from a CSV file, streaming, with a progress bar.

Bad rows go to a rejects CSV (first line, column, reason, original text); good rows are committed
batch by batch, and importing the same file again changes nothing. --dry-run only reports.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tqdm import tqdm

from dialer.errors import UserError
from dialer.importer.columns import load_mapping
from dialer.importer.load import BATCH_ROWS, ImportOptions, ImportReport, import_file
from dialer.importer.parse import ParseOptions
from dialer.settings import load_settings
from dialer.store.db import make_engine
from dialer.store.migrate import SchemaBehindError, check_schema


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="import accounts from a CSV file",
        description="Import debtor accounts from CSV. Headers in English or Spanish are "
        "recognised (see the README), or give --mapping FILE. Phones become E.164 in the row's "
        "country (a country column) or --region; amounts follow --decimal.",
    )
    p.add_argument("file", help="CSV file (see --encoding; ',' ';' tab or '|' separated)")
    p.add_argument("--source", default="default", help="the client file's origin (default)")
    p.add_argument("--campaign", type=int, metavar="ID", help="also add the accounts to it")
    p.add_argument("--decimal", choices=[".", ","], default=".", help='"1,234.56" or "1.234,56"')
    p.add_argument("--region", help="region of rows without a country (default: settings)")
    p.add_argument("--currency", default="USD", help="when the file has no currency column")
    p.add_argument("--jurisdiction", help="compliance profile when the file has no column")
    p.add_argument("--delimiter", help="default: guessed from the header line")
    p.add_argument(
        "--encoding", default="auto",
        help="the file's encoding (default auto: a byte order mark, else UTF-8 if the start is "
        "valid UTF-8, else charset-normalizer's guess)",
    )  # fmt: skip
    p.add_argument(
        "--fallback-encoding", default="auto", metavar="ENCODING",
        help="for rows the file's encoding cannot decode; they are flagged in the rejects file "
        "(default auto: cp1252 for a UTF-8 file, else UTF-8; 'none' rejects them)",
    )  # fmt: skip
    p.add_argument(
        "--dry-run", action="store_true",
        help="report what the import would do (new, updated, unchanged, rejected, numbers by "
        "country, zones) without writing to the database",
    )  # fmt: skip
    p.add_argument("--mapping", metavar="FILE", help="TOML: [columns] field = 'Header', ...")
    p.add_argument("--rejects", metavar="FILE", help="default: FILE.rejects.csv")
    p.add_argument(
        "--batch", type=int, default=BATCH_ROWS, help=f"rows per commit (default {BATCH_ROWS})"
    )
    p.add_argument(
        "--workers", type=int, default=0,
        help="processes that parse rows while this one writes (default 0: parse inline)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


async def _run(args: argparse.Namespace, source: Path, size: int) -> int:
    settings = load_settings(args.config)
    mapping, extra = load_mapping(args.mapping) if args.mapping else (None, {})
    options = ImportOptions(
        source=args.source,
        campaign_id=args.campaign,
        parse=ParseOptions(
            default_region=str(
                extra.get("default_region") or args.region or settings.default_region
            ),
            decimal=str(extra.get("decimal") or args.decimal),
            currency=str(extra.get("currency") or args.currency),
            jurisdiction=args.jurisdiction,
        ),
        mapping=mapping,
        delimiter=args.delimiter,
        encoding=args.encoding,
        fallback_encoding=None if args.fallback_encoding == "none" else args.fallback_encoding,
        dry_run=args.dry_run,
        batch_rows=max(1, args.batch),
        workers=max(0, args.workers),
    )
    rejects = Path(args.rejects) if args.rejects else source.with_suffix(".rejects.csv")
    engine = make_engine(settings.database_url)
    bar = tqdm(
        total=size, unit="B", unit_scale=True, disable=args.quiet,
        desc=source.name,
    )  # fmt: skip
    seen = 0

    def progress(_rows: int, done: int) -> None:
        nonlocal seen
        bar.update(done - seen)
        seen = done

    try:
        try:
            await check_schema(engine)
        except SchemaBehindError as exc:
            raise UserError(str(exc)) from exc
        report = await import_file(engine, source, options, rejects=rejects, progress=progress)
    finally:
        bar.close()
        await engine.dispose()
    for line in summary(report):
        print(line)
    if report.rejected_rows or report.warnings:
        print(f"rejects: {rejects}")
    return 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def summary(report: ImportReport) -> list[str]:
    """What the import did (or, in a dry run, would do), for people."""
    lines = [
        f"encoding: {report.encoding} ({report.encoding_source})"
        + ("; byte order mark stripped" if report.bom_stripped else ""),
        *report.notes,
        ("dry run, nothing written: " if report.dry_run else "")
        + f"{report.rows} rows: {report.accepted_rows} accepted, {report.rejected_rows} "
        f"rejected; accounts {report.accounts_created} new, {report.accounts_updated} updated, "
        f"{report.accounts_unchanged} unchanged; {report.phones_added} phones added; "
        f"{report.duplicates_merged} duplicate rows merged",
    ]
    if report.rejected_by_reason:
        lines.append("rejected by reason: " + _counts(report.rejected_by_reason))
    if report.numbers_by_country:
        lines.append("numbers by country: " + _counts(report.numbers_by_country))
    if report.zones_assigned:
        lines.append("phones by zone: " + _counts(report.zones_assigned))
    return lines


def run(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    return asyncio.run(_run(args, source, source.stat().st_size))
