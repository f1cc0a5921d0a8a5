"""Answer -> first audio of the debtor in the agent's browser, with real softphones in headless
Chromium on the real Asterisk sandbox, the whole service in the path (engine, pool, hub).

`--agents` browsers log in (softphones join their sessions), a progressive campaign dials
testbed debtors `5559NN` (answer after 1 s, then a 1 kHz tone; AMD off), each agent hangs up and
records a disposition after hearing the debtor. Measured per bridged call: attempts.answered_at
(the dialer's clock when Asterisk's answer reached it) -> the first getStats sample (every 20 ms)
in that agent's browser whose inbound audio level rose from silence (< 0.01) above 0.05, on the
same machine's wall clock. The getStats sampling adds up to 20 ms; the level is Chromium's own
smoothing of decoded audio, so this is a little later than the first RTP packet itself.

Needs root for the sandbox and Postgres binaries (or DIALER_TEST_DATABASE_URL). Goal: p99 <= 300 ms.

Run: python -m benchmarks.softphone_latency [--agents 3] [--calls-per-agent 3]
         [--json benchmarks/results/softphone_latency.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from benchmarks.bridge_latency import postgres, summary
from dialer.auth import hash_password
from dialer.store.models import Account, Agent, CallAttempt, Campaign, CampaignAccount, Phone
from dialer.telephony.softphones import SOFTPHONE
from tests.browser.chromium import headless_chrome
from tests.browser.test_softphone import PASSWORD, LiveServer, tone_wav
from tests.e2e.campaign_harness import midday_zone
from tests.fixtures.asterisk import SANDBOX, AsteriskAmi
from tests.fixtures.postgres import _migrated

GOAL_P99_MS = 300.0
BENCH_AMI_PORT = 15290

# Runs in each browser: the epoch ms of every rise of the inbound audio level from silence.
ONSET_PROBE = """
window.bench = {onsets: []};
let quiet = true;
setInterval(async () => {
  const s = window.softphone && window.softphone.session;
  const pc = s && s.sessionDescriptionHandler && s.sessionDescriptionHandler.peerConnection;
  if (!pc) return;
  (await pc.getStats()).forEach((st) => {
    if (st.type !== "inbound-rtp" || st.kind !== "audio") return;
    const level = st.audioLevel || 0;
    if (quiet && level > 0.05) {
      window.bench.onsets.push(performance.timeOrigin + performance.now());
      quiet = false;
    } else if (level < 0.01) quiet = true;
  });
}, 20);
"""


@contextlib.contextmanager
def asterisk() -> Iterator[AsteriskAmi]:
    where = ["--port", str(BENCH_AMI_PORT), "--instance", f"bench-sp-{os.getpid()}"]
    started = subprocess.run(
        [str(SANDBOX), "start", *where], capture_output=True, text=True, timeout=900, check=False
    )
    if started.returncode != 0:
        sys.exit(f"asterisk-sandbox start failed (root needed):\n{started.stderr[-2000:]}")
    env = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    try:
        yield AsteriskAmi(
            env["ASTERISK_AMI_HOST"],
            int(env["ASTERISK_AMI_PORT"]),
            env["ASTERISK_AMI_USERNAME"],
            env["ASTERISK_AMI_SECRET"],
            "sandbox",
            ws_url=env["ASTERISK_SANDBOX_WS_URL"],
        )
    finally:
        subprocess.run(
            [str(SANDBOX), "stop", *where, "--purge"], capture_output=True, timeout=120, check=False
        )


async def seed(server: LiveServer, agents: int, calls: int) -> list[str]:
    logins = [f"sp{i}" for i in range(agents)]
    async with server.sessions.begin() as s:
        s.add_all(
            Agent(
                login=login,
                name=login,
                password_hash=hash_password(PASSWORD),
                endpoint=SOFTPHONE,
                language="en",
            )
            for login in logins
        )
        campaign = Campaign(
            name="bench",
            state="running",
            dial_mode="progressive",
            amd_enabled=False,
            abandon_limit_s=2.0,
            compliance_profile="MX",
            dispositions=[{"code": "RPC", "label": "Right party", "contact": True, "rpc": True}],
        )
        s.add(campaign)
        zone = midday_zone(dt.datetime.now(dt.UTC))
        accounts = []
        for i in range(calls):
            a = Account(
                external_ref=f"B{i}",
                name="Debtor",
                balance=Decimal("1.00"),
                currency="MXN",
                days_past_due=40,
                aging_bucket="31-60",
                time_zone=zone,
            )
            a.phones = [Phone(number=f"555901{i:04d}")]
            accounts.append(a)
        s.add_all(accounts)
        await s.flush()
        s.add_all(CampaignAccount(campaign_id=campaign.id, account_id=a.id) for a in accounts)
    return logins


async def answered(server: LiveServer) -> list[tuple[int, int | None, float, float | None]]:
    """(attempt, agent, answered_at, bridged_at) of every answered attempt, epoch seconds."""
    async with server.sessions() as s:
        rows = (await s.execute(select(CallAttempt))).scalars()
        return [
            (
                a.id,
                a.agent_id,
                a.answered_at.replace(tzinfo=dt.UTC).timestamp(),
                a.bridged_at.replace(tzinfo=dt.UTC).timestamp() if a.bridged_at else None,
            )
            for a in rows
            if a.answered_at is not None
        ]


def attr(b: webdriver.Chrome, element: str, name: str) -> str:
    return str(b.find_element(By.ID, element).get_attribute(name))


def run(agents: int, per_agent: int) -> dict[str, object]:
    calls = agents * per_agent
    with asterisk() as ami, postgres() as pg, contextlib.ExitStack() as stack:
        url = asyncio.run(_migrated(asyncio.run(pg.create_database())))
        server = LiveServer(url, ami)
        stack.callback(server.stop)
        logins = server.call(seed(server, agents, calls))
        tone = tone_wav(Path(tempfile.mkdtemp()) / "tone.wav", 600.0)
        flags = (
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={tone}",
            "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
        )
        browsers: dict[int, webdriver.Chrome] = {}
        for login in logins:
            b = stack.enter_context(headless_chrome("en", flags))
            b.get(server.url + "/agent/")
            b.find_element(By.ID, "login-user").send_keys(login)
            b.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
            WebDriverWait(b, 60).until(lambda d: attr(d, "softphone", "data-state") == "ready")
            b.execute_script(ONSET_PROBE)
            agent_id = int(b.execute_script("return desk.agent.id;"))
            browsers[agent_id] = b
        started = time.monotonic()
        for b in browsers.values():
            b.find_element(By.TAG_NAME, "body").send_keys(Keys.ALT, "r")
        handled = 0
        taken = dict.fromkeys(browsers, 0)  # calls each agent finished
        deadline = time.monotonic() + 60 + calls * 20
        while handled < calls and time.monotonic() < deadline:
            for agent_id, b in browsers.items():
                if attr(b, "state-badge", "data-state") != "talking":
                    continue
                want = taken[agent_id] + 1
                with contextlib.suppress(TimeoutException):  # none heard: counted as missing
                    WebDriverWait(b, 10, poll_frequency=0.1).until(
                        lambda d, n=want: len(d.execute_script("return window.bench.onsets;")) >= n
                    )
                b.find_element(By.ID, "btn-hangup").click()
                WebDriverWait(b, 20).until(
                    lambda d: attr(d, "state-badge", "data-state") == "wrap_up"
                )
                Select(b.find_element(By.ID, "disp-code")).select_by_value("RPC")
                b.find_element(By.ID, "disp-submit").click()
                WebDriverWait(b, 20).until(
                    lambda d: attr(d, "state-badge", "data-state") != "wrap_up"
                )
                taken[agent_id] += 1
                handled += 1
            time.sleep(0.2)
        seconds = time.monotonic() - started
        onsets = {
            a: list(b.execute_script("return window.bench.onsets;")) for a, b in browsers.items()
        }
        rows = server.call(answered(server))
    latencies, to_bridge, after_bridge, missing = [], [], [], 0
    for _attempt, agent_id, answered_s, bridged_s in rows:
        later = [o / 1000 for o in onsets.get(agent_id or -1, []) if o / 1000 >= answered_s - 0.05]
        if not later:
            missing += 1
            continue
        latencies.append((min(later) - answered_s) * 1000)
        if bridged_s is not None:  # the dialer's part, and the media path's (Asterisk, browser)
            to_bridge.append((bridged_s - answered_s) * 1000)
            after_bridge.append((min(later) - bridged_s) * 1000)
    result: dict[str, object] = {
        "benchmark": "softphone answer -> first debtor audio in the agent's browser",
        "agents": agents,
        "calls_planned": calls,
        "calls_answered": len(rows),
        "calls_without_audio_onset": missing,
        "seconds": round(seconds, 1),
        "goal_p99_ms": GOAL_P99_MS,
        "latency": summary(latencies) if latencies else None,
        # The same calls split at the dialer's bridged_at: answer -> bridged is what
        # benchmarks/bridge_latency.py measures without browsers (the baseline in this run);
        # bridged -> audio is Asterisk's and the browser's media path.
        "answer_to_bridged": summary(to_bridge) if to_bridge else None,
        "bridged_to_browser_audio": summary(after_bridge) if after_bridge else None,
        "machine": {
            "cpus": os.cpu_count(),
            "load_1m": round(os.getloadavg()[0], 1),
            "python": platform.python_version(),
        },
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--calls-per-agent", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.agents, args.calls_per_agent)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
