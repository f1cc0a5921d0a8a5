"""A property sweep against an oracle written from the published rules (tests/compliance_oracle.py,
which does not import dialer.compliance): debtors in more than 20 zones (multi-zone area codes,
the Canaries, Hawaii, Adak), every profile, three weeks across the US and EU DST changes,
conversations, abandons on shared numbers, DNC entries with expiries. Through the pure rule and
through the real claim path on SQLite and Postgres: no dial the oracle forbids. Refusals the
oracle would allow are counted and printed (the rules are in places stricter than the text).

`pytest -m long` runs a bigger sweep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.compliance.claiming import claim_options
from dialer.compliance.profiles import available_profiles, load_profile
from dialer.compliance.rules import CampaignRules, ComplianceRule
from dialer.store import migrate
from dialer.store.claim import Candidate, PastAttempt, claim_phones
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import (
    Account,
    CallAttempt,
    Campaign,
    CampaignAccount,
    Consent,
    DncEntry,
    Phone,
)
from tests import compliance_oracle as oracle
from tests.fixtures.postgres import PgServer

# Numbers by where they ring (the last four digits vary per debtor).
NUMBERS = (
    "+12125550100",  # New York
    "+16175550100",  # Boston: Massachusetts' two calls a week
    "+13125550100",  # Chicago
    "+13035550100",  # Denver
    "+16025550100",  # Phoenix (no DST)
    "+13105550100",  # Los Angeles
    "+12085550100",  # Idaho: Boise and Los Angeles
    "+17015550100",  # North Dakota: Central and Mountain
    "+19075550100",  # Alaska: Anchorage and Adak
    "+18085550100",  # Honolulu
    "+19155550100",  # El Paso (Mountain)
    "+17875550100",  # Puerto Rico
    "+16715550100",  # Guam
    "+525512345678",  # Mexico City
    "+526641234567",  # Tijuana
    "+529981234567",  # Cancun
    "+573001234567",  # Colombia, mobile
    "+51912345678",  # Peru, mobile
    "+56912345678",  # Chile, mobile: anywhere in Chile, Easter Island included
    "+34912345678",  # Madrid, fixed
    "+34928123456",  # Las Palmas (Canaries), fixed
    "+34612345678",  # Spain, mobile: Madrid or the Canaries
    "+447911123456",  # UK, mobile
)
FILE_ZONES = (None, None, None, "America/Denver", "America/New_York", "Atlantic/Canary",
              "Pacific/Honolulu", "America/Adak")  # fmt: skip
STATES = (None, None, "ID", "ND", "AK", "NY", "TX", "MA", "MA")
# Campaign profiles; state overlays (US-MA) apply through the debtor's state or area code.
PROFILES = tuple(p for p in available_profiles() if "-" not in p)
START = dt.datetime(2026, 3, 5, tzinfo=dt.UTC)  # US DST starts 8 March, the EU's 29 March
SPAN_MINUTES = 23 * 24 * 60
_serial = itertools.count(1)


@dataclass
class Debtor:
    numbers: list[str]
    campaign_profile: str
    jurisdiction: str | None
    preview: bool
    file_zone: str | None
    state: str | None
    cease: bool
    attorney: bool
    now: dt.datetime
    # (phone index, minutes before now, conversation, abandoned)
    history: list[tuple[int, int, bool, bool]]
    shared_abandons: list[int]  # minutes before now: another debt's abandons on numbers[0]
    dnc: tuple[int, int | None] | None  # (phone index, expiry minutes from now; None: never)
    consent_required: bool = False  # the campaign's wireless_consent_required
    declared: tuple[str, ...] = ()  # per phone: the file's phone type
    consent: tuple[int, ...] = ()  # per phone: 0 none, 1 in force, 2 revoked


def _numbered(template: str, serial: int) -> str:
    return template[:-4] + f"{serial % 10000:04d}"


@st.composite
def debtors(draw: st.DrawFn) -> Debtor:
    serial = next(_serial)
    templates = draw(st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=2, unique=True))
    us = all(t.startswith("+1") for t in templates)
    return Debtor(
        numbers=[_numbered(t, serial * 2 + i) for i, t in enumerate(templates)],
        campaign_profile=draw(st.sampled_from(PROFILES)),
        jurisdiction=draw(st.sampled_from((None, None, *PROFILES))),
        preview=draw(st.booleans()),
        file_zone=draw(st.sampled_from(FILE_ZONES)),
        # A US state is an address in the US: drawn for debtors with US numbers.
        state=draw(st.sampled_from(STATES)) if us else None,
        cease=draw(st.integers(0, 19)) == 0,
        attorney=draw(st.integers(0, 19)) == 0,
        now=START + dt.timedelta(minutes=draw(st.integers(0, SPAN_MINUTES))),
        history=draw(
            st.lists(
                st.tuples(
                    st.integers(0, len(templates) - 1),
                    st.integers(1, 8 * 24 * 60),
                    st.integers(0, 3).map(lambda n: n == 0),
                    st.integers(0, 4).map(lambda n: n == 0),
                ),
                max_size=9,
            )
        ),
        shared_abandons=draw(st.lists(st.integers(1, 4 * 24 * 60), max_size=2)),
        dnc=draw(
            st.none()
            | st.tuples(
                st.integers(0, len(templates) - 1),
                st.none() | st.integers(-3 * 24 * 60, 3 * 24 * 60),
            )
        ),
        consent_required=draw(st.booleans()),
        declared=tuple(
            draw(st.sampled_from(("mobile", "home", "work", "unknown"))) for _ in templates
        ),
        consent=tuple(draw(st.sampled_from((0, 0, 1, 2))) for _ in templates),
    )


def _oracle_call(d: Debtor, number: str) -> oracle.Call:
    calls = []
    for index, minutes, talked, abandoned in d.history:
        at = d.now - dt.timedelta(minutes=minutes)
        calls.append(
            oracle.PastCall(
                at, d.numbers[index],
                conversation_at=at + dt.timedelta(seconds=30) if talked else None,
                abandoned_at=at + dt.timedelta(seconds=20) if abandoned and not talked else None,
            )
        )  # fmt: skip
    abandons = [c.abandoned_at for c in calls if c.abandoned_at and c.number == number]
    if number == d.numbers[0]:
        abandons += [
            d.now - dt.timedelta(minutes=m) + dt.timedelta(seconds=20) for m in d.shared_abandons
        ]
    dnc: tuple[tuple[str, dt.datetime | None], ...] = ()
    if d.dnc is not None:
        index, expiry = d.dnc
        dnc = (
            (d.numbers[index], None if expiry is None else d.now + dt.timedelta(minutes=expiry)),
        )
    profiles: tuple[str, ...] = (d.campaign_profile,)
    if d.jurisdiction and d.jurisdiction != d.campaign_profile:
        profiles += (d.jurisdiction,)
    index = d.numbers.index(number)
    return oracle.Call(
        automatic_under_tcpa=d.consent_required and not d.preview,
        declared_type=d.declared[index], consent=d.consent[index] == 1,
        number=number, at=d.now, profiles=profiles, agent_guaranteed=d.preview,
        file_zone=d.file_zone, state=d.state, cease_communication=d.cease,
        attorney_represented=d.attorney, debt_calls=tuple(calls),
        number_abandons=tuple(a for a in abandons if a <= d.now), dnc=dnc,
    )  # fmt: skip


class Tally:
    """Refusals the oracle would allow, by the dialer's reason (printed for the closing note)."""

    def __init__(self, name: str) -> None:
        self.name, self.decisions, self.dials = name, 0, 0
        self.over: Counter[str] = Counter()

    def report(self) -> str:
        lines = [f"{self.name}: {self.decisions} decisions, {self.dials} dials, "
                 f"{sum(self.over.values())} refusals the oracle would allow"]  # fmt: skip
        lines += [f"  {n:5d}  {reason}" for reason, n in self.over.most_common()]
        return "\n".join(lines)


