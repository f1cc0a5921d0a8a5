"""Account list endpoints: CSV import (upload) and export, one account's flags.

The upload is spooled to a temporary file and imported by the same streaming importer as the CLI;
the export streams CSV with the importer's canonical headers, so an exported file re-imports as is.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import IO

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy import func, select

from dialer.api import common
from dialer.api.common import JSON, body, fail, path_id, reply, responses
from dialer.api.schema import MAX_ID, boolean, integer, obj, string
from dialer.auth import require_role
from dialer.compliance.profiles import available_profiles
from dialer.compliance.zones import valid_zone
from dialer.errors import UserError
from dialer.importer.load import ImportOptions, import_file
from dialer.importer.parse import ParseOptions
from dialer.store.models import Account, CampaignAccount, Phone, Role

MAX_UPLOAD = 512 * 1024 * 1024
EXPORT_PAGE = 1000
EXPORT_COLUMNS = (
    "external_ref", "name", "balance", "currency", "days_past_due", "time_zone", "jurisdiction",
    "cease_communication", "attorney_represented",
)  # fmt: skip
ACCOUNT_UPDATE = obj(
    {
        "cease_communication": boolean("Written request to stop: the account is never dialed."),
        "attorney_represented": boolean("Represented by an attorney: never dialed."),
        "time_zone": string(64, nullable=True),
        "jurisdiction": string(enum=available_profiles(), nullable=True),
    }
)
ACCOUNT = obj(
    {
        "id": integer(1, MAX_ID),
        "source": string(),
        "external_ref": string(),
        "balance": string(),
        "currency": string(),
        "days_past_due": integer(-36500, 36500),
        "aging_bucket": string(),
        "time_zone": string(nullable=True),
        "jurisdiction": string(nullable=True),
        "cease_communication": boolean(),
        "attorney_represented": boolean(),
    },
    additional=True,
)


async def _spool(request: web.Request) -> Path:
    """The uploaded CSV, from a raw text/csv body or a multipart `file` field, on disk."""
    # A local temporary file written in 64 KiB chunks: brief, bounded blocking.
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, kept for the importer
        prefix="dialer-import-", suffix=".csv", delete=False
    )
    path = Path(handle.name)
    try:
        with handle:
            size = await _copy_body(request, handle)
        if size == 0:
            fail(400, "invalid_request", "the uploaded file is empty", "file")
    except BaseException:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - a local temporary file
        raise
    return path


async def _copy_body(request: web.Request, handle: IO[bytes]) -> int:
    size = 0
    try:
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            part = await reader.next()
            while part is not None and not (
                isinstance(part, BodyPartReader) and part.name == "file"
            ):
                part = await reader.next()
            if part is None:
                fail(400, "invalid_request", "multipart upload needs a `file` field", "file")
            assert isinstance(part, BodyPartReader)
            while chunk := await part.read_chunk(1 << 16):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    fail(413, "too_large", f"at most {MAX_UPLOAD} bytes")
                handle.write(chunk)
        elif request.content_type in ("text/csv", "application/octet-stream", "text/plain"):
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    fail(413, "too_large", f"at most {MAX_UPLOAD} bytes")
                handle.write(chunk)
        else:
            fail(415, "unsupported_media_type", "send text/csv or multipart/form-data")
    except (HttpProcessingError, ValueError) as exc:
        fail(400, "invalid_request", f"malformed upload: {type(exc).__name__}", "file")
    return size


def _import_options(request: web.Request) -> ImportOptions:
    q = request.query
    source = q.get("source", "default")
    if not 0 < len(source) <= 64 or "\x00" in source:
        fail(400, "invalid_request", "source: 1 to 64 characters", "source")
    decimal = q.get("decimal", ".")
    if decimal not in (".", ","):
        fail(400, "invalid_request", 'decimal: "." or ","', "decimal")
    region = q.get("default_region", common.settings(request).default_region)
    if not (len(region) == 2 and region.isalpha() and region.isupper()):
        fail(
            400,
            "invalid_request",
            "default_region: a two-letter region such as US",
            "default_region",
        )
    currency = q.get("currency", "USD")
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        fail(400, "invalid_request", "currency: a three-letter ISO code", "currency")
    delimiter = q.get("delimiter") or None
    if delimiter is not None and delimiter not in (",", ";", "\t", "|"):
        fail(400, "invalid_request", "delimiter: one of , ; | or a tab", "delimiter")
    dry_run = q.get("dry_run", "false")
    if dry_run not in ("true", "false"):
        fail(400, "invalid_request", "dry_run: true or false", "dry_run")
    encoding = q.get("encoding", "auto")
    if not 0 < len(encoding) <= 32:
        fail(400, "invalid_request", "encoding: a codec name such as cp1252, or auto", "encoding")
    return ImportOptions(
        source=source,
        campaign_id=common.query_optional_int(request, "campaign_id"),
        parse=ParseOptions(default_region=region, decimal=decimal, currency=currency),
        delimiter=delimiter,
        encoding=encoding,
        dry_run=dry_run == "true",
    )


@require_role(Role.SUPERVISOR.value)
async def import_accounts(request: web.Request) -> web.StreamResponse:
    options = _import_options(request)
    path = await _spool(request)
    try:
        engine = common.engine(request)
        report = await import_file(engine, path, options)
    except UserError as exc:
        fail(400, "invalid_file", str(exc), "file")
    finally:
        path.unlink(missing_ok=True)
    return reply(report.as_dict())


async def _phone_columns(request: web.Request, campaign_id: int | None, source: str | None) -> int:
    async with common.sessions(request)() as s:
        per_account = (
            select(func.count().label("n"))
            .select_from(Phone)
            .join(Account, Account.id == Phone.account_id)
        )
        if campaign_id is not None:
            per_account = per_account.join(
                CampaignAccount, CampaignAccount.account_id == Account.id
            ).where(CampaignAccount.campaign_id == campaign_id)
        if source is not None:
            per_account = per_account.where(Account.source == source)
        sub = per_account.group_by(Phone.account_id).subquery()
        return int((await s.execute(select(func.max(sub.c.n)))).scalar() or 1)


@require_role(Role.SUPERVISOR.value)
async def export_accounts(request: web.Request) -> web.StreamResponse:
    campaign_id = common.query_optional_int(request, "campaign_id")
    source = common.query_str(request, "source", 64)
    width = await _phone_columns(request, campaign_id, source)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="accounts.csv"',
        }
    )
    await response.prepare(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*EXPORT_COLUMNS, *(f"phone_{i + 1}" for i in range(width))])
    last_id = 0
    # Keyset pages: memory stays flat however many accounts there are.
    while True:
        async with common.sessions(request)() as s:
            query = select(Account).where(Account.id > last_id).order_by(Account.id)
            if campaign_id is not None:
                query = query.join(CampaignAccount, CampaignAccount.account_id == Account.id).where(
                    CampaignAccount.campaign_id == campaign_id
                )
            if source is not None:
                query = query.where(Account.source == source)
            accounts = (await s.execute(query.limit(EXPORT_PAGE))).scalars().all()
            if not accounts:
                break
            phones: dict[int, list[str]] = {}
            for account_id, number in await s.execute(
                select(Phone.account_id, Phone.number)
                .where(Phone.account_id.in_([a.id for a in accounts]))
                .order_by(Phone.account_id, Phone.priority, Phone.id)
            ):
                phones.setdefault(account_id, []).append(number)
        for a in accounts:
            numbers = phones.get(a.id, [])
            writer.writerow(
                [
                    a.external_ref, a.name, str(a.balance), a.currency, a.days_past_due,
                    a.time_zone or "", a.jurisdiction or "",
                    "yes" if a.cease_communication else "no",
                    "yes" if a.attorney_represented else "no",
                    *numbers[:width], *([""] * (width - len(numbers))),
                ]
            )  # fmt: skip
        last_id = accounts[-1].id
        await response.write(out.getvalue().encode())
        out.seek(0)
        out.truncate()
    await response.write_eof()
    return response


def _account_json(a: Account) -> JSON:
    return {
        "id": a.id,
        "source": a.source,
        "external_ref": a.external_ref,
        "balance": a.balance,
        "currency": a.currency,
        "days_past_due": a.days_past_due,
        "aging_bucket": a.aging_bucket,
        "time_zone": a.time_zone,
        "jurisdiction": a.jurisdiction,
        "cease_communication": a.cease_communication,
        "attorney_represented": a.attorney_represented,
    }


@require_role(Role.SUPERVISOR.value)
async def get_account(request: web.Request) -> web.StreamResponse:
    account_id = path_id(request, "account_id")
    async with common.sessions(request)() as s:
        account = await s.get(Account, account_id)
        if account is None:
            fail(404, "not_found", f"account {account_id} does not exist")
        return reply(_account_json(account))


@require_role(Role.SUPERVISOR.value)
async def update_account(request: web.Request) -> web.StreamResponse:
    account_id = path_id(request, "account_id")
    data = await body(request, ACCOUNT_UPDATE)
    zone = data.get("time_zone")
    if zone is not None and not valid_zone(str(zone)):
        fail(400, "invalid_request", "time_zone: unknown time zone", "time_zone")
    async with common.sessions(request).begin() as s:
        account = await s.get(Account, account_id)
        if account is None:
            fail(404, "not_found", f"account {account_id} does not exist")
        for key, value in data.items():
            setattr(account, key, value)
        await s.flush()
        return reply(_account_json(account))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/accounts/import", import_accounts)
    app.router.add_get("/api/accounts/export", export_accounts)
    app.router.add_get("/api/accounts/{account_id}", get_account)
    app.router.add_patch("/api/accounts/{account_id}", update_account)


_IMPORT_PARAMS = [
    common.query_param("source", string(64, min_length=1), "The client file's origin (default)."),
    common.query_param(
        "campaign_id", integer(1, MAX_ID), "Also add the accounts to this campaign."
    ),
    common.query_param("decimal", string(enum=[".", ","]), 'Decimal separator: "." or ",".'),
    common.query_param("default_region", string(2, pattern="^[A-Z]{2}$"), "For local numbers."),
    common.query_param("currency", string(3, pattern="^[A-Z]{3}$"), "When no currency column."),
    common.query_param("delimiter", string(enum=[",", ";", "|", "\t"]), "Default: guessed."),
    common.query_param(
        "encoding", string(32, min_length=1), "The file's encoding; default auto (detected)."
    ),
    common.query_param(
        "dry_run",
        string(enum=["true", "false"]),
        "true: report what the import would do (new, updated, unchanged, rejected by reason, "
        "numbers by country, zones) without writing.",
    ),
]
REPORT = obj(
    {
        "rows": integer(),
        "accepted_rows": integer(),
        "rejected_rows": integer(),
        "accounts_created": integer(),
        "accounts_updated": integer(),
        "accounts_unchanged": integer(),
        "dry_run": boolean(),
        "encoding": string(),
        "rejected_by_reason": {"type": "object", "additionalProperties": integer()},
        "numbers_by_country": {"type": "object", "additionalProperties": integer()},
        "zones_assigned": {"type": "object", "additionalProperties": integer()},
        "sample_rejects": {"type": "array", "items": {"type": "object"}},
    },
    additional=True,
)
_EXPORT_RESPONSES = responses(None, 400)
_EXPORT_RESPONSES["200"] = {
    "description": "CSV",
    "content": {"text/csv": {"schema": {"type": "string"}}},
}
_ACCOUNT_ID = common.id_param("account_id", "The account's id.")
OPENAPI_PATHS: JSON = {
    "/api/accounts/import": {
        "post": {
            "summary": "Import accounts from a CSV file (see the README for the columns)",
            "tags": ["accounts"],
            "parameters": _IMPORT_PARAMS,
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                },
            },
            "responses": responses(REPORT, 400, 413, 415),
        }
    },
    "/api/accounts/export": {
        "get": {
            "summary": "Export accounts as CSV (re-importable headers)",
            "tags": ["accounts"],
            "parameters": [
                common.query_param("campaign_id", integer(1, MAX_ID), "Only this campaign's."),
                common.query_param("source", string(64), "Only this source's."),
            ],
            "responses": _EXPORT_RESPONSES,
        }
    },
    "/api/accounts/{account_id}": {
        "parameters": [_ACCOUNT_ID],
        "get": {
            "summary": "One account",
            "tags": ["accounts"],
            "responses": responses(ACCOUNT, 404),
        },
        "patch": {
            "summary": "Set an account's compliance flags, zone or jurisdiction",
            "tags": ["accounts"],
            "requestBody": common.json_body(ACCOUNT_UPDATE),
            "responses": responses(ACCOUNT, 400, 404),
        },
    },
}
