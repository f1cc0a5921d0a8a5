"""The dialer's side of the agents' port: persistence of what agents submit, screen-pop assembly,
and the forwarding of telephony commands; plus the one function that mounts the agents' routes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import zoneinfo
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import Executable

from agents_ws.engine_port import (
    Ack,
    AgentIdentity,
    CallOffer,
    CampaignInfo,
    PortRefused,
    ScreenPop,
    StateChange,
    SupervisorAction,
)
from agents_ws.hub import AgentHub
from agents_ws.protocol import (
    CallbackRequest,
    DispositionRequest,
    JsonObject,
    JsonValue,
    PromiseRequest,
    WrongNumberRequest,
)
from agents_ws.server import add_agents_ws_routes
from agents_ws.state import WRAP_UP_EXPIRED_CODE, AgentState
from dialer import auth, metrics
from dialer.compliance.claiming import claim_options
from dialer.compliance.profiles import ProfileError
from dialer.compliance.zones import DebtorEvidence, possible_zones
from dialer.domain.retry import RetryRules
from dialer.domain.settings import CampaignSettings, SettingsError
from dialer.engine.ports import ReadyAgent
from dialer.settings import Settings
from dialer.store.claim import claim_phones
from dialer.store.models import (
    Account,
    Agent,
    AgentStateLog,
    AgingBucket,
    CallAttempt,
    Callback,
    CallbackStatus,
    Campaign,
    CampaignAccount,
    CampaignState,
    DialMode,
    Disposition,
    DncEntry,
    Payment,
    Phone,
    PromiseToPay,
    PtpInstalment,
)
from dialer.telephony.asterisk import CallNotFound
from dialer.telephony.softphones import SOFTPHONE
from pacing.snapshot import AgentState as PacingAgentState
from pacing.snapshot import AgentView

log = logging.getLogger("dialer.agent_service")
HISTORY_ROWS = 10
CALLBACK_HORIZON = dt.timedelta(days=366)
PROMISE_HORIZON_DAYS = 366  # the `promise_horizon_days` setting's default

# Used when a campaign defines no disposition codes of its own.
DEFAULT_DISPOSITIONS: list[dict[str, JsonValue]] = [
    {"code": "PTP", "es": "Promesa de pago", "en": "Promise to pay", "contact": True, "rpc": True},
    {
        "code": "RPC_NO_PTP",
        "es": "Titular sin promesa",
        "en": "Debtor, no promise",
        "contact": True,
        "rpc": True,
    },
    {
        "code": "REFUSED",
        "es": "Se niega a pagar",
        "en": "Refused to pay",
        "contact": True,
        "rpc": True,
    },
    {
        "code": "DISPUTE",
        "es": "Disputa la deuda",
        "en": "Disputes the debt",
        "contact": True,
        "rpc": True,
    },
    {
        "code": "THIRD_PARTY",
        "es": "Tercero / recado",
        "en": "Third party / message",
        "contact": True,
        "rpc": False,
    },
    {"code": "CALLBACK", "es": "Volver a llamar", "en": "Call back", "contact": True, "rpc": False},
    {
        "code": "WRONG_NUMBER",
        "es": "Número equivocado",
        "en": "Wrong number",
        "contact": True,
        "rpc": False,
    },
    {"code": "NO_ANSWER", "es": "No contesta", "en": "No answer", "contact": False, "rpc": False},
    {
        "code": "ANSWERING_MACHINE",
        "es": "Contestador",
        "en": "Answering machine",
        "contact": False,
        "rpc": False,
    },
]

# Collections phase per aging bucket (DOMAIN.md): remind early, renegotiate mid, recover late.
PHASES: dict[str, str] = {
    AgingBucket.CURRENT.value: "reminder",
    AgingBucket.D1_30.value: "reminder",
    AgingBucket.D31_60.value: "renegotiation",
    AgingBucket.D61_90.value: "renegotiation",
    AgingBucket.D91_120.value: "renegotiation",
    AgingBucket.D120_PLUS.value: "recovery",
}
DEFAULT_SCRIPTS: dict[str, dict[str, str]] = {
    "es": {
        "reminder": "Buenos días, le llamamos de parte de {agency} para recordarle el pago de su "
        "cuenta. Mantener su cuenta al día conserva su servicio y su historial. ¿Podemos "
        "confirmar la fecha en la que realizará el pago?",
        "renegotiation": "Su cuenta tiene {days} días de atraso. Queremos ayudarle a ponerse al "
        "día antes de que se generen más cargos o la cancelación del servicio. Podemos ofrecerle "
        "un plan en cuotas: ¿qué monto podría pagar y en qué fecha?",
        "recovery": "Su cuenta tiene {days} días de atraso y está en etapa de recuperación. Aún "
        "podemos cerrar un acuerdo de pago hoy y evitar acciones adicionales. ¿Qué pago inicial "
        "puede comprometer?",
    },
    "en": {
        "reminder": "Hello, this is {agency} calling about your account's upcoming payment. "
        "Keeping the account current keeps your service and your record clean. Can we confirm "
        "the date you will pay?",
        "renegotiation": "Your account is {days} days past due. We would like to help you catch "
        "up before more fees or a cancellation. We can offer an instalment plan: what amount "
        "could you pay, and when?",
        "recovery": "Your account is {days} days past due and in recovery. We can still agree a "
        "payment plan today and avoid further action. What first payment can you commit to?",
    },
}


class AgentTelephony(Protocol):
    """What the telephony layer offers the agents' side (ChanSpy, hang-up, originate)."""

    async def open_agent_channel(self, agent_id: int, endpoint: str | None) -> bool: ...

    async def hang_up(self, call_id: str, attempt_id: int | None) -> None: ...

    async def close_agent_channel(self, agent_id: int) -> None: ...

    async def softphone_credentials(self, agent_id: int, uses_softphone: bool) -> JsonObject | None:
        """New SIP credentials for the agent's browser softphone (`uses_softphone`: their endpoint
        is `softphone`); {"simulated": true} in the demo's simulated PBX; None: no softphone."""
        ...

    async def softphone_audio_lost(self, agent_id: int, reason: str) -> None: ...

    async def originate_preview(self, attempt_id: int, campaign_id: int, agent_id: int) -> None:
        """Dial the preview attempt the agent holds (the engine tracks and routes the call)."""
        ...

    async def supervise(
        self, action: SupervisorAction, supervisor_endpoint: str | None, agent_endpoint: str | None
    ) -> None: ...


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _zone(name: str | None) -> zoneinfo.ZoneInfo | dt.timezone:
    if not name:
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def phase_for(bucket: str) -> str:
    return PHASES.get(bucket, "renegotiation")


