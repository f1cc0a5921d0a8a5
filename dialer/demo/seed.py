"""Synthetic, obviously fake data for the demo: debtors across aging buckets, agents, a campaign.

Deterministic for a seed. Time zones are chosen among those whose calling window is open now, so
the demo dials at any hour without bending the compliance rules.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from dialer.auth import hash_password
from dialer.store.models import (
    Account,
    Agent,
    AgingBucket,
    Campaign,
    CampaignAccount,
    CampaignState,
    Payment,
    Phone,
    Role,
)

FIRST = [
    "Ana",
    "Luis",
    "María",
    "José",
    "Carmen",
    "Jorge",
    "Lucía",
    "Pedro",
    "Sofía",
    "Diego",
    "Elena",
    "Andrés",
    "Paula",
    "Miguel",
    "Laura",
    "Carlos",
    "Marta",
    "Pablo",
    "Julia",
    "Raúl",
]
LAST = [
    "García",
    "Martínez",
    "López",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Díaz",
    "Torres",
    "Ruiz",
    "Ramírez",
    "Flores",
    "Moreno",
    "Jiménez",
    "Romero",
    "Vargas",
    "Castro",
    "Ortiz",
    "Silva",
]
# (profile, zone, window start hour, window end hour, weekdays only, fake number prefix, currency)
# Between them, some region's window is open at every hour of every day.
REGIONS = [
    ("MX", "America/Mexico_City", 7, 22, False, "+5255", "MXN"),
    ("US", "America/New_York", 8, 21, False, "+1202555", "USD"),
    ("US", "America/Los_Angeles", 8, 21, False, "+1213555", "USD"),
    ("ES", "Europe/Madrid", 9, 21, True, "+3491", "EUR"),
    ("UK", "Europe/London", 8, 21, False, "+4420794", "GBP"),
    ("US", "Pacific/Honolulu", 8, 21, False, "+1808555", "USD"),
    ("US", "Pacific/Guam", 8, 21, False, "+1671555", "USD"),
]
# The desktop's language for the seeded agents and supervisor: the region's own.
LANGUAGES = {"MX": "es", "ES": "es", "CO": "es", "US": "en", "UK": "en"}
BUCKET_DAYS = [(0, 0), (1, 30), (31, 60), (61, 90), (91, 120), (121, 400)]
DEMO_PASSWORD = "demo-agent-pass"


@dataclass(frozen=True, slots=True)
class Seeded:
    campaign_id: int
    accounts: int
    agent_logins: list[str]
    profile: str


def open_region(now: dt.datetime) -> tuple[str, str, str, str]:
    """A region whose calling window is open now with at least an hour to spare."""
    for profile, zone, start, end, weekdays_only, prefix, currency in REGIONS:
        local = now.astimezone(ZoneInfo(zone))
        if start <= local.hour < end - 1 and not (weekdays_only and local.weekday() >= 5):
            return profile, zone, prefix, currency
    raise AssertionError("REGIONS leave an hour uncovered")  # the tests check every hour


async def seed(
    session: AsyncSession,
    now: dt.datetime,
    accounts: int = 300,
    agents: int = 10,
    rng_seed: int = 7,
    *,
    numbers: Callable[[], str] | None = None,
    agent_endpoint: Callable[[int], str] | None = None,
) -> Seeded:
    """`numbers` draws each debtor's one phone number instead of the fake national ones (the
    real testbed's numbering plan, where the number decides what the debtor does);
    `agent_endpoint(i)` is agent i's phone (default `Local/agentNN@dialer-agent`)."""
    rng = random.Random(rng_seed)
    profile, zone, prefix, currency = open_region(now)
    campaign = Campaign(
        name=f"Demo {now:%Y-%m-%d %H:%M}",
        dial_mode="predictive",
        state=CampaignState.RUNNING.value,
        compliance_profile=profile,
        # The predictive policy's priors match the demo's debtors (dialer.demo.run) so that it
        # leaves its progressive warm-up with sensible guesses; the 3% cap is the default.
        pacing={
            "prior_contact_rate": 0.3,
            "prior_answer_s": 5.0,
            "prior_talk_s": 15.0,
            "prior_wrap_s": 4.0,
            # A shorter progressive warm-up than a shift's: the demo lasts two minutes.
            "warmup_attempts": 30,
            "warmup_live": 8,
            "warmup_handles": 5,
        },
        caller_id="+15005550006",
        abandon_limit_s=2.0,
        wrap_up_limit_s=60,
        dispositions=[
            {"code": "PTP", "label": "Promise to pay", "contact": True, "rpc": True},
            {"code": "RPC", "label": "Right party, no promise", "contact": True, "rpc": True},
            {"code": "3RD", "label": "Third party", "contact": True, "rpc": False},
            {"code": "WRONG", "label": "Wrong number", "contact": True, "rpc": False},
            {"code": "REFUSED", "label": "Refused to pay", "contact": True, "rpc": True},
        ],
    )
    session.add(campaign)
    logins = []
    password_hash = hash_password(DEMO_PASSWORD)
    for i in range(1, agents + 1):
        login = f"agent{i:02d}"
        logins.append(login)
        session.add(
            Agent(
                login=login,
                name=f"Demo Agent {i}",
                password_hash=password_hash,
                role=Role.AGENT.value,
                endpoint=agent_endpoint(i) if agent_endpoint else f"Local/{login}@dialer-agent",
                language=LANGUAGES.get(profile, "en"),
            )
        )
    session.add(
        Agent(
            login="supervisor",
            name="Demo Supervisor",
            password_hash=password_hash,
            role=Role.SUPERVISOR.value,
            language=LANGUAGES.get(profile, "en"),
        )
    )
    await session.flush()
    for n in range(accounts):
        low, high = BUCKET_DAYS[n % len(BUCKET_DAYS)]
        days = rng.randint(low, high)
        balance = Decimal(rng.randint(5_000, 2_500_000)) / 100
        account = Account(
            source="demo",
            external_ref=f"DEMO-{n:05d}",
            name=f"{rng.choice(FIRST)} {rng.choice(LAST)} (demo)",
            balance=balance,
            currency=currency,
            days_past_due=days,
            aging_bucket=AgingBucket.for_days_past_due(days).value,
            time_zone=zone,
            jurisdiction=profile,
            custom_fields={"product": rng.choice(["card", "loan", "telecom"]), "demo": True},
        )
        digits = 10 - (len(prefix) - 1) + (1 if prefix.startswith("+1") else 2)
        account.phones = [
            Phone(
                number=f"{prefix}{rng.randrange(10 ** (digits - 1), 10**digits)}"[:16],
                phone_type=kind,
                priority=k,
                time_zone=zone,
            )
            for k, kind in enumerate(["mobile", "home"][: rng.choice([1, 1, 2])], start=1)
        ]
        if numbers is not None:
            account.phones = [
                Phone(number=numbers(), phone_type="mobile", priority=1, time_zone=zone)
            ]
        session.add(account)
        await session.flush()
        if rng.random() < 0.3:
            session.add(
                Payment(
                    account_id=account.id,
                    amount=(balance / 10).quantize(Decimal("0.01")),
                    currency=currency,
                    paid_at=now - dt.timedelta(days=rng.randint(20, 200)),
                    reference=f"DEMO-PAY-{n}",
                )
            )
        session.add(
            CampaignAccount(
                campaign_id=campaign.id, account_id=account.id, priority=5 - min(days // 30, 5)
            )
        )
    return Seeded(campaign.id, accounts, logins, profile)
