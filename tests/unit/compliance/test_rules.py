"""The compliance rule as a specification: windows in the debtor's zone, frequency limits, flags."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from dialer.compliance.profiles import ProfileError, load_profile
from dialer.compliance.rules import CampaignRules, Caps, ComplianceRule
from dialer.compliance.windows import parse_narrowing
from dialer.domain.settings import SettingsError
from dialer.store.claim import Candidate, PastAttempt
from dialer.store.models import Account, Phone

UTC = dt.UTC


def local(zone: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)  # type: ignore[misc]


def account(
    zone: str | None = None,
    *,
    jurisdiction: str | None = None,
    cease: bool = False,
    attorney: bool = False,
) -> Account:
    return Account(
        id=1,
        external_ref="A1",
        name="x",
        balance=Decimal("1.00"),
        time_zone=zone,
        jurisdiction=jurisdiction,
        cease_communication=cease,
        attorney_represented=attorney,
    )


# A number with no geography (UIFN +800): the account's zone (evidence from the file) decides.
NO_GEOGRAPHY = "+80012345678"


def phone(
    pid: int = 10, number: str = NO_GEOGRAPHY, zone: str | None = None, *, dnc: bool = False
) -> Phone:
    return Phone(
        id=pid, account_id=1, number=number, valid=True, dnc=dnc, time_zone=zone, priority=pid
    )


def candidate(
    acc: Account,
    phones: Sequence[Phone],
    attempts: Sequence[PastAttempt] = (),
    **extra: object,
) -> Candidate:
    return Candidate(
        account=acc,
        phones=list(phones),
        attempts=list(attempts),
        dnc_numbers=frozenset(extra.pop("dnc", ())),  # type: ignore[arg-type]
        campaign_id=1,
        **extra,  # type: ignore[arg-type]
    )


def rule(profile: str = "US", caps: Caps | None = None, **kw: object) -> ComplianceRule:
    return ComplianceRule(
        CampaignRules(load_profile(profile), caps=caps or Caps(), **kw)  # type: ignore[arg-type]
    )


def attempt(
    at: dt.datetime, *, pid: int = 10, conversation: bool = False, abandoned: bool = False
) -> PastAttempt:
    return PastAttempt(pid, at, "answered", abandoned, conversation, at if conversation else None)


# Days just before and just after each zone's DST change in 2026 (Mexico dropped DST in 2022,
# Colombia has none: their dates check the window does not move with other zones' changes).
DST_DAYS = {
    "America/Los_Angeles": [(2026, 3, 7), (2026, 3, 9), (2026, 10, 31), (2026, 11, 2)],
    "Europe/Madrid": [(2026, 3, 28), (2026, 3, 30), (2026, 10, 24), (2026, 10, 26)],
    "America/Mexico_City": [(2026, 4, 4), (2026, 4, 6), (2026, 10, 24), (2026, 10, 26)],
    "America/Bogota": [(2026, 3, 7), (2026, 3, 9), (2026, 10, 31), (2026, 11, 2)],
}
ZONE_DAYS = [(z, d) for z, days in DST_DAYS.items() for d in days]


@pytest.mark.parametrize(("zone", "day"), ZONE_DAYS)
def test_us_debtor_may_be_called_at_2059_local(zone: str, day: tuple[int, int, int]) -> None:
    choice = rule("US")(candidate(account(zone), [phone()]), local(zone, *day, 20, 59))
    assert choice.phone is not None


@pytest.mark.parametrize(("zone", "day"), ZONE_DAYS)
def test_us_debtor_is_refused_at_2100_local_until_0800_next_day(
    zone: str, day: tuple[int, int, int]
) -> None:
    choice = rule("US")(candidate(account(zone), [phone()]), local(zone, *day, 21, 0))
    assert choice.phone is None and not choice.done
    assert choice.reason == "US: outside calling window"
    next_day = dt.date(*day) + dt.timedelta(days=1)
    assert choice.retry_at == local(zone, next_day.year, next_day.month, next_day.day, 8, 0)


@pytest.mark.parametrize(("zone", "day"), ZONE_DAYS)
def test_us_debtor_is_refused_at_0759_local(zone: str, day: tuple[int, int, int]) -> None:
    choice = rule("US")(candidate(account(zone), [phone()]), local(zone, *day, 7, 59))
    assert choice.phone is None and choice.retry_at == local(zone, *day, 8, 0)


def test_a_file_zone_contradicting_the_number_keeps_both() -> None:
    # A 310 (Los Angeles) number, the file says New York: the debtor may be in either place, so
    # 21:30 in New York (18:30 in Los Angeles) is refused, and 20:30 in New York is allowed.
    c = candidate(account("America/New_York"), [phone(number="+13105550100")])
    assert rule("US")(c, local("America/New_York", 2026, 7, 1, 21, 30)).phone is None
    assert rule("US")(c, local("America/New_York", 2026, 7, 1, 20, 30)).phone is not None


def test_the_stored_phone_zone_is_not_evidence() -> None:
    # What import stored for a phone came from the same function: it never narrows the number.
    now = local("America/Los_Angeles", 2026, 7, 1, 7, 30)  # 07:30 in Boise's north, 08:30 south
    c = candidate(account(None), [phone(number="+12085550100", zone="America/Boise")])
    assert rule("US")(c, now).phone is None


@pytest.mark.parametrize("day", DST_DAYS["America/Mexico_City"])
def test_mexico_window_is_0700_to_2200(day: tuple[int, int, int]) -> None:
    z = "America/Mexico_City"
    r = rule("MX")
    assert r(candidate(account(z), [phone()]), local(z, *day, 21, 59)).phone is not None
    assert r(candidate(account(z), [phone()]), local(z, *day, 7, 0)).phone is not None
    assert r(candidate(account(z), [phone()]), local(z, *day, 22, 0)).phone is None
    assert r(candidate(account(z), [phone()]), local(z, *day, 6, 59)).phone is None


@pytest.mark.parametrize("day", [(2026, 3, 27), (2026, 3, 30), (2026, 10, 23), (2026, 10, 26)])
def test_spain_weekday_window_is_0900_to_2100(day: tuple[int, int, int]) -> None:
    z = "Europe/Madrid"
    r = rule("ES")
    assert r(candidate(account(z), [phone()]), local(z, *day, 20, 59)).phone is not None
    assert r(candidate(account(z), [phone()]), local(z, *day, 21, 0)).phone is None
    assert r(candidate(account(z), [phone()]), local(z, *day, 8, 59)).phone is None


def test_spain_saturday_is_refused_until_monday_0900() -> None:
    z = "Europe/Madrid"
    choice = rule("ES")(candidate(account(z), [phone()]), local(z, 2026, 3, 28, 11, 0))
    assert choice.phone is None and choice.retry_at == local(z, 2026, 3, 30, 9, 0)


@pytest.mark.parametrize(
    ("when", "allowed"),
    [
        ((2026, 3, 6, 7, 0), True),  # Friday opening
        ((2026, 3, 6, 18, 59), True),
        ((2026, 3, 6, 19, 0), False),
        ((2026, 3, 7, 7, 30), False),  # Saturday opens at 08:00
        ((2026, 3, 7, 8, 0), True),
        ((2026, 3, 7, 14, 59), True),
        ((2026, 3, 7, 15, 0), False),
        ((2026, 3, 8, 12, 0), False),  # Sunday
    ],
)
def test_colombia_weekday_and_saturday_windows(
    when: tuple[int, int, int, int, int], allowed: bool
) -> None:
    z = "America/Bogota"
    assert (rule("CO")(candidate(account(z), [phone()]), local(z, *when)).phone is not None) is (
        allowed
    )


def test_colombian_holiday_is_refused_until_next_working_day() -> None:
    z = "America/Bogota"
    # Tuesday 8 December 2026, Immaculate Conception: a public holiday in Colombia.
    choice = rule("CO")(candidate(account(z), [phone()]), local(z, 2026, 12, 8, 10, 0))
    assert choice.phone is None and choice.reason == "CO: outside calling window"
    assert choice.retry_at == local(z, 2026, 12, 9, 7, 0)


def test_colombia_allows_one_contact_a_day() -> None:
    z = "America/Bogota"
    now = local(z, 2026, 12, 9, 16, 0)
    talked = attempt(local(z, 2026, 12, 9, 9, 0), conversation=True)
    choice = rule("CO")(candidate(account(z), [phone()], [talked]), now)
    assert choice.phone is None and choice.reason == "CO: 1 contact(s) a day"
    assert choice.retry_at == local(z, 2026, 12, 10, 7, 0)


def test_colombia_attempts_without_conversation_do_not_use_the_daily_contact() -> None:
    z = "America/Bogota"
    tries = [attempt(local(z, 2026, 12, 9, h, 0)) for h in (8, 9, 10)]
    assert rule("CO")(candidate(account(z), [phone()], tries), local(z, 2026, 12, 9, 16, 0)).phone


def test_regulation_f_seventh_attempt_in_seven_days_is_the_last() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    six = [attempt(now - dt.timedelta(days=6, hours=23) + dt.timedelta(hours=i)) for i in range(6)]
    assert rule("US")(candidate(account("America/New_York"), [phone()], six), now).phone


def test_regulation_f_refuses_an_eighth_attempt_inside_seven_days() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    oldest = now - dt.timedelta(days=7) + dt.timedelta(seconds=1)
    seven = [attempt(oldest + dt.timedelta(hours=i)) for i in range(7)]
    choice = rule("US")(candidate(account("America/New_York"), [phone()], seven), now)
    assert choice.phone is None and choice.reason == "US: 7 attempts in 7 days"
    assert choice.retry_at == oldest + dt.timedelta(days=7)


def test_regulation_f_allows_the_call_once_the_oldest_attempt_is_seven_days_old() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    oldest = now - dt.timedelta(days=7)
    seven = [attempt(oldest + dt.timedelta(hours=i)) for i in range(7)]
    assert rule("US")(candidate(account("America/New_York"), [phone()], seven), now).phone


def test_regulation_f_counts_attempts_on_every_phone_of_the_account() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    seven = [attempt(now - dt.timedelta(hours=i + 1), pid=10 + i % 2) for i in range(7)]
    c = candidate(account("America/New_York"), [phone(10), phone(11, "+12125550111")], seven)
    assert rule("US")(c, now).phone is None


def test_regulation_f_window_retry_lands_in_the_next_calling_window() -> None:
    z = "America/New_York"
    now = local(z, 2026, 6, 10, 12, 0)
    oldest = local(z, 2026, 6, 3, 22, 0)  # falls out of the 7 days at 22:00, after 21:00
    seven = [oldest + dt.timedelta(minutes=i) for i in range(7)]
    choice = rule("US")(candidate(account(z), [phone()], [attempt(t) for t in seven]), now)
    assert choice.retry_at == local(z, 2026, 6, 11, 8, 0)


def test_no_call_within_seven_days_after_a_conversation() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    talked = attempt(now - dt.timedelta(days=6, hours=23), conversation=True)
    choice = rule("US")(candidate(account("America/New_York"), [phone()], [talked]), now)
    assert choice.phone is None and choice.reason == "US: conversation in the last 7 days"
    assert choice.retry_at == talked.created_at + dt.timedelta(days=7)


def test_call_allowed_seven_days_after_a_conversation() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    talked = attempt(now - dt.timedelta(days=7), conversation=True)
    assert rule("US")(candidate(account("America/New_York"), [phone()], [talked]), now).phone


def test_dnc_list_entry_blocks_until_it_expires() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    expiry = now + dt.timedelta(days=3)
    p = phone()
    c = candidate(account("America/New_York"), [p], dnc={p.number}, dnc_expires={p.number: expiry})
    choice = rule("US")(c, now)
    assert choice.phone is None and choice.reason == "phone on DNC list"
    assert choice.retry_at == expiry and not choice.done


def test_expired_dnc_entry_no_longer_blocks() -> None:
    # The claim only hands the rule unexpired entries: an expired one is simply absent.
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    assert rule("US")(candidate(account("America/New_York"), [phone()]), now).phone


def test_dnc_blocks_one_phone_and_the_next_one_is_dialed() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    first, second = phone(10, "+12125550100"), phone(11, "+12125550111")
    c = candidate(account("America/New_York"), [first, second], dnc={first.number})
    assert rule("US")(c, now).phone is second


def test_phone_flagged_dnc_is_final() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    choice = rule("US")(candidate(account("America/New_York"), [phone(dnc=True)]), now)
    assert choice.phone is None and choice.done


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"cease": True}, "cease-communication requested"),
        ({"attorney": True}, "debtor represented by an attorney"),
    ],
)
def test_cease_and_attorney_flags_take_the_account_out(flags: dict[str, bool], reason: str) -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    choice = rule("US")(candidate(account("America/New_York", **flags), [phone()]), now)
    assert choice.phone is None and choice.done and choice.reason == reason


def test_uk_number_with_an_abandoned_call_rests_72_hours() -> None:
    z = "Europe/London"
    now = local(z, 2026, 6, 10, 12, 0)
    dropped = attempt(now - dt.timedelta(hours=71), abandoned=True)
    p = phone(number="+447911123456")
    choice = rule("UK")(candidate(account(z), [p], [dropped]), now)
    assert choice.phone is None and choice.retry_at == dropped.created_at + dt.timedelta(hours=72)


def test_uk_rest_does_not_apply_when_an_agent_is_guaranteed() -> None:
    z = "Europe/London"
    now = local(z, 2026, 6, 10, 12, 0)
    dropped = attempt(now - dt.timedelta(hours=1), abandoned=True)
    c = candidate(account(z), [phone(number="+447911123456")], [dropped])
    assert rule("UK", agent_guaranteed=True)(c, now).phone is not None


def test_uk_abandoned_call_on_another_number_does_not_block() -> None:
    z = "Europe/London"
    now = local(z, 2026, 6, 10, 12, 0)
    dropped = attempt(now - dt.timedelta(hours=1), pid=11, abandoned=True)
    c = candidate(account(z), [phone(10, "+447911123456"), phone(11, "+447911123457")], [dropped])
    assert rule("UK")(c, now).phone is not None and rule("UK")(c, now).phone.id == 10  # type: ignore[union-attr]


def test_account_daily_cap_blocks_until_local_midnight() -> None:
    z = "America/Los_Angeles"
    now = local(z, 2026, 6, 10, 20, 0)
    tries = [attempt(local(z, 2026, 6, 10, h, 0)) for h in (9, 12)]
    choice = rule("US", Caps(account_per_day=2))(candidate(account(z), [phone()], tries), now)
    assert choice.reason == "account daily attempt cap reached"
    assert choice.retry_at == local(z, 2026, 6, 11, 8, 0)  # midnight, then the window opens


def test_phone_daily_cap_moves_to_the_next_phone() -> None:
    z = "America/Los_Angeles"
    now = local(z, 2026, 6, 10, 20, 0)
    tries = [attempt(local(z, 2026, 6, 10, 9, 0), pid=10)]
    c = candidate(account(z), [phone(10), phone(11, "+13105550111")], tries)
    assert rule("US", Caps(phone_per_day=1))(c, now).phone.id == 11  # type: ignore[union-attr]


def test_account_total_cap_is_final() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    c = candidate(account("America/New_York"), [phone()], account_total_attempts=10)
    choice = rule("US", Caps(account_total=10))(c, now)
    assert choice.done and choice.reason == "account attempt cap reached"


def test_phone_total_cap_is_final() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    c = candidate(account("America/New_York"), [phone()], phone_total_attempts={10: 5})
    assert rule("US", Caps(phone_total=5))(c, now).done


def test_unknown_zone_uses_the_strictest_window_of_the_profile() -> None:
    # 09:00 in New York is 04:00 in Honolulu: a debtor anywhere in the US may still be asleep.
    now = local("America/New_York", 2026, 6, 10, 9, 0)
    unparseable = phone(number=NO_GEOGRAPHY)
    choice = rule("US")(candidate(account(None), [unparseable]), now)
    assert choice.phone is None and choice.retry_at == local("Pacific/Honolulu", 2026, 6, 10, 8, 0)


def test_zone_inferred_from_the_number_when_none_is_on_record() -> None:
    # A 310 number is in Los Angeles: 20:30 there is 23:30 in New York, still allowed.
    now = local("America/Los_Angeles", 2026, 6, 10, 20, 30)
    assert rule("US")(candidate(account(None), [phone(number="+13105550100")]), now).phone


def test_ambiguous_number_needs_the_window_open_in_every_candidate_zone() -> None:
    # A toll-free number may ring anywhere in the US: 20:30 in Los Angeles is too late in New York.
    now = local("America/Los_Angeles", 2026, 6, 10, 20, 30)
    choice = rule("US")(candidate(account(None), [phone(number="+18005550100")]), now)
    assert choice.phone is None


def test_campaign_narrowing_shortens_the_window() -> None:
    z = "America/New_York"
    narrowed = rule("US", narrowing=parse_narrowing({"wed": ["10:00", "18:00"]}))
    assert narrowed(candidate(account(z), [phone()]), local(z, 2026, 6, 10, 9, 0)).phone is None
    assert narrowed(candidate(account(z), [phone()]), local(z, 2026, 6, 10, 18, 0)).phone is None
    assert narrowed(candidate(account(z), [phone()]), local(z, 2026, 6, 10, 12, 0)).phone


def test_campaign_narrowing_cannot_widen_the_profile() -> None:
    z = "America/New_York"
    wide = rule("US", narrowing=parse_narrowing({"wed": ["06:00", "23:00"]}))
    assert wide(candidate(account(z), [phone()]), local(z, 2026, 6, 10, 21, 0)).phone is None
    assert wide(candidate(account(z), [phone()]), local(z, 2026, 6, 10, 7, 0)).phone is None


def test_account_jurisdiction_adds_its_profile_to_the_campaigns() -> None:
    # A Colombian debtor in a US-profile campaign: Sunday is closed under Colombian law.
    z = "America/Bogota"
    c = candidate(account(z, jurisdiction="CO"), [phone(number="+573001234567")])
    assert rule("US")(c, local(z, 2026, 6, 14, 12, 0)).phone is None
    assert rule("US")(c, local(z, 2026, 6, 17, 12, 0)).phone is not None


def test_chile_allows_one_contact_a_week() -> None:
    z = "America/Santiago"
    now = local(z, 2026, 6, 10, 12, 0)
    talked = attempt(now - dt.timedelta(days=6), conversation=True)
    choice = rule("CL")(candidate(account(z), [phone(number="+56912345678")], [talked]), now)
    assert choice.phone is None and choice.reason == "CL: 1 contact(s) in 7 days"


def test_peru_refuses_weekends() -> None:
    z = "America/Lima"
    c = candidate(account(z), [phone(number="+51912345678")])
    assert rule("PE")(c, local(z, 2026, 6, 13, 12, 0)).phone is None
    assert rule("PE")(c, local(z, 2026, 6, 12, 19, 59)).phone is not None


def test_every_shipped_profile_loads() -> None:
    for code in ("US", "MX", "CO", "ES", "UK", "PE", "CL"):
        assert load_profile(code).code == code


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="known: CL, CO, ES, MX, PE, UK, US"):
        load_profile("XX")


def test_narrowing_with_an_unknown_day_is_refused() -> None:
    with pytest.raises(ProfileError, match="unknown days"):
        parse_narrowing({"monday": ["09:00", "10:00"]})


def test_bad_cap_value_names_the_key() -> None:
    with pytest.raises(SettingsError, match=r"caps\.phone_per_day"):
        Caps.parse({"phone_per_day": "three"})


# Massachusetts, 940 CMR 7.04(1)(f): no more than two calls in each seven-day period.
def _ma_case(number: str, state: str | None) -> Candidate:
    acc = account(None)
    acc.custom_fields = {"State": state} if state else {}
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    tries = [attempt(now - dt.timedelta(days=d)) for d in (1, 3)]
    return candidate(acc, [phone(number=number)], tries)


def test_massachusetts_allows_two_calls_a_week_by_address() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    choice = rule("US")(_ma_case("+12125550100", "MA"), now)
    assert choice.phone is None and choice.reason == "US-MA: 2 attempts in 7 days"


def test_massachusetts_by_area_code_when_the_address_names_no_state() -> None:
    now = local("America/New_York", 2026, 6, 10, 12, 0)
    assert rule("US")(_ma_case("+16175550100", None), now).phone is None
    # The address wins over the number: a Boston number of a New York resident.
    assert rule("US")(_ma_case("+16175550100", "NY"), now).phone is not None
