"""Collections reports for one seeded day match the figures worked out by hand from the seed.

The seed is written straight into the tables, so the test runs on SQLite and on Postgres alike.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.errors import UserError
from dialer.reports import GroupBy, ReportQuery, build_report, render_csv, render_json
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    AgentStateLog,
    CallAttempt,
    Campaign,
    CampaignAccount,
    Disposition,
    Phone,
    PromiseToPay,
)

pytestmark = pytest.mark.postgres

DAY = dt.date(2026, 11, 23)
NOW = dt.datetime(2026, 11, 24, 6, 0, tzinfo=dt.UTC)  # the morning after: the day is complete


def at(hhmm: str, day: dt.date = DAY) -> dt.datetime:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


@dataclass(frozen=True)
class Seed:
    early: int  # campaign "early" (buckets 1-30 and 31-60), 4 member accounts
    late: int  # campaign "late" (bucket 120+), 2 member accounts
    ana: int
    ben: int


async def seed_day(engine: AsyncEngine) -> Seed:
    """The day, in words:

    campaign early, accounts acc1 acc2 (1-30) acc3 acc4 (31-60); campaign late, acc5 acc6 (120+).
    Dials on DAY:
      1 acc1 human, bridged to ana       4 acc3 answered, AMD machine
      2 acc1 no answer                   5 acc3 human, abandoned
      3 acc2 human, bridged to ben       7 acc5 (late) human, bridged to ana
      6 acc4 human, bridged to ana, but the day BEFORE (outside the range)
      8 acc6 (late) busy                 9 acc6 (late) answered, hung up before AMD decided
    Dispositions on DAY: 1 PTP (right party), 3 wrong party (contact, not right party),
      7 PTP (right party); one more right-party disposition the day before (outside).
    Promises made on DAY: acc1 150.00 USD by ana (early), acc5 1000.50 MXN by ana (late).
    Promises due on DAY (made ten days before): acc2 kept (ben), acc3 broken (ben), acc4 kept
      (ana), acc4 pending (ana: not checked yet, left out), acc6 cancelled (ben, late: left out).
    Agent state log: see the rows below; each figure is derived in the test that reads it.
    """
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        early = Campaign(name="early")
        late = Campaign(name="late")
        ana = Agent(login="ana", name="Ana Agent", password_hash="x")
        ben = Agent(login="ben", name="Ben Agent", password_hash="x")
        s.add_all([early, late, ana, ben])
        await s.flush()
        accounts: list[Account] = []
        for i, bucket in enumerate(("1-30", "1-30", "31-60", "31-60", "120+", "120+"), start=1):
            acc = Account(
                external_ref=f"ACC{i}",
                name=f"Debtor {i}",
                balance=Decimal("500.00"),
                aging_bucket=bucket,
                phones=[Phone(number=f"+1202555000{i}")],
            )
            s.add(acc)
            accounts.append(acc)
        await s.flush()
        for acc in accounts:
            s.add(
                CampaignAccount(
                    campaign_id=(early.id if acc.aging_bucket != "120+" else late.id),
                    account_id=acc.id,
                )
            )

        def dial(
            n: int,
            acc_no: int,
            when: dt.datetime,
            *,
            campaign: Campaign = early,
            answered: bool = False,
            amd: str | None = None,
            agent: Agent | None = None,
            abandoned: bool = False,
            outcome: str | None = None,
        ) -> CallAttempt:
            acc = accounts[acc_no - 1]
            attempt = CallAttempt(
                id=n,
                campaign_id=campaign.id,
                account_id=acc.id,
                phone_id=acc.phones[0].id,
                number=acc.phones[0].number,
                created_at=when,
                originated_at=when,
                answered_at=when + dt.timedelta(seconds=10) if answered else None,
                bridged_at=when + dt.timedelta(seconds=11) if agent else None,
                ended_at=when + dt.timedelta(minutes=5),
                amd_result=amd,
                agent_id=agent.id if agent else None,
                abandoned=abandoned,
                outcome=outcome,
            )
            s.add(attempt)
            return attempt

        dial(1, 1, at("09:00"), answered=True, amd="HUMAN", agent=ana)
        dial(2, 1, at("08:00"))
        dial(3, 2, at("08:05"), answered=True, agent=ben)
        dial(4, 3, at("10:00"), answered=True, amd="MACHINE")
        dial(5, 3, at("10:30"), answered=True, amd="HUMAN", abandoned=True)
        dial(6, 4, at("23:50", DAY - dt.timedelta(days=1)), answered=True, agent=ana)
        dial(7, 5, at("10:05"), campaign=late, answered=True, agent=ana)
        dial(8, 6, at("23:59"), campaign=late)
        dial(9, 6, at("11:00"), campaign=late, answered=True, outcome="hung_up_early")
        await s.flush()

        def disposition(attempt: int, acc_no: int, campaign: Campaign, agent: Agent, code: str,
                        right_party: bool, when: dt.datetime) -> None:  # fmt: skip
            s.add(
                Disposition(
                    attempt_id=attempt,
                    account_id=accounts[acc_no - 1].id,
                    campaign_id=campaign.id,
                    agent_id=agent.id,
                    code=code,
                    contact=True,
                    right_party=right_party,
                    created_at=when,
                )
            )

        disposition(1, 1, early, ana, "PTP", True, at("09:06"))
        disposition(3, 2, early, ben, "WRONG_PARTY", False, at("08:11"))
        disposition(7, 5, late, ana, "PTP", True, at("10:11"))
        disposition(6, 4, early, ana, "RPC", True, at("23:58", DAY - dt.timedelta(days=1)))

        def promise(acc_no: int, campaign: Campaign, agent: Agent, amount: str, currency: str,
                    due: dt.date, status: str, made: dt.datetime) -> None:  # fmt: skip
            s.add(
                PromiseToPay(
                    account_id=accounts[acc_no - 1].id,
                    campaign_id=campaign.id,
                    agent_id=agent.id,
                    amount=Decimal(amount),
                    currency=currency,
                    due_date=due,
                    status=status,
                    created_at=made,
                )
            )

        earlier = at("12:00", DAY - dt.timedelta(days=10))
        promise(1, early, ana, "150.00", "USD", DAY + dt.timedelta(days=7), "pending", at("09:07"))
        promise(5, late, ana, "1000.50", "MXN", DAY + dt.timedelta(days=3), "pending", at("10:12"))
        promise(2, early, ben, "80.00", "USD", DAY, "kept", earlier)
        promise(3, early, ben, "60.00", "USD", DAY, "broken", earlier)
        promise(4, early, ana, "70.00", "USD", DAY, "kept", earlier)
        promise(4, early, ana, "75.00", "USD", DAY, "pending", earlier)
        promise(6, late, ben, "90.00", "USD", DAY, "cancelled", earlier)

        def state(agent: Agent, name: str, start: dt.datetime, end: dt.datetime | None,
                  campaign: Campaign | None) -> None:  # fmt: skip
            s.add(
                AgentStateLog(
                    agent_id=agent.id,
                    state=name,
                    campaign_id=campaign.id if campaign else None,
                    started_at=start,
                    ended_at=end,
                )
            )

        # ana, early: ready 08:00-09:00, talking 09:00-09:30, wrap-up 09:30-09:40,
        # paused 09:40-10:00, plus a ready row from 23:30 the day before to 00:30 (half inside).
        state(ana, "ready", at("23:30", DAY - dt.timedelta(days=1)), at("00:30"), early)
        state(ana, "ready", at("08:00"), at("09:00"), early)
        state(ana, "talking", at("09:00"), at("09:30"), early)
        state(ana, "wrap_up", at("09:30"), at("09:40"), early)
        state(ana, "paused", at("09:40"), at("10:00"), early)
        # ana, late: talking 10:00-10:20, "wrap-up" (dash spelling) 10:20-10:30, offline after.
        state(ana, "talking", at("10:00"), at("10:20"), late)
        state(ana, "wrap-up", at("10:20"), at("10:30"), late)
        state(ana, "offline", at("10:30"), at("11:00"), late)
        # ben: logged in outside any campaign 07:00-08:00; early: reserved 08:00-08:30,
        # wrap_up 08:30-09:00, ready 09:00-10:00, and paused from 23:00, still open now.
        state(ben, "logged_in", at("07:00"), at("08:00"), None)
        state(ben, "reserved", at("08:00"), at("08:30"), early)
        state(ben, "wrap_up", at("08:30"), at("09:00"), early)
        state(ben, "ready", at("09:00"), at("10:00"), early)
        state(ben, "paused", at("23:00"), None, early)
        return Seed(early.id, late.id, ana.id, ben.id)


async def _rows(
    engine: AsyncEngine, by: GroupBy, campaign: int | None = None
) -> dict[str, dict[str, object]]:
    seed_report = await build_report(engine, ReportQuery(DAY, DAY, by, campaign), NOW)
    body = json.loads(render_json(seed_report))
    label = {"campaign": "campaign", "agent": "agent", "bucket": "bucket"}[by.value]
    return {row[label]: row for row in body["rows"]}


async def test_campaign_report_matches_the_seeded_day(engine: AsyncEngine) -> None:
    seed = await seed_day(engine)
    rows = await _rows(engine, GroupBy.CAMPAIGN)
    assert list(rows) == ["early", "late"]
    early = rows["early"]
    assert early["campaign_id"] == seed.early
    # Dials 1-5 on DAY (6 was the day before); live: 1, 3, 5 (4 was a machine, 2 no answer).
    assert (early["dials"], early["live_contacts"]) == (5, 3)
    assert early["contact_rate"] == 0.6  # 3 / 5 dials
    # Right party: disposition of dial 1 only (3 was a wrong party; the RPC of dial 6 is outside).
    assert (early["right_party_contacts"], early["rpc_rate"]) == (1, 0.3333)  # 1 / 3 live
    # One promise made on DAY (acc1 150.00 USD): PTP rate 1 / 1 RPC.
    assert (early["ptp_count"], early["ptp_rate"]) == (1, 1.0)
    assert early["ptp_amount"] == {"USD": "150.00"}
    # Due on DAY and checked: acc2 kept, acc3 broken, acc4 kept (pending one left out) -> 2 / 3.
    assert (early["ptps_due"], early["ptps_kept"], early["kept_rate"]) == (3, 2, 0.6667)
    # Abandoned: dial 5; connected: 1 and 3 -> 1 / (1 + 2).
    assert early["abandoned"] == 1
    assert early["connected_to_agent"] == 2
    assert early["abandon_rate"] == 0.3333
    # Agent time on early: ana idle 1800 (00:00-00:30) + 3600, talk 1800, wrap 600, paused 1200
    # (= 9000 logged in); ben talk 1800 (reserved), wrap 1800, idle 3600, paused 3600 (23:00 to
    # midnight; the row is still open) (= 10800). Totals: talk 3600, wrap 2400, idle 9000,
    # paused 4800, logged in 19800.
    assert (early["talk_s"], early["wrap_up_s"], early["idle_s"], early["paused_s"]) == (
        3600.0,
        2400.0,
        9000.0,
        4800.0,
    )
    assert early["logged_in_s"] == 19800.0
    assert early["occupancy"] == 0.303  # (3600 + 2400) / 19800 = 0.30303
    assert early["dials_per_agent_hour"] == 0.9091  # 5 dials / 5.5 hours
    # Accounts attempted on DAY: acc1, acc2, acc3 of 4 members; 5 dials over 4 accounts.
    assert (early["accounts"], early["accounts_attempted"]) == (4, 3)
    assert (early["list_penetration"], early["saturation"]) == (0.75, 1.25)


async def test_second_campaign_has_its_own_figures(engine: AsyncEngine) -> None:
    await seed_day(engine)
    late = (await _rows(engine, GroupBy.CAMPAIGN))["late"]
    # Dials 7 (human, bridged), 8 (busy), 9 (hung up early: not a live contact): 1 live of 3;
    # RPC 1 of 1 live; 1 PTP of 1 RPC.
    assert (late["dials"], late["live_contacts"], late["contact_rate"]) == (3, 1, 0.3333)
    assert (late["right_party_contacts"], late["rpc_rate"], late["ptp_rate"]) == (1, 1.0, 1.0)
    assert late["ptp_amount"] == {"MXN": "1000.50"}
    # The only promise due on DAY was cancelled: nothing checked, no kept rate.
    assert (late["ptps_due"], late["kept_rate"]) == (0, None)
    assert (late["abandoned"], late["connected_to_agent"], late["abandon_rate"]) == (0, 1, 0.0)
    # ana: talking 1200 + wrap-up 600 (dash spelling); offline 10:30-11:00 is not logged in.
    assert (late["talk_s"], late["wrap_up_s"], late["logged_in_s"]) == (1200.0, 600.0, 1800.0)
    assert late["occupancy"] == 1.0
    assert late["dials_per_agent_hour"] == 6.0  # 3 dials / 0.5 hour
    # acc5 and acc6 attempted, of 2 members; 3 dials over 2 accounts.
    assert (late["list_penetration"], late["saturation"]) == (1.0, 1.5)


async def test_agent_report_matches_the_seeded_day(engine: AsyncEngine) -> None:
    seed = await seed_day(engine)
    rows = await _rows(engine, GroupBy.AGENT)
    assert list(rows) == ["ana", "ben", "(no agent)"]
    ana, ben, nobody = rows["ana"], rows["ben"], rows["(no agent)"]
    assert (ana["agent_id"], ben["agent_id"], nobody["agent_id"]) == (seed.ana, seed.ben, None)
    # ana took dials 1 and 7 (both right party, both promised); acc4's promise due DAY was kept.
    assert (ana["dials"], ana["right_party_contacts"], ana["ptp_count"]) == (2, 2, 2)
    assert ana["ptp_amount"] == {"MXN": "1000.50", "USD": "150.00"}
    assert (ana["ptps_due"], ana["kept_rate"]) == (1, 1.0)
    # ana's time: early 9000 + late 1800 = 10800 logged in; talk 1800 + 1200, wrap 600 + 600.
    assert (ana["logged_in_s"], ana["talk_s"], ana["wrap_up_s"]) == (10800.0, 3000.0, 1200.0)
    assert ana["occupancy"] == 0.3889  # 4200 / 10800
    assert ana["dials_per_agent_hour"] == 0.6667  # 2 dials / 3 hours
    # ben took dial 3, a wrong party: no RPC, so no PTP rate; acc2 kept and acc3 broken -> 1 / 2.
    assert (ben["dials"], ben["rpc_rate"], ben["ptp_rate"]) == (1, 0.0, None)
    assert (ben["ptps_due"], ben["ptps_kept"], ben["kept_rate"]) == (2, 1, 0.5)
    # ben: early 10800 + 3600 logged in outside any campaign = 14400; (1800 + 1800) / 14400.
    assert (ben["logged_in_s"], ben["occupancy"], ben["dials_per_agent_hour"]) == (
        14400.0,
        0.25,
        0.25,
    )
    # Abandon is a campaign figure: agents have none. Dials no agent took: 2, 4, 5, 8, 9; of
    # those only 5 (abandoned) was a person.
    assert ana["abandon_rate"] is None
    assert (nobody["dials"], nobody["live_contacts"]) == (5, 1)


async def test_bucket_report_matches_the_seeded_day(engine: AsyncEngine) -> None:
    await seed_day(engine)
    rows = await _rows(engine, GroupBy.BUCKET)
    assert list(rows) == ["1-30", "31-60", "120+"]
    young, middle, old = rows["1-30"], rows["31-60"], rows["120+"]
    # 1-30: dials 1, 2, 3; live 1 and 3, both connected; acc1 and acc2 attempted of 2.
    assert (young["dials"], young["live_contacts"], young["abandon_rate"]) == (3, 2, 0.0)
    assert (young["list_penetration"], young["ptp_amount"]) == (1.0, {"USD": "150.00"})
    assert (young["ptps_due"], young["kept_rate"]) == (1, 1.0)  # acc2 kept
    # 31-60: dials 4 (machine) and 5 (abandoned); acc3 attempted of acc3, acc4.
    assert (middle["dials"], middle["live_contacts"], middle["abandon_rate"]) == (2, 1, 1.0)
    assert (middle["list_penetration"], middle["right_party_contacts"]) == (0.5, 0)
    assert (middle["ptps_due"], middle["kept_rate"]) == (2, 0.5)  # acc3 broken, acc4 kept
    # 120+: dials 7, 8 and 9; one live; one RPC, one promise in MXN.
    assert (old["dials"], old["live_contacts"], old["right_party_contacts"]) == (3, 1, 1)
    assert (old["ptp_count"], old["ptp_amount"]) == (1, {"MXN": "1000.50"})
    # Agent time cannot be split by bucket: left empty.
    assert (old["occupancy"], old["talk_s"], old["dials_per_agent_hour"]) == (None, None, None)


async def test_campaign_filter_keeps_only_that_campaign(engine: AsyncEngine) -> None:
    seed = await seed_day(engine)
    rows = await _rows(engine, GroupBy.AGENT, campaign=seed.late)
    # Only dial 7 (ana) and dials 8, 9 (no agent) belong to late; ben has no late activity at all.
    assert list(rows) == ["ana", "(no agent)"]
    assert (rows["ana"]["dials"], rows["ana"]["logged_in_s"]) == (1, 1800.0)


async def test_unknown_campaign_is_refused_by_id(engine: AsyncEngine) -> None:
    with pytest.raises(UserError, match="campaign: no campaign with id 999"):
        await build_report(engine, ReportQuery(DAY, DAY, GroupBy.CAMPAIGN, 999), NOW)


def test_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(UserError, match="to: 2026-11-22 is before from: 2026-11-23"):
        ReportQuery(DAY, DAY - dt.timedelta(days=1))


async def test_csv_has_one_amount_column_per_currency(engine: AsyncEngine) -> None:
    await seed_day(engine)
    report = await build_report(engine, ReportQuery(DAY, DAY, GroupBy.CAMPAIGN), NOW)
    table = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["campaign"] for r in table] == ["early", "late"]
    assert (table[0]["ptp_amount_USD"], table[0]["ptp_amount_MXN"]) == ("150.00", "0.00")
    assert (table[1]["ptp_amount_USD"], table[1]["ptp_amount_MXN"]) == ("0.00", "1000.50")
    # Empty cells where a rate has no denominator (late had no promise due).
    assert (table[0]["dials"], table[0]["abandon_rate"], table[1]["kept_rate"]) == (
        "5",
        "0.3333",
        "",
    )


async def _dialer(engine: AsyncEngine, *args: str) -> tuple[int, str, str]:
    """Run the `dialer` command on the test's database; (exit status, stdout, stderr)."""
    url = engine.url.render_as_string(hide_password=False)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dialer.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "DIALER_DATABASE_URL": url},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_prints_the_report_as_csv(engine: AsyncEngine) -> None:
    await seed_day(engine)
    status, out, err = await _dialer(
        engine, "report", "--from", str(DAY), "--by", "bucket", "--campaign", "early"
    )
    assert status == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    # Campaign early only: the 120+ bucket belongs to late and does not appear.
    assert [(r["bucket"], r["dials"], r["live_contacts"]) for r in table] == [
        ("1-30", "3", "2"),
        ("31-60", "2", "1"),
    ]


async def test_cli_writes_json_to_a_file(engine: AsyncEngine, tmp_path: Path) -> None:
    seed = await seed_day(engine)
    target = tmp_path / "report.json"
    status, _, err = await _dialer(
        engine, "report", "--from", str(DAY), "--to", str(DAY), "--campaign", str(seed.late),
        "--format", "json", "-o", str(target),
    )  # fmt: skip
    assert status == 0, err
    body = json.loads(target.read_text())
    assert [(r["campaign"], r["dials"]) for r in body["rows"]] == [("late", 3)]
    assert (
        "/ (abandoned + estimated_amd_false_positives + connected_to_agent)"
        in body["report"]["definitions"]["abandon_rate"]
    )


async def test_cli_names_an_unknown_campaign(engine: AsyncEngine) -> None:
    status, _, err = await _dialer(engine, "report", "--from", str(DAY), "--campaign", "nope")
    assert status == 2
    assert "campaign: no campaign with id or name 'nope'" in err
