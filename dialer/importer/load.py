"""Streaming account import: read a CSV row by row, commit good rows in batches, reject bad ones.

A first pass finds the external references the file repeats (a hash a row); the second parses,
merges every row of an account in memory and writes the account once. Memory stays flat: two
batches of records (one being written while the next is read) and the accounts waiting for a
later row. Accounts are upserted by (source, external_ref) and phones by (account, number), so
importing a file again changes nothing. The SQL lives in dialer.store.account_import.
"""

from __future__ import annotations

import array
import asyncio
import codecs
import collections
import contextlib
import csv
import datetime as dt
import functools
import gc
import io
import itertools
import multiprocessing
import re
import shutil
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import charset_normalizer
import numpy as np
import phonenumbers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.errors import UserError
from dialer.importer.columns import ColumnMap, Mapping_, resolve
from dialer.importer.parse import AccountRecord, ParseOptions, Problem, RowParser
from dialer.store.account_import import write_accounts
from dialer.store.models import Campaign

BATCH_ROWS = 5_000
PARSE_CHUNK = 1000
SAMPLE_BYTES = 1 << 16  # what the encoding is detected from
csv.field_size_limit(1 << 20)
Progress = Callable[[int, int], None]  # (rows read, bytes read)
_HASH_MASK = 0xFFFFFFFF  # duplicate scan: four bytes per row
_REASONS_KEPT = 50  # distinct rejection reasons counted one by one; the rest as "other"
_SEVERAL_ZONES = "(several: all must be open)"


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
    dry_run: bool = False  # True: the counts say what would happen; nothing was written
    encoding: str = ""  # what the file was read as
    encoding_source: str = ""  # how that was decided (option, byte order mark, detection)
    bom_stripped: bool = False
    fallback_encoding: str | None = None
    rows_decoded_by_fallback: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    numbers_by_country: dict[str, int] = field(default_factory=dict)
    zones_assigned: dict[str, int] = field(default_factory=dict)  # phones per zone stored
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class ImportOptions:
    source: str = "default"
    campaign_id: int | None = None
    parse: ParseOptions = field(default_factory=ParseOptions)
    mapping: Mapping_ | None = None
    delimiter: str | None = None  # None: guessed from the header line
    # "auto": a byte order mark, else valid UTF-8, else charset-normalizer's guess.
    encoding: str = "auto"
    # Rows the file's encoding cannot decode: "auto" (cp1252 for a UTF-8 file, else UTF-8), a
    # codec name, or None to reject them.
    fallback_encoding: str | None = "auto"
    dry_run: bool = False
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


@dataclass(frozen=True, slots=True)
class Encoding:
    """How the file's bytes become text: its encoding, the bytes of a byte order mark to skip,
    the fallback for rows the encoding cannot decode, and how that was decided."""

    name: str
    source: str
    bom: int = 0
    fallback: str | None = None
    wide: bool = False  # UTF-16/32: lines cannot be split on the byte b"\n"


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)  # fmt: skip
# Among guesses that read the sample equally well, the encodings of the files this product meets
# (Spanish and English speaking agencies: Windows, then old DOS and Mac exports) come first:
# charset-normalizer ranks Central European cp1250 first for Spanish text, which turns ñ into ń.
_PREFERRED = ("utf_8", "cp1252", "cp850", "mac_roman", "iso8859_15")