def choose_script(
    campaign_scripts: dict[str, object], bucket: str, days_past_due: int, language: str
) -> JsonObject:
    """The campaign's text for the bucket, else for the phase, else the default in `language`."""
    phase = phase_for(bucket)
    text = campaign_scripts.get(bucket) or campaign_scripts.get(phase)
    source = "campaign"
    if not isinstance(text, str) or not text:
        lang = language if language in DEFAULT_SCRIPTS else "es"
        text = DEFAULT_SCRIPTS[lang][phase]
        source = "default"
    agency = str(campaign_scripts.get("agency", "la agencia" if language == "es" else "the agency"))
    text = text.replace("{days}", str(days_past_due)).replace("{agency}", agency)
    return {"bucket": bucket, "phase": phase, "text": text, "source": source}


def disposition_codes(campaign: Campaign | None, language: str) -> list[dict[str, JsonValue]]:
    raw = campaign.dispositions if campaign is not None and campaign.dispositions else None
    return _codes(raw, language)


def _codes(raw: list[Any] | None, language: str) -> list[dict[str, JsonValue]]:
    codes: list[dict[str, JsonValue]] = []
    for item in raw or DEFAULT_DISPOSITIONS:
        if not isinstance(item, dict) or not isinstance(item.get("code"), str):
            continue
        label = item.get("label") or item.get(language) or item.get("es") or item["code"]
        codes.append(
            {
                "code": item["code"],
                "label": label,
                "contact": bool(item.get("contact", False)),
                "rpc": bool(item.get("rpc", False)),
            }
        )
    return codes


@dataclass(frozen=True, slots=True)
class PopFacts:
    """What a screen pop shows, as read from the database; the agent's language (script and
    disposition labels) is applied by `render_pop`, which reads nothing."""

    shown: ScreenPop  # everything but "script" and "disposition_codes"
    scripts: dict[str, object]
    bucket: str
    days_past_due: int
    dispositions: list[Any] | None


def render_pop(facts: PopFacts, language: str) -> ScreenPop:
    return {
        **facts.shown,
        "script": choose_script(facts.scripts, facts.bucket, facts.days_past_due, language),
        "disposition_codes": list(_codes(facts.dispositions, language)),
    }


async def build_screen_pop(
    s: AsyncSession,
    campaign_id: int,
    account_id: int,
    now: dt.datetime,
    *,
    attempt_id: int | None = None,
    phone_id: int | None = None,
    language: str = "es",
) -> ScreenPop:
    """Everything the agent sees when the call is bridged."""
    facts = await read_pop_facts(
        s, campaign_id, account_id, now, attempt_id=attempt_id, phone_id=phone_id
    )
    return render_pop(facts, language)


