"""Streaming account import: read a CSV row by row, commit good rows in batches, reject bad ones.

Memory stays flat: at most two batches of records are held (one being written while the next is
read). Accounts are upserted by (source, external_ref) and phones by (account, number), so
importing a file again changes nothing. The SQL lives in dialer.store.account_import.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import datetime as dt
import gc
import io
import itertools
import multiprocessing
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.errors import UserError
from dialer.importer.columns import ColumnMap, Mapping_, resolve
from dialer.importer.parse import AccountRecord, ParseOptions, Problem, RowParser
from dialer.store.account_import import write_accounts
from dialer.store.models import Campaign

BATCH_ROWS = 5_000
PARSE_CHUNK = 1000
csv.field_size_limit(1 << 20)
Progress = Callable[[int, int], None]  # (rows read, bytes read)


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    accepted_rows: int = 0
    rejected_rows: int = 0
    warnings: int = 0
    accounts_created: int = 0
    accounts_updated: int = 0
    accounts_unchanged: int = 0
    phones_added: int = 0
    memberships_added: int = 0
    duplicates_merged: int = 0
    rejects_path: str | None = None
    sample_rejects: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class ImportOptions:
    source: str = "default"
    campaign_id: int | None = None
    parse: ParseOptions = field(default_factory=ParseOptions)
    mapping: Mapping_ | None = None
    delimiter: str | None = None  # None: guessed from the header line
    encoding: str = "utf-8-sig"
    batch_rows: int = BATCH_ROWS
    # Worker processes that parse rows while this one writes (0, the default everywhere: parse
    # here). Only worth it with cores to spare beyond this process and the database: on two
    # cores, sending records between processes cost more than it saved (1,000,000 rows with one
    # worker: 25,200 rows/s on Postgres, 33,800 on SQLite, against about 31,000 and 38,800).
    workers: int = 0


class _GcPause:
    """Automatic garbage collection paused while imports run, young generations collected once per
    batch instead. The records a batch holds are acyclic, freed by reference counting; yet as they
    accumulate they set off collections that walk the whole heap (a seventh of the import's time
    at 1,000,000 rows). Cyclic garbage the rest of the process makes meanwhile is still collected
    at each batch (young) or when the last import ends (older); concurrent imports nest."""

    depth = 0
    was_enabled = False

    @classmethod
    @contextlib.contextmanager
    def during_import(cls) -> Iterator[None]:
        if cls.depth == 0:
            cls.was_enabled = gc.isenabled()
            gc.disable()
        cls.depth += 1
        try:
            yield
        finally:
            cls.depth -= 1
            if cls.depth == 0 and cls.was_enabled:
                gc.enable()

    @classmethod
    def between_batches(cls) -> None:
        if cls.depth and cls.was_enabled:
            gc.collect(1)


class _CountingReader(io.RawIOBase):
    """Counts the bytes the CSV reader has consumed, for an honest progress bar."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


def _guess_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _rows(stream: IO[bytes], options: ImportOptions) -> tuple[list[str], Any, _CountingReader]:
    counter = _CountingReader(stream)
    text = io.TextIOWrapper(
        io.BufferedReader(counter, 1 << 16), encoding=options.encoding, newline=""
    )
    try:
        first = text.readline()
    except UnicodeDecodeError as exc:
        raise UserError(f"file is not {options.encoding} text: {exc}") from exc
    if not first.strip():
        raise UserError("file is empty: expected a header row")
    delimiter = options.delimiter or _guess_delimiter(first)
    header = next(csv.reader([first], delimiter=delimiter))
    return header, csv.reader(text, delimiter=delimiter), counter


class RejectsWriter:
    """The rejects CSV: one line per problem, with the file's line number, column and reason."""

    HEADER = ("row", "column", "reason", "action")

    def __init__(self, path: Path | None, sample: int = 50) -> None:
        self.path = path
        self.sample = sample
        self._file = path.open("w", newline="", encoding="utf-8") if path else None
        self._writer = csv.writer(self._file) if self._file else None
        if self._writer:
            self._writer.writerow(self.HEADER)

    def write(self, row: int, problems: list[Problem], fatal: bool, report: ImportReport) -> None:
        for p in problems:
            action = "row rejected" if fatal else "value dropped, row kept"
            if self._writer:
                self._writer.writerow((row, p.column, p.reason, action))
            if len(report.sample_rejects) < self.sample:
                report.sample_rejects.append(
                    {"row": row, "column": p.column, "reason": p.reason, "action": action}
                )

    def close(self) -> None:
        if self._file:
            self._file.close()