def _judge(tally: Tally, d: Debtor, dialed: str | None, reason: str | None) -> None:
    tally.decisions += 1
    if dialed is not None:
        tally.dials += 1
        why = oracle.forbidden(_oracle_call(d, dialed))
        assert why is None, f"dialed {dialed} at {d.now.isoformat()} although {why}: {d}"
    elif any(oracle.forbidden(_oracle_call(d, n)) is None for n in d.numbers):
        tally.over[reason or "?"] += 1


# --- the pure rule ----------------------------------------------------------------------------


def _candidate(d: Debtor) -> Candidate:
    account = Account(
        id=1, external_ref="x", name="x", balance=Decimal(1), time_zone=d.file_zone,
        jurisdiction=d.jurisdiction, cease_communication=d.cease,
        attorney_represented=d.attorney, custom_fields={"state": d.state} if d.state else {},
    )  # fmt: skip
    phones = [
        Phone(id=i + 1, account_id=1, number=n, valid=True, dnc=False, priority=i + 1,
              phone_type=d.declared[i])
        for i, n in enumerate(d.numbers)
    ]  # fmt: skip
    attempts = []
    for index, minutes, talked, abandoned in sorted(d.history, key=lambda h: -h[1]):
        at = d.now - dt.timedelta(minutes=minutes)
        attempts.append(
            PastAttempt(index + 1, at, "x", abandoned and not talked, talked,
                        at + dt.timedelta(seconds=30) if talked else None)
        )  # fmt: skip
    abandons: dict[str, tuple[dt.datetime, ...]] = {}
    for n in d.numbers:
        call = _oracle_call(d, n)
        if call.number_abandons:
            abandons[n] = call.number_abandons
    listed = {}
    if d.dnc is not None:
        index, expiry = d.dnc
        until = None if expiry is None else d.now + dt.timedelta(minutes=expiry)
        if until is None or until > d.now:
            listed[d.numbers[index]] = until
    return Candidate(
        account=account, phones=phones, attempts=attempts, dnc_numbers=frozenset(listed),
        campaign_id=1, dnc_expires=listed, number_abandons=abandons,
        consents=frozenset(n for n, c in zip(d.numbers, d.consent, strict=True) if c == 1),
    )  # fmt: skip