async def read_pop_facts(
    s: AsyncSession,
    campaign_id: int,
    account_id: int,
    now: dt.datetime,
    *,
    attempt_id: int | None = None,
    phone_id: int | None = None,
) -> PopFacts:
    """The pop's database reads; `HubAgents.prepare` runs them while the call rings, so that
    reserving an agent at the answer reads nothing."""
    account = await s.get(Account, account_id)
    if account is None:
        raise PortRefused(f"account {account_id} does not exist", "account_id")
    campaign = await s.get(Campaign, campaign_id)
    phones = list(
        (
            await s.execute(
                select(Phone)
                .where(Phone.account_id == account_id)
                .order_by(Phone.priority, Phone.id)
            )
        ).scalars()
    )
    payments = (
        await s.execute(
            select(Payment)
            .where(Payment.account_id == account_id)
            .order_by(Payment.paid_at.desc())
            .limit(HISTORY_ROWS)
        )
    ).scalars()
    promises = list(
        (
            await s.execute(
                select(PromiseToPay)
                .where(PromiseToPay.account_id == account_id)
                .order_by(PromiseToPay.created_at.desc())
                .limit(HISTORY_ROWS)
            )
        ).scalars()
    )
    instalments: dict[int, list[PtpInstalment]] = {}
    if promises:
        for inst in (
            await s.execute(
                select(PtpInstalment)
                .where(PtpInstalment.promise_id.in_([p.id for p in promises]))
                .order_by(PtpInstalment.promise_id, PtpInstalment.seq)
            )
        ).scalars():
            instalments.setdefault(inst.promise_id, []).append(inst)
    history = (
        await s.execute(
            select(Disposition, Agent.login)
            .outerjoin(Agent, Agent.id == Disposition.agent_id)
            .where(Disposition.account_id == account_id)
            .order_by(Disposition.created_at.desc())
            .limit(HISTORY_ROWS)
        )
    ).all()
    callback = (
        await s.execute(
            select(Callback)
            .where(
                Callback.account_id == account_id,
                Callback.status == CallbackStatus.PENDING.value,
            )
            .order_by(Callback.due_at)
            .limit(1)
        )
    ).scalar_one_or_none()
    # Which zone(s) the claim assumed for the dialed phone, and why: the claim's own function.
    evidence = DebtorEvidence.of_account(account.time_zone, account.custom_fields)
    dialed = next((p for p in phones if p.id == phone_id), None)
    assumed: JsonValue = None
    found = possible_zones(dialed.number, evidence) if dialed else None
    if found is not None:
        assumed = {"zones": list(found.zones), "source": found.source, "reason": found.reason}
    zone = _zone(account.time_zone or (found.zones[0] if found and found.zones else None))
    shown: ScreenPop = {
        "campaign": {"id": campaign_id, "name": campaign.name if campaign else None},
        "attempt_id": attempt_id,
        "account": {
            "id": account.id,
            "external_ref": account.external_ref,
            "name": account.name,
            "balance": _money(account.balance),
            "currency": account.currency,
            "days_past_due": account.days_past_due,
            "aging_bucket": account.aging_bucket,
            "time_zone": account.time_zone,
            "local_time": now.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "zones_assumed": assumed,
        },
        "phones": [
            {
                "id": p.id,
                "number": p.number,
                "type": p.phone_type,
                "priority": p.priority,
                "valid": p.valid,
                "dnc": p.dnc,
                "current": p.id == phone_id,
            }
            for p in phones
        ],
        "payments": [
            {
                "amount": _money(p.amount),
                "currency": p.currency,
                "paid_at": _iso(p.paid_at),
                "reference": p.reference,
            }
            for p in payments
        ],
        "promises": [
            {
                "id": p.id,
                "amount": _money(p.amount),
                "currency": p.currency,
                "due_date": _iso(p.due_date),
                "status": p.status,
                "paid_amount": _money(p.paid_amount),
                "notes": p.notes,
                "instalments": [
                    {"seq": i.seq, "due_date": _iso(i.due_date), "amount": _money(i.amount)}
                    for i in instalments.get(p.id, [])
                ],
            }
            for p in promises
        ],
        "history": [
            {
                "code": d.code,
                "notes": d.notes,
                "created_at": _iso(d.created_at),
                "agent": agent_login,
            }
            for d, agent_login in history
        ],
        "callback": None
        if callback is None
        else {
            "id": callback.id,
            "due_at": _iso(callback.due_at),
            "due_local": callback.due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "notes": callback.notes,
        },
        "custom_fields": dict(account.custom_fields or {}),
    }
    return PopFacts(
        shown,
        dict(campaign.scripts) if campaign and campaign.scripts else {},
        account.aging_bucket,
        account.days_past_due,
        list(campaign.dispositions) if campaign is not None and campaign.dispositions else None,
    )


def local_to_utc(local: dt.datetime, zone_name: str | None) -> dt.datetime:
    """A wall-clock time in the debtor's zone -> aware UTC; a time that does not exist there
    (skipped by a daylight-saving change) is refused."""
    zone = _zone(zone_name)
    aware = local.replace(tzinfo=zone)
    as_utc = aware.astimezone(dt.UTC)
    if as_utc.astimezone(zone).replace(tzinfo=None) != local:
        raise PortRefused(
            f"local_time {local:%Y-%m-%d %H:%M} does not exist in {zone_name} (clock change)",
            "local_time",
        )
    return as_utc