async def import_accounts(
    engine: AsyncEngine,
    stream: IO[bytes],
    options: ImportOptions,
    *,
    rejects: Path | None = None,
    progress: Progress | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> ImportReport:
    """Import accounts from a binary CSV stream; good rows are committed batch by batch."""
    header, reader, counter = _rows(stream, options)
    columns = resolve(header, options.mapping)
    try:
        parser = RowParser(columns, options.parse)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if options.campaign_id is not None:
        async with engine.connect() as conn:
            found = await conn.execute(
                select(Campaign.id).where(Campaign.id == options.campaign_id)
            )
            if found.first() is None:
                raise UserError(f"campaign {options.campaign_id} does not exist")
    report = ImportReport(rejects_path=str(rejects) if rejects else None)
    out = RejectsWriter(rejects)
    batch: dict[str, AccountRecord] = {}
    parsed = (
        _parse_in_workers(reader, columns, options)
        if options.workers > 0
        else _parse_here(reader, parser)
    )
    # One batch is written while the next is parsed: the database (SQLite's thread, the
    # Postgres server) works on the other core. At most one write is in flight, in file order.
    writing: asyncio.Task[None] | None = None
    with _GcPause.during_import():
        try:
            try:
                async for line, record, problems in parsed:
                    report.rows += 1
                    if record is None:
                        report.rejected_rows += 1
                        out.write(line, problems, True, report)
                    else:
                        report.accepted_rows += 1
                        if problems:
                            report.warnings += len(problems)
                            out.write(line, problems, False, report)
                        if record.external_ref in batch:
                            report.duplicates_merged += 1
                            batch[record.external_ref].merge(record)
                        else:
                            batch[record.external_ref] = record
                    if len(batch) >= options.batch_rows:
                        if writing is not None:
                            await writing
                        writing = asyncio.create_task(
                            _commit(engine, options, batch, report, now())
                        )
                        batch = {}
                        _GcPause.between_batches()
                        if progress:
                            progress(report.rows, counter.count)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise UserError(f"line {reader.line_num + 1}: unreadable CSV: {exc}") from exc
            if writing is not None:
                await writing
            if batch:
                await _commit(engine, options, batch, report, now())
            if progress:
                progress(report.rows, counter.count)
        except asyncio.CancelledError:
            if writing is not None:
                writing.cancel()
            raise
        finally:
            if writing is not None and not writing.done():
                # A batch handed over before an error still commits: its rows were good.
                await asyncio.gather(writing, return_exceptions=True)
            await parsed.aclose()
            out.close()
    return report


Parsed = tuple[int, AccountRecord | None, list[Problem]]


def _numbered(reader: Any) -> Iterator[tuple[int, list[str]]]:
    for row in reader:
        if "".join(row).strip():  # blank lines are not rows
            # Physical line number: the header is line 1; quoted fields may span lines.
            yield reader.line_num + 1, row


async def _parse_here(reader: Any, parser: RowParser) -> AsyncGenerator[Parsed, None]:
    for n, (line, row) in enumerate(_numbered(reader)):
        record, problems = parser.parse(row)
        yield line, record, problems
        if n % 32 == 0:
            await asyncio.sleep(0)  # let the batch being written take its next step


_worker_parser: RowParser | None = None


def _init_worker(columns: ColumnMap, options: ParseOptions) -> None:
    global _worker_parser
    _worker_parser = RowParser(columns, options)


def _parse_chunk(rows: list[tuple[int, list[str]]]) -> list[Parsed]:
    assert _worker_parser is not None
    return [(line, *_worker_parser.parse(row)) for line, row in rows]


async def _parse_in_workers(
    reader: Any, columns: ColumnMap, options: ImportOptions
) -> AsyncGenerator[Parsed, None]:
    """Parse in worker processes, a few chunks ahead, results in file order; memory stays bounded
    by the chunks in flight."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        options.workers, context, initializer=_init_worker, initargs=(columns, options.parse)
    ) as pool:
        pending: collections.deque[asyncio.Future[list[Parsed]]] = collections.deque()
        rows = _numbered(reader)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < options.workers * 3:
                    chunk = list(itertools.islice(rows, PARSE_CHUNK))
                    if not chunk:
                        exhausted = True
                        break
                    pending.append(loop.run_in_executor(pool, _parse_chunk, chunk))
                if not pending:
                    return
                for item in await pending.popleft():
                    yield item
        finally:
            for future in pending:
                future.cancel()


async def _commit(
    engine: AsyncEngine,
    options: ImportOptions,
    batch: dict[str, AccountRecord],
    report: ImportReport,
    now: dt.datetime,
) -> None:
    async with engine.begin() as conn:
        counts = await write_accounts(
            conn, list(batch.values()), source=options.source, campaign_id=options.campaign_id,
            now=now,
        )  # fmt: skip
    report.accounts_created += counts.accounts_created
    report.accounts_updated += counts.accounts_updated
    report.accounts_unchanged += counts.accounts_unchanged
    report.phones_added += counts.phones_added
    report.memberships_added += counts.memberships_added


async def import_file(
    engine: AsyncEngine,
    path: str | Path,
    options: ImportOptions,
    *,
    rejects: Path | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot read {path}: no such file")
    # Local-file reads block only for one buffer at a time; the batches' awaits yield the loop.
    with path.open("rb") as handle:  # noqa: ASYNC230
        return await import_accounts(engine, handle, options, rejects=rejects, progress=progress)