def _pure_sweep(examples: int, capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally("pure rule")

    @settings(max_examples=examples, deadline=None, derandomize=True)
    @given(debtors())
    def sweep(d: Debtor) -> None:
        rules = CampaignRules(
            load_profile(d.campaign_profile), agent_guaranteed=d.preview,
            wireless_consent_required=d.consent_required,
        )  # fmt: skip
        choice = ComplianceRule(rules)(_candidate(d), d.now)
        _judge(tally, d, choice.phone.number if choice.phone else None, choice.reason)

    sweep()
    with capsys.disabled():
        print("\n" + tally.report())


def test_the_pure_rule_never_dials_what_the_oracle_forbids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _pure_sweep(2000, capsys)


@pytest.mark.long
def test_long_pure_sweep(capsys: pytest.CaptureFixture[str]) -> None:
    _pure_sweep(50_000, capsys)


# --- the real claim path ----------------------------------------------------------------------


async def _claim_one(engine: AsyncEngine, d: Debtor) -> tuple[str | None, str | None]:
    sessions = make_sessionmaker(engine)
    serial = next(_serial)
    async with sessions.begin() as s:
        campaign = Campaign(
            name=f"sweep-{serial}", compliance_profile=d.campaign_profile,
            dial_mode="preview" if d.preview else "predictive",
            caps={"wireless_consent_required": d.consent_required},
        )  # fmt: skip
        account = Account(
            external_ref=f"S{serial}", name="x", balance=Decimal("1.00"), time_zone=d.file_zone,
            jurisdiction=d.jurisdiction, cease_communication=d.cease,
            attorney_represented=d.attorney, custom_fields={"state": d.state} if d.state else {},
        )  # fmt: skip
        account.phones = [
            Phone(number=n, priority=i + 1, phone_type=d.declared[i])
            for i, n in enumerate(d.numbers)
        ]
        for n, c in zip(d.numbers, d.consent, strict=True):
            if c:
                s.add(
                    Consent(number=n, source="sweep", given_at=d.now - dt.timedelta(days=60),
                            revoked_at=d.now - dt.timedelta(days=1) if c == 2 else None)
                )  # fmt: skip
        s.add_all([campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        for index, minutes, talked, abandoned in d.history:
            at = d.now - dt.timedelta(minutes=minutes)
            s.add(
                CallAttempt(
                    campaign_id=campaign.id, account_id=account.id,
                    phone_id=account.phones[index].id, number=d.numbers[index], created_at=at,
                    answered_at=at + dt.timedelta(seconds=20) if talked or abandoned else None,
                    bridged_at=at + dt.timedelta(seconds=30) if talked else None,
                    abandoned=abandoned and not talked, ended_at=at + dt.timedelta(minutes=1),
                )
            )  # fmt: skip
        if d.shared_abandons:
            # Another debt, in another campaign, on the same number.
            other = Account(external_ref=f"O{serial}", name="y", balance=Decimal("1.00"))
            other.phones = [Phone(number=d.numbers[0])]
            elsewhere = Campaign(name=f"sweep-other-{serial}")
            s.add_all([other, elsewhere])
            await s.flush()
            for m in d.shared_abandons:
                at = d.now - dt.timedelta(minutes=m)
                s.add(
                    CallAttempt(
                        campaign_id=elsewhere.id, account_id=other.id,
                        phone_id=other.phones[0].id, number=d.numbers[0], created_at=at,
                        answered_at=at + dt.timedelta(seconds=20), abandoned=True,
                        ended_at=at + dt.timedelta(minutes=1),
                    )
                )  # fmt: skip
        if d.dnc is not None:
            index, expiry = d.dnc
            s.add(
                DncEntry(
                    number=d.numbers[index], source="sweep",
                    expires_at=None if expiry is None else d.now + dt.timedelta(minutes=expiry),
                    created_at=d.now - dt.timedelta(days=30),
                )
            )  # fmt: skip
    async with sessions.begin() as s:
        opts = claim_options(campaign)
        result = await claim_phones(s, campaign.id, 1, d.now, opts.rule, order=opts.order)
        # Nothing stays open: the next debtor's numbers are its own.
        await s.execute(
            update(CallAttempt).values(ended_at=d.now).where(CallAttempt.ended_at.is_(None))
        )
    if result.claimed:
        return result.claimed[0].number, None
    return None, next(iter(result.blocked), None)


@pytest.fixture(params=["sqlite", "postgres"])
def loop_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[asyncio.AbstractEventLoop, AsyncEngine]]:
    """A migrated database and the event loop it lives on, for a synchronous hypothesis test."""
    loop = asyncio.new_event_loop()
    server: PgServer | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'sweep.sqlite3'}"
    else:
        server = request.getfixturevalue("pg_server")
        url = loop.run_until_complete(server.create_database())
    engine = make_engine(url)
    loop.run_until_complete(migrate.upgrade(engine))
    try:
        yield loop, engine
    finally:
        loop.run_until_complete(engine.dispose())
        if server is not None:
            loop.run_until_complete(server.drop_database(url))
        loop.close()


def _claim_sweep(
    loop_engine: tuple[asyncio.AbstractEventLoop, AsyncEngine],
    examples: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loop, engine = loop_engine
    tally = Tally(f"claim path on {engine.dialect.name}")

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(debtors())
    def sweep(d: Debtor) -> None:
        dialed, reason = loop.run_until_complete(_claim_one(engine, d))
        _judge(tally, d, dialed, reason)

    sweep()
    with capsys.disabled():
        print("\n" + tally.report())


@pytest.mark.postgres
def test_the_claim_path_never_dials_what_the_oracle_forbids(
    loop_engine: tuple[asyncio.AbstractEventLoop, AsyncEngine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _claim_sweep(loop_engine, 120, capsys)


@pytest.mark.long
@pytest.mark.postgres
def test_long_claim_sweep(
    loop_engine: tuple[asyncio.AbstractEventLoop, AsyncEngine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _claim_sweep(loop_engine, 2000, capsys)