class DbAgentPort:
    """`agents_ws.engine_port.EnginePort` on the database; telephony commands are forwarded to
    `telephony` when one is wired (until then they are refused as unavailable)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        telephony: AgentTelephony | None = None,
        promise_horizon_days: int = PROMISE_HORIZON_DAYS,
    ) -> None:
        self.sessions = sessions
        self.telephony = telephony
        self.promise_horizon = dt.timedelta(days=promise_horizon_days)

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def authenticate(self, token: str) -> AgentIdentity | None:
        who = await auth.principal_for(self.sessions, token, self._now())
        if who is None:
            return None
        async with self.sessions() as s:
            row = (
                await s.execute(
                    select(Agent.language, Agent.endpoint).where(Agent.id == who.agent_id)
                )
            ).one_or_none()
        language, endpoint = (None, None) if row is None else (row[0], row[1])
        return AgentIdentity(
            who.agent_id, who.login, who.name, who.role, language or "es", endpoint
        )

    async def still_valid(self, tokens: list[str]) -> dict[str, str]:
        """Of these socket tokens, those still valid, with their agent's role now."""
        by_digest = {auth.token_digest(t): t for t in tokens}
        live = await auth.live_tokens(self.sessions, list(by_digest), self._now())
        return {by_digest[d]: role for d, role in live.items()}

    async def campaigns(self) -> list[CampaignInfo]:
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Campaign)
                    .where(
                        Campaign.state.in_(
                            [
                                CampaignState.RUNNING.value,
                                CampaignState.PAUSED.value,
                                CampaignState.DRAFT.value,
                            ]
                        )
                    )
                    .order_by(Campaign.name)
                )
            ).scalars()
            return [CampaignInfo(c.id, c.name, c.dial_mode) for c in rows]

    async def open_agent_channel(self, agent: AgentIdentity) -> bool:
        if self.telephony is None:
            return True  # no telephony wired (tests, demo): the agent counts as logged in
        async with self.sessions() as s:
            endpoint = (
                await s.execute(select(Agent.endpoint).where(Agent.id == agent.agent_id))
            ).scalar_one_or_none()
        return await self.telephony.open_agent_channel(agent.agent_id, endpoint)

    async def close_agent_channel(self, agent: AgentIdentity) -> None:
        if self.telephony is not None:
            await self.telephony.close_agent_channel(agent.agent_id)

    async def softphone_credentials(self, agent: AgentIdentity) -> JsonObject | None:
        if self.telephony is None:
            return None
        return await self.telephony.softphone_credentials(
            agent.agent_id, agent.channel == SOFTPHONE
        )

    async def softphone_audio_lost(self, agent: AgentIdentity, reason: str) -> None:
        if self.telephony is not None and agent.channel == SOFTPHONE:
            await self.telephony.softphone_audio_lost(agent.agent_id, reason)

    async def record_state(self, change: StateChange) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(AgentStateLog)
                .where(AgentStateLog.agent_id == change.agent_id, AgentStateLog.ended_at.is_(None))
                .values(ended_at=change.at)
            )
            s.add(
                AgentStateLog(
                    agent_id=change.agent_id,
                    state=change.state.value,
                    reason=change.reason,
                    campaign_id=change.campaign_id,
                    attempt_id=change.attempt_id,
                    started_at=change.at,
                )
            )

    async def submit_disposition(
        self, agent: AgentIdentity, call: CallOffer, request: DispositionRequest
    ) -> Ack:
        existing = await self._existing(Disposition, Disposition.agent_id, agent, request)
        if existing is not None:
            return existing
        async with self.sessions() as s:
            campaign = await s.get(Campaign, call.campaign_id)
        codes = {str(c["code"]): c for c in disposition_codes(campaign, agent.language)}
        spec = codes.get(request.code)
        if spec is None and request.code != WRAP_UP_EXPIRED_CODE:
            raise PortRefused(f"code {request.code!r} is not one of this campaign's codes", "code")
        contact = bool(spec and spec["contact"])
        row = Disposition(
            attempt_id=call.attempt_id,
            account_id=call.account_id,
            campaign_id=call.campaign_id,
            agent_id=agent.agent_id,
            code=request.code,
            contact=contact,
            right_party=bool(spec and spec["rpc"]),
            notes=request.notes,
            client_msg_id=request.client_msg_id,
            created_at=self._now(),
        )
        extra: list[Executable] = []
        if contact:
            touch = update(Account).where(Account.id == call.account_id)
            extra.append(touch.values(last_contact_at=row.created_at))
        return await self._insert(row, Disposition, Disposition.agent_id, agent, request, extra)

    async def submit_promise(
        self, agent: AgentIdentity, call: CallOffer, request: PromiseRequest
    ) -> Ack:
        existing = await self._existing(PromiseToPay, PromiseToPay.agent_id, agent, request)
        if existing is not None:
            return existing
        async with self.sessions() as s:
            currency = (
                await s.execute(select(Account.currency).where(Account.id == call.account_id))
            ).scalar_one_or_none()
        if currency is None:
            raise PortRefused("the call's account no longer exists", "call_id")
        # Dates far ahead are typing slips (9999-12-31), and no promise checks out that late.
        limit = self._now().date() + self.promise_horizon
        for i, inst in enumerate(request.instalments):
            if inst.due_date > limit:
                field = "date" if len(request.instalments) == 1 else f"instalments[{i}].date"
                raise PortRefused(
                    f"{field} is more than {self.promise_horizon.days} days ahead", field
                )
        row = PromiseToPay(
            account_id=call.account_id,
            campaign_id=call.campaign_id,
            agent_id=agent.agent_id,
            attempt_id=call.attempt_id,
            amount=request.amount,
            currency=currency,
            due_date=request.due_date,
            notes=request.notes,
            client_msg_id=request.client_msg_id,
            created_at=self._now(),
            instalments=[
                PtpInstalment(seq=i + 1, due_date=p.due_date, amount=p.amount)
                for i, p in enumerate(request.instalments)
            ],
        )
        ack = await self._insert(row, PromiseToPay, PromiseToPay.agent_id, agent, request, [])
        if not ack.duplicate:
            metrics.record_ptp(call.campaign_id, currency, request.amount)
        return ack

    async def submit_callback(
        self, agent: AgentIdentity, call: CallOffer, request: CallbackRequest
    ) -> Ack:
        existing = await self._existing(Callback, Callback.created_by_agent_id, agent, request)
        if existing is not None:
            return existing
        now = self._now()
        async with self.sessions() as s:
            account_zone = (
                await s.execute(select(Account.time_zone).where(Account.id == call.account_id))
            ).scalar_one_or_none()
            phone_zone = (
                None
                if call.phone_id is None
                else (
                    await s.execute(select(Phone.time_zone).where(Phone.id == call.phone_id))
                ).scalar_one_or_none()
            )
            if request.owner_agent_id not in (None, agent.agent_id):
                owner = (
                    await s.execute(
                        select(Agent.id).where(
                            Agent.id == request.owner_agent_id, Agent.active.is_(True)
                        )
                    )
                ).scalar_one_or_none()
                if owner is None:
                    raise PortRefused(f"agent {request.owner_agent_id} does not exist", "owner")
        zone_name = phone_zone or account_zone or call.time_zone
        due_at = local_to_utc(request.local_time, zone_name)
        if due_at <= now:
            raise PortRefused("local_time is in the past (debtor's time)", "local_time")
        if due_at > now + CALLBACK_HORIZON:
            raise PortRefused("local_time is more than a year ahead", "local_time")
        row = Callback(
            account_id=call.account_id,
            campaign_id=call.campaign_id,
            phone_id=call.phone_id,
            due_at=due_at,
            owner_agent_id=request.owner_agent_id,
            created_by_agent_id=agent.agent_id,
            notes=request.notes,
            client_msg_id=request.client_msg_id,
            created_at=now,
        )
        return await self._insert(row, Callback, Callback.created_by_agent_id, agent, request, [])

    async def wrong_number(
        self, agent: AgentIdentity, call: CallOffer, request: WrongNumberRequest
    ) -> Ack:
        phone_id = request.phone_id or call.phone_id
        if phone_id is None:
            raise PortRefused("phone_id is required: this call has no phone", "phone_id")
        now = self._now()
        async with self.sessions.begin() as s:
            phone = await s.get(Phone, phone_id)
            if phone is None or phone.account_id != call.account_id:
                raise PortRefused(
                    f"phone {phone_id} is not a phone of this call's account", "phone_id"
                )
            changed = phone.valid or (request.add_to_dnc and not phone.dnc)
            phone.valid = False
            if request.add_to_dnc:
                phone.dnc = True
                listed = (
                    await s.execute(
                        select(DncEntry.id).where(
                            DncEntry.number == phone.number,
                            DncEntry.campaign_id.is_(None),
                            (DncEntry.expires_at.is_(None)) | (DncEntry.expires_at > now),
                        )
                    )
                ).first()
                if listed is None:
                    s.add(
                        DncEntry(
                            number=phone.number,
                            source="agent",
                            scope="global",
                            reason=f"wrong number, agent {agent.agent_id}",
                            created_at=now,
                        )
                    )
                    changed = True
        return Ack(phone_id, duplicate=not changed)

    async def hang_up(self, agent: AgentIdentity, call: CallOffer) -> None:
        try:
            await self._telephony().hang_up(call.call_id, call.attempt_id)
        except CallNotFound as exc:  # the debtor hung up first: the race is not a fault
            raise PortRefused("the call is already over", "call_id", "call_over") from exc

    async def next_preview(
        self, agent: AgentIdentity, campaign_id: int | None
    ) -> tuple[CallOffer, ScreenPop] | None:
        now = self._now()
        async with self.sessions.begin() as s:
            query = select(Campaign).where(
                Campaign.dial_mode == DialMode.PREVIEW.value,
                Campaign.state == CampaignState.RUNNING.value,
            )
            if campaign_id is not None:
                query = query.where(Campaign.id == campaign_id)
            campaign = (await s.execute(query.order_by(Campaign.id).limit(1))).scalar_one_or_none()
            if campaign is None:
                raise PortRefused("no running preview campaign", "campaign_id", "unavailable")
            # The same compliance as the engine's claims: window, DNC, caps, Regulation F.
            try:
                opts = claim_options(campaign)
            except ProfileError as exc:
                raise PortRefused(
                    f"campaign {campaign.id} settings: {exc}", "campaign_id", "unavailable"
                ) from exc
            claimed = await claim_phones(
                s,
                campaign.id,
                1,
                now,
                opts.rule,
                order=opts.order,
                caller_id=campaign.caller_id,
                caller_id_for=opts.caller_id_for,
                agent_id=agent.agent_id,  # the agent asked for it: recorded in the evidence
            )
            if not claimed.claimed:
                if claimed.blocked:
                    why = ", ".join(f"{k} ({n})" for k, n in sorted(claimed.blocked.items()))
                    raise PortRefused(
                        f"no account may be called now: {why}", "campaign_id", "unavailable"
                    )
                return None
            c = claimed.claimed[0]
            await s.execute(
                update(CallAttempt)
                .where(CallAttempt.id == c.attempt_id)
                .values(agent_id=agent.agent_id)
            )
            pop = await build_screen_pop(
                s,
                campaign.id,
                c.account_id,
                now,
                attempt_id=c.attempt_id,
                phone_id=c.phone_id,
                language=agent.language,
            )
            offer = CallOffer(
                call_id=str(c.attempt_id),
                campaign_id=campaign.id,
                account_id=c.account_id,
                attempt_id=c.attempt_id,
                phone_id=c.phone_id,
                time_zone=c.time_zone,
                wrap_up_limit_s=float(campaign.wrap_up_limit_s),
                wrap_up_expiry=campaign.wrap_up_expiry,
                preview=True,
            )
        return offer, pop

    async def dial_preview(self, agent: AgentIdentity, call: CallOffer) -> None:
        if call.attempt_id is None:
            raise PortRefused("this preview has no attempt", "call_id")
        await self._telephony().originate_preview(call.attempt_id, call.campaign_id, agent.agent_id)

    async def skip_preview(self, agent: AgentIdentity, call: CallOffer) -> None:
        now = self._now()
        async with self.sessions.begin() as s:
            campaign = await s.get(Campaign, call.campaign_id)
            try:
                rules = CampaignSettings.of(campaign).retry if campaign else RetryRules()
            except SettingsError as exc:
                raise PortRefused(
                    f"campaign {call.campaign_id} settings: {exc}", "campaign_id", "unavailable"
                ) from exc
            comes_back_at = rules.phone_retry_at("skipped", now, call.time_zone)
            if call.attempt_id is not None:
                attempt = await s.get(CallAttempt, call.attempt_id)
                if attempt is not None and (
                    attempt.originated_at is not None or attempt.server is not None
                ):
                    raise PortRefused("this account was dialed: hang up instead", "call_id")
                await s.execute(
                    update(CallAttempt)
                    .where(CallAttempt.id == call.attempt_id, CallAttempt.ended_at.is_(None))
                    .values(ended_at=now, outcome="skipped")
                )
            await s.execute(
                update(CampaignAccount)
                .where(
                    CampaignAccount.campaign_id == call.campaign_id,
                    CampaignAccount.account_id == call.account_id,
                )
                .values(next_attempt_at=comes_back_at)
            )

    async def supervise(
        self, supervisor: AgentIdentity, action: SupervisorAction, target_agent_id: int
    ) -> None:
        telephony = self._telephony()  # nothing to supervise with: `unavailable` first
        async with self.sessions() as s:
            rows = await s.execute(
                select(Agent.id, Agent.endpoint).where(
                    Agent.id.in_([supervisor.agent_id, target_agent_id])
                )
            )
            endpoints = {agent_id: endpoint for agent_id, endpoint in rows}
        if not endpoints.get(supervisor.agent_id):
            raise PortRefused("you have no phone (endpoint) to listen with", None, "no_phone")
        if not endpoints.get(target_agent_id):
            raise PortRefused(f"agent {target_agent_id} has no phone", "agent_id", "no_phone")
        try:
            await telephony.supervise(
                action, endpoints[supervisor.agent_id], endpoints[target_agent_id]
            )
        except CallNotFound as exc:
            raise PortRefused("that agent's call is over", "agent_id", "call_over") from exc

    def _telephony(self) -> AgentTelephony:
        if self.telephony is None:
            raise PortRefused("telephony is not connected", None, "unavailable")
        return self.telephony

    # --- idempotent inserts ---------------------------------------------------------------

    async def _existing(
        self,
        model: type[Disposition] | type[PromiseToPay] | type[Callback],
        agent_column: InstrumentedAttribute[int | None],
        agent: AgentIdentity,
        request: DispositionRequest | PromiseRequest | CallbackRequest,
    ) -> Ack | None:
        async with self.sessions() as s:
            found = (
                await s.execute(
                    select(model.id).where(
                        agent_column == agent.agent_id,
                        model.client_msg_id == request.client_msg_id,
                    )
                )
            ).scalar_one_or_none()
        return None if found is None else Ack(found, duplicate=True)

    async def _insert(
        self,
        row: Disposition | PromiseToPay | Callback,
        model: type[Disposition] | type[PromiseToPay] | type[Callback],
        agent_column: InstrumentedAttribute[int | None],
        agent: AgentIdentity,
        request: DispositionRequest | PromiseRequest | CallbackRequest,
        extra: list[Executable],
    ) -> Ack:
        """Insert and commit; the ack is built only after the commit returned. A concurrent
        re-send that lost the race on the unique (agent, client_msg_id) gets the winner's id."""
        try:
            async with self.sessions.begin() as s:
                s.add(row)
                for statement in extra:
                    await s.execute(statement)
                await s.flush()
                record_id = row.id
        except IntegrityError:
            again = await self._existing(model, agent_column, agent, request)
            if again is None:
                raise
            return again
        return Ack(record_id)


