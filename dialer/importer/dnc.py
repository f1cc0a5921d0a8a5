"""Do-not-call entries: add one, or import a list (CSV) streaming, with optional expiry per number.

A number already listed by the same source and scope is updated (new expiry, reason), not
duplicated, so re-importing a list is idempotent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dialer.errors import UserError
from dialer.importer.columns import fold
from dialer.importer.parse import normalise_phone
from dialer.store.models import DncEntry

NUMBER_HEADERS = ("number", "phone", "phone_number", "telefono", "numero", "celular")
EXPIRY_HEADERS = ("expires_at", "expires", "expiry", "vence", "vencimiento", "expira")
REASON_HEADERS = ("reason", "motivo", "razon")
BATCH = 2000


@dataclass(slots=True)
class DncReport:
    rows: int = 0
    added: int = 0
    updated: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "added": self.added,
            "updated": self.updated,
            "rejected_rows": len(self.rejected),
            "rejects": self.rejected[:100],
        }


def parse_expiry(raw: str) -> dt.datetime | None:
    """ISO date (the entry lasts through that UTC day) or timestamp with zone; empty: never."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError("expected YYYY-MM-DD or an ISO timestamp with zone") from exc
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone (e.g. Z)")
    return value.astimezone(dt.UTC)


async def add_numbers(
    session: AsyncSession,
    entries: list[tuple[str, dt.datetime | None, str | None]],
    *,
    source: str,
    campaign_id: int | None,
    now: dt.datetime,
) -> tuple[int, int]:
    """Insert or refresh (number, expiry, reason) entries; returns (added, updated)."""
    numbers = list({n for n, _, _ in entries})
    scope = (
        DncEntry.campaign_id.is_(None) if campaign_id is None
        else DncEntry.campaign_id == campaign_id
    )  # fmt: skip
    existing = {
        number: entry_id
        for number, entry_id in await session.execute(
            select(DncEntry.number, DncEntry.id).where(
                DncEntry.number.in_(numbers), DncEntry.source == source, scope
            )
        )
    }
    added = updated = 0
    seen: set[str] = set()
    for number, expires, reason in entries:
        if number in existing:
            await session.execute(
                update(DncEntry)
                .where(DncEntry.id == existing[number])
                .values(expires_at=expires, reason=reason)
            )
            updated += number not in seen
        else:
            entry = DncEntry(
                number=number,
                source=source,
                scope="global" if campaign_id is None else "campaign",
                campaign_id=campaign_id,
                reason=reason,
                expires_at=expires,
                created_at=now,
            )
            session.add(entry)
            await session.flush()
            existing[number] = entry.id
            added += 1
        seen.add(number)
    return added, updated


async def import_dnc(
    engine: AsyncEngine,
    stream: IO[bytes],
    *,
    source: str,
    default_region: str,
    campaign_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> DncReport:
    from dialer.store.db import make_sessionmaker

    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    first = text.readline()
    if not first.strip():
        raise UserError("file is empty: expected a header with a number column")
    delimiter = max((",", ";", "\t"), key=first.count)
    header = [fold(h) for h in next(csv.reader([first], delimiter=delimiter))]

    def find(names: tuple[str, ...]) -> int | None:
        return next((i for i, h in enumerate(header) if h in names), None)

    number_col, expiry_col, reason_col = (
        find(NUMBER_HEADERS),
        find(EXPIRY_HEADERS),
        find(REASON_HEADERS),
    )
    if number_col is None:
        raise UserError(f"header: no number column (accepted: {', '.join(NUMBER_HEADERS)})")
    report = DncReport()
    sessions = make_sessionmaker(engine)
    batch: list[tuple[str, dt.datetime | None, str | None]] = []
    reader = csv.reader(text, delimiter=delimiter)

    async def flush() -> None:
        async with sessions.begin() as s:
            a, u = await add_numbers(s, batch, source=source, campaign_id=campaign_id, now=now())
        report.added += a
        report.updated += u
        batch.clear()
        if progress:
            progress(report.rows)

    for row in reader:
        line = reader.line_num + 1
        if not any(v.strip() for v in row):
            continue
        report.rows += 1
        try:
            if len(row) != len(header):
                raise ValueError(f"has {len(row)} fields, the header has {len(header)}")
            number = normalise_phone(row[number_col].strip(), default_region)[0]
            expires = parse_expiry(row[expiry_col]) if expiry_col is not None else None
            reason = row[reason_col].strip()[:200] or None if reason_col is not None else None
        except ValueError as exc:
            report.rejected.append({"row": line, "reason": str(exc)})
            continue
        batch.append((number, expires, reason))
        if len(batch) >= BATCH:
            await flush()
    if batch:
        await flush()
    return report