def _codec(name: str, option: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise UserError(
            f"{option} {name}: unknown encoding (e.g. utf-8, cp1252, latin-1, utf-16)"
        ) from None


def _detect(sample: bytes) -> tuple[str, str]:
    """(encoding, how it was found) for text without a byte order mark."""
    try:
        sample.decode("utf-8")
        return "utf-8", "detected: valid UTF-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data":
            return "utf-8", "detected: valid UTF-8"  # a character cut by the sample's end
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return "cp1252", "detected: not UTF-8, charset-normalizer had no guess; cp1252 assumed"
    best = min(m.chaos for m in matches)
    close = [m for m in matches if m.chaos <= best + 0.01]
    for wanted in _PREFERRED:
        if any(wanted in m.could_be_from_charset for m in close):
            return _codec(wanted, "--encoding"), "detected by charset-normalizer"
    return _codec(close[0].encoding, "--encoding"), "detected by charset-normalizer"


def choose_encoding(head: bytes, encoding: str, fallback: str | None) -> Encoding:
    """The file's encoding from its first bytes and the options; a byte order mark is skipped
    whatever the encoding (one written by UTF-16/32 decides, nothing else reads such a file)."""
    bom, marked = 0, None
    for mark, name in _BOMS:
        if head.startswith(mark):
            bom, marked = len(mark), name
            break
    if marked and marked != "utf-8":
        name, source = marked, "byte order mark"
    elif encoding != "auto":
        name, source = _codec(encoding, "--encoding"), "--encoding"
        if name == "utf-8-sig":
            name = "utf-8"  # the byte order mark is skipped anyway
    elif marked:
        name, source = "utf-8", "byte order mark"
    else:
        sample = head[bom:]
        if len(head) >= SAMPLE_BYTES and b"\n" in sample:
            sample = sample[: sample.rindex(b"\n") + 1]
        name, source = _detect(sample)
    wide = name.startswith(("utf-16", "utf-32"))
    if fallback == "auto":
        fallback = "cp1252" if name == "utf-8" else "utf-8"
    elif fallback is not None:
        fallback = _codec(fallback, "--fallback-encoding")
    if wide or fallback == name:
        fallback = None
    return Encoding(name, source, bom, fallback, wide)


_BLOCK = 1 << 18  # bytes decoded at a time
# Line breaks str.splitlines knows and the csv module does not (it ends lines at \r and \n only).
_ODD_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _split(text: str) -> list[str]:
    if any(c in text for c in _ODD_BREAKS):
        return _LINE.findall(text)
    return text.splitlines(keepends=True)


class _Lines:
    """The file's physical lines. Decoded a block at a time, and a block the file's encoding
    cannot decode line by line, so that such a line is decoded by the fallback (and flagged) or
    rejected, never ending the import. The lines of the last blocks are kept: a rejected record's
    original text."""

    def __init__(
        self, raw: IO[bytes], encoding: Encoding, *, first_line: int = 2, skip_header: bool = False
    ) -> None:
        self.raw = raw
        self.encoding = encoding
        self.first_line = first_line
        self.skip_header = skip_header
        self.problems: dict[int, Problem] = {}  # by line number, until their record is read
        self.window: collections.deque[tuple[int, list[str]]] = collections.deque(maxlen=3)
        self.reader: Any = None  # the csv reader over these lines: where the record ends

    def __iter__(self) -> Iterator[str]:
        # The csv reader pulls lines from C iterators; this generator runs once a block.
        return itertools.chain.from_iterable(self._blocks())

    def _texts(self) -> Iterator[tuple[str | None, bytes]]:
        """(decoded block or None when it does not decode, its bytes), cut after a line end."""
        if self.encoding.wide:
            yield from self._wide_texts()
            return
        name = self.encoding.name
        carry_bytes = b""
        while True:
            chunk = self.raw.read(_BLOCK)
            data = carry_bytes + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry_bytes = data
                    continue
                data, carry_bytes = data[:cut], data[cut:]
            elif not data:
                return
            else:
                carry_bytes = b""
            try:
                yield data.decode(name), data
            except UnicodeDecodeError:
                yield None, data

    def _wide_texts(self) -> Iterator[tuple[str | None, bytes]]:
        wrapper = io.TextIOWrapper(self.raw, encoding=self.encoding.name, newline="")
        if self.skip_header:
            wrapper.readline()
        carry = ""
        while True:
            chunk = wrapper.read(_BLOCK)
            text = carry + chunk
            if chunk:
                cut = text.rfind("\n") + 1
                if cut == 0:
                    carry = text
                    continue
                text, carry = text[:cut], text[cut:]
            elif not text:
                return
            else:
                carry = ""
            yield text, b""

    def _blocks(self) -> Iterator[list[str]]:
        line = self.first_line
        for text, data in self._texts():
            if text is not None:
                lines = _split(text)
            else:
                lines = [self._decode(b, line + k) for k, b in enumerate(data.splitlines(True))]
            self.window.append((line, lines))
            line += len(lines)
            yield lines

    def _decode(self, raw: bytes, line: int) -> str:
        name, fallback = self.encoding.name, self.encoding.fallback
        try:
            return raw.decode(name)
        except UnicodeDecodeError as exc:
            byte = f"byte 0x{raw[exc.start]:02x}"
        if fallback is not None:
            try:
                text = raw.decode(fallback)
            except UnicodeDecodeError:
                pass
            else:
                self.problems[line] = Problem(
                    "*", f"not {name} text ({byte}): read as {fallback}, check its accents; "
                    f"if the whole file is {fallback}, give --encoding {fallback}",
                    fatal=False, action=f"decoded as {fallback}, row kept",
                )  # fmt: skip
                return text
        self.problems[line] = Problem(
            "*", f"not {name} text ({byte})"
            + (f" nor {fallback}" if fallback else "")
            + "; give --encoding with the file's encoding (e.g. --encoding cp1252)"
            + ("" if fallback else " or --fallback-encoding cp1252"),
        )  # fmt: skip
        return raw.decode(name, errors="replace")

    def last_line(self) -> int:
        """The last line the csv reader has taken (the end of the record it just gave)."""
        return int(self.reader.line_num) + self.first_line - 1

    def problem_of(self, first: int, last: int) -> Problem | None:
        """The decoding problem of a record's lines, if any (a rejection outweighs a flag)."""
        found = None
        for line in range(first, last + 1):
            p = self.problems.pop(line, None)
            if p is not None and (found is None or p.fatal):
                found = p
        for line in [n for n in self.problems if n < first]:
            del self.problems[line]  # lines of no record (blank)
        return found

    def text(self, first: int) -> str:
        """The original text of the record that starts at line `first` (the last one read)."""
        last = self.last_line()
        out: list[str] = []
        for start, lines in self.window:
            lo, hi = max(first, start), min(last, start + len(lines) - 1)
            if lo <= hi:
                out.extend(lines[lo - start : hi - start + 1])
        return "".join(out).rstrip("\r\n")


class RejectsWriter:
    """The rejects CSV: one line per problem, with the record's first line number in the file,
    the column, the reason, what was done and the record's original text."""

    HEADER = ("row", "column", "reason", "action", "text")

    def __init__(self, path: Path | None, sample: int = 50) -> None:
        self.path = path
        self.sample = sample
        self._file = path.open("w", newline="", encoding="utf-8") if path else None
        self._writer = csv.writer(self._file) if self._file else None
        if self._writer:
            self._writer.writerow(self.HEADER)

    def write(
        self, row: int, problems: list[Problem], fatal: bool, report: ImportReport, text: str = ""
    ) -> None:
        for p in problems:
            action = "row rejected" if fatal else p.action or "value dropped, row kept"
            if self._writer:
                self._writer.writerow((row, p.column, p.reason, action, text))
            if len(report.sample_rejects) < self.sample:
                report.sample_rejects.append(
                    {"row": row, "column": p.column, "reason": p.reason, "action": action}
                )
            if fatal and p.fatal:
                reasons = report.rejected_by_reason
                key = f"{p.column}: {p.reason}"
                if key in reasons or len(reasons) < _REASONS_KEPT:
                    reasons[key] = reasons.get(key, 0) + 1
                else:
                    reasons["(other reasons)"] = reasons.get("(other reasons)", 0) + 1

    def close(self) -> None:
        if self._file:
            self._file.close()


@dataclass(slots=True)
class _Source:
    """The opened file: header, delimiter and encoding, where the rows start."""

    stream: IO[bytes]
    encoding: Encoding
    header: list[str]
    delimiter: str
    rows_start: int  # byte offset of the first row (after the header line)


def _open(stream: IO[bytes], options: ImportOptions, report: ImportReport) -> _Source:
    start = stream.tell()
    head = stream.read(SAMPLE_BYTES)
    if not head.strip():
        raise UserError("file is empty: expected a header row")
    encoding = choose_encoding(head, options.encoding, options.fallback_encoding)
    report.encoding, report.encoding_source = encoding.name, encoding.source
    report.fallback_encoding = encoding.fallback
    report.bom_stripped = encoding.bom > 0
    stream.seek(start + encoding.bom)
    if encoding.wide:
        text = io.TextIOWrapper(stream, encoding=encoding.name, newline="")
        try:
            first = text.readline()
        except UnicodeDecodeError as exc:
            raise UserError(f"file is not {encoding.name} text: {exc}; give --encoding") from exc
        rows_start = -1  # re-read from the start: a text layer's position is not a byte offset
        text.detach()
    else:
        line = stream.readline()
        rows_start = stream.tell()
        lines = _Lines(io.BytesIO(line), encoding, first_line=1)
        first = next(iter(lines), "")
        problem = lines.problems.get(1)
        if problem is not None:
            if problem.fatal:
                raise UserError(f"line 1 (the header): {problem.reason}")
            report.notes.append(f"line 1 (the header): {problem.reason}")
    if first.startswith("\ufeff"):
        first = first[1:]  # a byte order mark the encoding given does not consume
        report.bom_stripped = True
    if not first.strip():
        raise UserError("file is empty: expected a header row")
    delimiter = options.delimiter or _guess_delimiter(first)
    header = next(csv.reader([first], delimiter=delimiter))
    return _Source(stream, encoding, header, delimiter, rows_start)


def _data_lines(source: _Source, raw: IO[bytes]) -> _Lines:
    """The rows' lines (the header skipped), read through `raw`, which wraps the stream."""
    if source.rows_start >= 0:
        source.stream.seek(source.rows_start)
        return _Lines(raw, source.encoding)
    # A wide (UTF-16/32) file is re-read from its start: a text layer's position is no offset.
    source.stream.seek(source.encoding.bom)
    return _Lines(raw, source.encoding, skip_header=True)


Record = tuple[int, list[str] | None, Problem | None]  # first line, fields, decoding problem


def _records(reader: Any, lines: _Lines) -> Iterator[Record]:
    """The file's records with their first line (the header is line 1); blank lines skipped. A
    record the CSV reader cannot read is one rejected record, not the end of the import."""
    lines.reader = reader
    problems = lines.problems
    offset = lines.first_line
    while True:
        first = reader.line_num + offset
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines.problem_of(first, lines.last_line())
            yield first, None, Problem("*", f"unreadable CSV: {exc}")
            continue
        if problems:
            flag = lines.problem_of(first, lines.last_line())
            if flag is not None:
                yield first, row, flag
                continue
        if row and (row[0].strip() or "".join(row).strip()):
            yield first, row, None


def _scan_duplicates(source: _Source, ref_index: int) -> dict[int, int]:
    """Occurrences of each external reference that the file holds more than once, by hash: a
    first pass, so that every row of an account is merged in memory before the account is
    written once, wherever its rows fall. Four bytes a row while it runs; then only the repeats.

    The references are picked out of each line by a regular expression (a record starts at a
    line start; a quoted field may span lines): a line inside a quoted field may add a hash
    that matches nothing, which only keeps a record waiting until the end of the file."""
    d = re.escape(source.delimiter)
    field_ = rf'(?:"(?:[^"]|"")*"|[^{d}"\r\n]*)'
    # The rest of each line is consumed, so that the search resumes at the next line's start.
    pick = re.compile(rf"^(?:{field_}{d}){{{ref_index}}}({field_})[^\n]*", re.MULTILINE)
    hashes = array.array("I")
    # Read through a wrapper of its own: closing it (a text layer does) leaves the stream open.
    lines = _data_lines(source, io.BufferedReader(_CountingReader(source.stream), 1 << 16))
    for block in lines._blocks():
        text = "".join(block)
        hashes.extend(
            hash((ref[1:-1].replace('""', '"') if ref[:1] == '"' else ref).strip()) & _HASH_MASK
            for ref in pick.findall(text)
        )
        lines.window.clear()
    lines.problems.clear()
    if not hashes:
        return {}
    # Sorted in place (the array's own buffer), a repeat is an element equal to the one before
    # it: one byte of working memory a row beyond the hashes (np.unique's would take sixteen).
    values = np.frombuffer(hashes, dtype=np.uint32)
    values.sort()
    same = values[1:] == values[:-1]
    again = values[1:][same]
    del values, same, hashes
    if not len(again):
        return {}
    keys, extra = np.unique(again, return_counts=True)
    return dict(zip(keys.tolist(), (extra + 1).tolist(), strict=True))


def _spooled(stream: IO[bytes]) -> IO[bytes]:
    """A seekable copy of a stream that is not (the duplicate scan reads the file twice)."""
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - the import closes it
    shutil.copyfileobj(stream, copy, 1 << 20)
    copy.seek(0)
    return copy


_NANP_CODES = frozenset(phonenumbers.region_codes_for_country_code(1))


@functools.lru_cache(maxsize=4096)
def _country_of_prefix(prefix: str) -> str:
    """The country a number's first digits say: North America by area code, elsewhere the
    calling code's main country (for the report)."""
    try:
        parsed = phonenumbers.parse(prefix + "0" * 12, None)
    except phonenumbers.NumberParseException:
        return "unknown"
    if parsed.country_code == 1:
        with_area = phonenumbers.PhoneNumber(
            country_code=1, national_number=int(prefix[2:5].ljust(10, "2"))
        )
        return phonenumbers.region_code_for_number(with_area) or "US/CA"
    return phonenumbers.region_code_for_country_code(parsed.country_code or 0)


def _tally(report: ImportReport, records: Iterable[AccountRecord]) -> None:
    countries, zones = report.numbers_by_country, report.zones_assigned
    for record in records:
        for p in record.phones:
            country = _country_of_prefix(p.number[:5])
            countries[country] = countries.get(country, 0) + 1
            zone = p.time_zone or _SEVERAL_ZONES
            zones[zone] = zones.get(zone, 0) + 1


async def import_accounts(
    engine: AsyncEngine,
    stream: IO[bytes],
    options: ImportOptions,
    *,
    rejects: Path | None = None,
    progress: Progress | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> ImportReport:
    """Import accounts from a binary CSV stream; good rows are committed batch by batch (or, in a
    dry run, written and rolled back, to count what would change)."""
    report = ImportReport(rejects_path=str(rejects) if rejects else None, dry_run=options.dry_run)
    with contextlib.ExitStack() as closing:
        if not stream.seekable():
            stream = closing.enter_context(_spooled(stream))
        # Detection and the duplicate scan read the whole file before any await: in a thread,
        # so that the event loop (the API's) keeps running meanwhile.
        source = await asyncio.to_thread(_open, stream, options, report)
        columns = resolve(source.header, options.mapping)
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
        repeats = await asyncio.to_thread(_scan_duplicates, source, columns.fields["external_ref"])
        counter = _CountingReader(stream)
        lines = _data_lines(source, io.BufferedReader(counter, 1 << 16))
        reader = csv.reader(lines, delimiter=source.delimiter)
        await _run(engine, options, report, parser, columns, lines, reader, repeats, rejects,
                   progress, counter, now)  # fmt: skip
    if report.rows_decoded_by_fallback:
        report.notes.append(
            f"{report.rows_decoded_by_fallback} rows were not {report.encoding} text and were "
            f"read as {report.fallback_encoding} (flagged in the rejects file); if the whole file "
            f"is {report.fallback_encoding}, give --encoding {report.fallback_encoding}"
        )
    return report


async def _run(
    engine: AsyncEngine,
    options: ImportOptions,
    report: ImportReport,
    parser: RowParser,
    columns: ColumnMap,
    lines: _Lines,
    reader: Any,
    repeats: dict[int, int],
    rejects: Path | None,
    progress: Progress | None,
    counter: _CountingReader,
    now: Callable[[], dt.datetime],
) -> None:
    out = RejectsWriter(rejects)
    batch: dict[str, AccountRecord] = {}
    # Accounts whose later rows are still to come, by reference hash: merged here and written
    # once, when their last row has been read (or at the end, for a rejected last row).
    waiting: dict[int, dict[str, AccountRecord]] = {}
    parsed = (
        _parse_in_workers(_records(reader, lines), lines, columns, options)
        if options.workers > 0
        else _parse_here(_records(reader, lines), parser)
    )
    # One batch is written while the next is parsed: the database (SQLite's thread, the
    # Postgres server) works on the other core. At most one write is in flight, in file order.
    writing: asyncio.Task[None] | None = None

    async def hand_over() -> None:
        nonlocal writing, batch
        if writing is not None:
            await writing
        _tally(report, batch.values())
        writing = asyncio.create_task(_commit(engine, options, batch, report, now()))
        batch = {}
        _GcPause.between_batches()
        if progress:
            progress(report.rows, counter.count)

    with _GcPause.during_import():
        try:
            async for line, record, problems, text in parsed:
                report.rows += 1
                if record is None:
                    report.rejected_rows += 1
                    out.write(
                        line, problems, True, report, lines.text(line) if text is None else text
                    )
                else:
                    report.accepted_rows += 1
                    if problems:
                        report.warnings += len(problems)
                        if any(p.action for p in problems):
                            report.rows_decoded_by_fallback += 1
                        out.write(line, problems, False, report,
                                  lines.text(line) if text is None else text)  # fmt: skip
                    ref = record.external_ref
                    h = hash(ref) & _HASH_MASK
                    left = repeats.get(h)
                    if left is None:
                        batch[ref] = record
                    else:
                        group = waiting.setdefault(h, {})
                        earlier = group.get(ref)
                        if earlier is None:
                            group[ref] = record
                        else:
                            report.duplicates_merged += 1
                            earlier.merge(record)
                        if left > 1:
                            repeats[h] = left - 1
                        else:
                            del repeats[h]
                            batch.update(waiting.pop(h))
                if len(batch) >= options.batch_rows:
                    await hand_over()
            for group in waiting.values():
                batch.update(group)
                if len(batch) >= options.batch_rows:
                    await hand_over()
            waiting.clear()
            if batch:
                await hand_over()
            if writing is not None:
                await writing
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


Parsed = tuple[int, AccountRecord | None, list[Problem], str | None]


def _parse_one(parser: RowParser, line: int, row: list[str] | None, flag: Problem | None) -> Any:
    if flag is None:
        assert row is not None
        return parser.parse(row)
    if flag.fatal or row is None:
        return None, [flag]
    record, problems = parser.parse(row)
    problems.insert(0, flag)
    return record, problems


async def _parse_here(records: Iterator[Record], parser: RowParser) -> AsyncGenerator[Parsed, None]:
    parse = parser.parse
    for n, (line, row, flag) in enumerate(records):
        if flag is None:
            record, problems = parse(row)  # type: ignore[arg-type]
        else:
            record, problems = _parse_one(parser, line, row, flag)
        yield line, record, problems, None
        if n % 32 == 0:
            await asyncio.sleep(0)  # let the batch being written take its next step


_worker_parser: RowParser | None = None


def _init_worker(columns: ColumnMap, options: ParseOptions) -> None:
    global _worker_parser
    _worker_parser = RowParser(columns, options)


def _parse_chunk(rows: list[tuple[int, list[str] | None, Problem | None, str]]) -> list[Parsed]:
    assert _worker_parser is not None
    parser = _worker_parser
    return [(line, *_parse_one(parser, line, row, flag), text) for line, row, flag, text in rows]


async def _parse_in_workers(
    records: Iterator[Record], lines: _Lines, columns: ColumnMap, options: ImportOptions
) -> AsyncGenerator[Parsed, None]:
    """Parse in worker processes, a few chunks ahead, results in file order; memory stays bounded
    by the chunks in flight. Each record's original text travels with it (for the rejects)."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("forkserver")

    def with_text() -> Iterator[tuple[int, list[str] | None, Problem | None, str]]:
        for line, row, flag in records:
            yield line, row, flag, lines.text(line)

    with ProcessPoolExecutor(
        options.workers, context, initializer=_init_worker, initargs=(columns, options.parse)
    ) as pool:
        pending: collections.deque[asyncio.Future[list[Parsed]]] = collections.deque()
        rows = with_text()
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
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            counts = await write_accounts(
                conn, list(batch.values()), source=options.source,
                campaign_id=options.campaign_id, now=now,
            )  # fmt: skip
        except BaseException:
            await transaction.rollback()
            raise
        # A dry run writes the batch as an import would, to count what would change, and takes
        # it back: every row of an account is in one batch, so later batches count the same.
        if options.dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
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