# A prepared call nobody reserved an agent for within this long is over (it rings at most 25 s,
# AMD listens at most 5 s, the router then has 2 s): its offer and pop are dropped.
PREPARED_TTL_S = 120.0


class HubAgents:
    """The engine's `AgentsPort` (dialer/engine/ports.py) over the agents' hub: the router
    reserves through it. The call's offer and screen pop are read while the call rings
    (`prepare`), so that reserving reads nothing and `connected` only pushes the pop."""

    def __init__(
        self,
        hub: AgentHub,
        sessions: async_sessionmaker[AsyncSession],
        on_ready: Callable[[int], None] | None = None,
        on_finished: Callable[[int, float, float], None] | None = None,
    ) -> None:
        """`on_ready`/`on_finished`: the engine's `agent_ready` and `handle_finished`."""
        self.hub = hub
        self.sessions = sessions
        self.on_ready = on_ready
        self.on_finished = on_finished
        self._pops: dict[int, tuple[str, ScreenPop]] = {}  # agent_id -> (call_id, pop)
        # Agents being reserved: `reserve` reads the screen pop before the hub reserves them, so
        # `longest_waiting` passes over them meanwhile. Without this, calls answered together
        # all pick the same agent and all but one lose it, and wait for the router's next round.
        self._reserving: set[int] = set()
        self._campaigns: set[int] = set()  # campaigns the engine asked about (it runs them)
        # attempt_id -> (monotonic time read, offer, pop facts), oldest first; and the reads
        # under way, which a reservation waits for rather than read a second time.
        self._prepared: OrderedDict[int, tuple[float, CallOffer, PopFacts]] = OrderedDict()
        self._preparing: dict[int, asyncio.Task[None]] = {}
        hub.listen(self)

    def agent_ready(self, campaign_id: int | None) -> None:
        if self.on_ready is None:
            return
        # An agent ready for any campaign wakes every campaign the engine runs.
        for cid in sorted(self._campaigns) if campaign_id is None else [campaign_id]:
            self.on_ready(cid)

    def handle_finished(self, campaign_id: int, talk_s: float, wrap_s: float) -> None:
        if self.on_finished is not None:
            self.on_finished(campaign_id, talk_s, wrap_s)

    def views(self, campaign_id: int) -> list[AgentView]:
        self._campaigns.add(campaign_id)
        return [
            AgentView(_pacing_state(a.state, a.phone_up), a.time_in_state)
            for a in self.hub.snapshot(campaign_id)
        ]

    def longest_waiting(self, campaign_id: int, prefer: int | None = None) -> ReadyAgent | None:
        if prefer is not None and prefer not in self._reserving:
            owner = self.hub.pick(campaign_id, prefer)
            if owner is not None and owner.channel:
                return ReadyAgent(owner.agent_id, owner.channel)
        who = self.hub.pick(campaign_id, exclude=self._reserving)
        if who is None or not who.channel:
            return None
        return ReadyAgent(who.agent_id, who.channel)

    async def reserve(self, agent_id: int, attempt_id: int) -> bool:
        # Taken before the first await: the router's `longest_waiting` and this are one step.
        if agent_id in self._reserving:
            return False
        self._reserving.add(agent_id)
        try:
            return await self._reserve(agent_id, attempt_id)
        finally:
            self._reserving.discard(agent_id)

    def prepare(self, attempt_id: int) -> None:
        """The call is ringing: read its offer and screen pop now (in the background), so that
        reserving an agent when it is answered reads nothing from the database."""
        if attempt_id in self._prepared or attempt_id in self._preparing:
            return
        task = asyncio.get_running_loop().create_task(
            self._prepare(attempt_id), name=f"prepare-{attempt_id}"
        )
        self._preparing[attempt_id] = task
        task.add_done_callback(lambda t: self._prepare_done(attempt_id, t))

    def _prepare_done(self, attempt_id: int, task: asyncio.Task[None]) -> None:
        self._preparing.pop(attempt_id, None)
        if not task.cancelled() and task.exception() is not None:
            # The class only (a database error may quote debtor data); reserve reads it again.
            log.warning(
                "screen pop not prepared: %s",
                type(task.exception()).__name__,
                extra={"attempt_id": attempt_id},
            )

    async def _prepare(self, attempt_id: int) -> None:
        async with self.sessions() as s:
            found = await _read_offer(s, attempt_id)
        if found is None:
            return
        now = time.monotonic()
        self._prepared[attempt_id] = (now, *found)
        while self._prepared:  # oldest first: drop the calls that are surely over
            oldest, (at, _offer, _facts) = next(iter(self._prepared.items()))
            if now - at < PREPARED_TTL_S:
                break
            del self._prepared[oldest]

    async def _reserve(self, agent_id: int, attempt_id: int) -> bool:
        prepared = self._prepared.get(attempt_id)
        if prepared is None and attempt_id in self._preparing:
            # Answered while its pop was being read: wait for that read rather than repeat it.
            reading = self._preparing[attempt_id]
            await asyncio.gather(asyncio.shield(reading), return_exceptions=True)
            prepared = self._prepared.get(attempt_id)
        if prepared is not None:
            _at, offer, facts = prepared
        else:  # not prepared (a call adopted after a restart, a failed read): read it now
            async with self.sessions() as s:
                found = await _read_offer(s, attempt_id)
            if found is None:
                return False
            offer, facts = found
        session = self.hub.sessions.get(agent_id)
        pop = render_pop(facts, session.identity.language if session else "es")
        if self.hub.reserve(offer, agent_id) is None:
            return False
        self._pops[agent_id] = (offer.call_id, pop)
        return True

    async def connected(self, agent_id: int, attempt_id: int) -> None:
        call_id, pop = self._pops.pop(agent_id, (str(attempt_id), {}))
        self.hub.call_bridged(call_id, pop)

    async def unreserve(self, agent_id: int, reason: str = "not_connected") -> None:
        call_id, _ = self._pops.pop(agent_id, ("", {}))
        session = self.hub.sessions.get(agent_id)
        if session is not None and session.call is not None:
            call_id = session.call.call_id
        self.hub.release(call_id, reason)

    async def call_ended(self, agent_id: int, attempt_id: int) -> None:
        self._prepared.pop(attempt_id, None)
        self.hub.call_ended(str(attempt_id))


async def _read_offer(s: AsyncSession, attempt_id: int) -> tuple[CallOffer, PopFacts] | None:
    """The call's offer to an agent and its screen pop's facts, or None for no such attempt."""
    row = (
        await s.execute(
            select(CallAttempt, Campaign, Account.time_zone, Phone.time_zone)
            .join(Campaign, Campaign.id == CallAttempt.campaign_id)
            .join(Account, Account.id == CallAttempt.account_id)
            .join(Phone, Phone.id == CallAttempt.phone_id)
            .where(CallAttempt.id == attempt_id)
        )
    ).one_or_none()
    if row is None:
        return None
    attempt, campaign, account_zone, phone_zone = row[0], row[1], row[2], row[3]
    facts = await read_pop_facts(
        s,
        campaign.id,
        attempt.account_id,
        dt.datetime.now(dt.UTC),
        attempt_id=attempt_id,
        phone_id=attempt.phone_id,
    )
    offer = CallOffer(
        call_id=str(attempt_id),
        campaign_id=campaign.id,
        account_id=attempt.account_id,
        attempt_id=attempt_id,
        phone_id=attempt.phone_id,
        time_zone=phone_zone or account_zone,
        wrap_up_limit_s=float(campaign.wrap_up_limit_s),
        wrap_up_expiry=campaign.wrap_up_expiry,
    )
    return offer, facts


_PACING_STATE = {
    AgentState.OFFLINE: PacingAgentState.OFFLINE,
    AgentState.LOGGED_IN: PacingAgentState.PAUSED,  # connected, not yet taking calls
    AgentState.READY: PacingAgentState.READY,
    AgentState.PAUSED: PacingAgentState.PAUSED,
    AgentState.RESERVED: PacingAgentState.RESERVED,
    AgentState.TALKING: PacingAgentState.TALKING,
    AgentState.WRAP_UP: PacingAgentState.WRAP_UP,
}


def _pacing_state(state: AgentState, phone_up: bool) -> PacingAgentState:
    """A ready agent whose phone session is down takes no call: not available for pacing."""
    if state == AgentState.READY and not phone_up:
        return PacingAgentState.PAUSED
    return _PACING_STATE[state]


def add_agent_routes(app: web.Application, settings: Settings) -> AgentHub:
    """Mount the agents' websocket, desktop and supervisor pages on the database-backed port.

    The engine reaches the hub (its `AgentHubApi`) as `app[agents_ws.server.HUB]`."""
    port = DbAgentPort(app[auth.SESSIONS_KEY], promise_horizon_days=settings.promise_horizon_days)
    hub = add_agents_ws_routes(
        app, port, settings.agent_grace_seconds, token_check=port.still_valid
    )
    hub.on_sockets = metrics.set_ws_connections
    hub.on_softphone = lambda agent_id, previous, current: metrics.softphone_report(
        agent_id, previous, current, hub.softphones()
    )
    hub.on_refused_audio_down = metrics.count_refused_audio_down
    return hub
