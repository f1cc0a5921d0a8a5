"""The README's "Your first real call", followed literally: its shell blocks run as one script on
a fresh Postgres database and the real Asterisk sandbox, then Chromium does the agent step the
README describes, and the call must be bridged (Asterisk's BridgeEnter and the attempt row).

What the test changes, and only that: where things are. The database name and the Postgres
host/port become this session's (the README's `dialer_first_call` on 127.0.0.1:5432 would collide
with other runs); the sandbox commands reach this session's instance through the script's own
environment variables (ASTERISK_SANDBOX_AMI_PORT, ASTERISK_SANDBOX_INSTANCE); `dialer serve`
listens on a free port (DIALER_HTTP_PORT). And the clock: the README's debtors are in Mexico City,
callable 07:00-22:00 there, so the README's commands run under libfaketime at midday in Mexico
City, whatever time the suite runs (the README says what happens outside those hours).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt
from tests.browser.chromium import headless_chrome
from tests.fixtures.asterisk import AmiClient, AsteriskAmi
from tests.fixtures.postgres import PgServer, _free_port, run_sync, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.asterisk]
REPO = Path(__file__).resolve().parents[2]
HEADING = "## Your first real call"
# Debian's libfaketime, wherever the architecture puts it.
LIBFAKETIME = next(
    iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
)
ARTIFACTS = REPO / "test-artifacts"


def readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    return text[start : end if end != -1 else len(text)]


def readme_commands(section: str) -> list[str]:
    """The section's ```sh blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks, f"no ```sh blocks under {HEADING!r}"
    return blocks


def midday_in_mexico_city_offset(now: dt.datetime) -> int:
    """Seconds to add to the clock so that it is 12:00 in Mexico City."""
    local = now.astimezone(ZoneInfo("America/Mexico_City"))
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    return round((noon - local).total_seconds())


@pytest.fixture
def pg_server_for_readme(pg_server: PgServer) -> Iterator[tuple[PgServer, str]]:
    name = f"dialer_readme_{uuid.uuid4().hex[:10]}"
    yield pg_server, name
    run_sync(pg_server.drop_database(pg_server.url(name)))


async def test_a_newcomer_follows_the_readme_to_a_bridged_call(
    pg_server_for_readme: tuple[PgServer, str],
    asterisk_ami: AsteriskAmi,
    ami: AmiClient,
    tmp_path: Path,
) -> None:
    if not LIBFAKETIME.exists():
        unavailable("libfaketime missing: apt-get install faketime (scripts/install-test-deps)")
    if asterisk_ami.origin != "sandbox":
        unavailable("the README's commands drive the sandbox itself (scripts/asterisk-sandbox)")
    server, db_name = pg_server_for_readme
    section = readme_section()
    script = "\n".join(readme_commands(section))
    # Where things are (see the module docstring); nothing else in the commands changes.
    readme_url = "postgresql+asyncpg://postgres@127.0.0.1:5432/dialer_first_call"
    assert readme_url in script, "the README's database URL changed: update this test's mapping"
    script = script.replace(readme_url, server.url(db_name))
    script = script.replace("dialer_first_call", db_name)
    script = script.replace(
        "-h 127.0.0.1 -U postgres", f"-h {server.host} -p {server.port} -U {server.user}"
    )
    # The agent's step, from the README's own words.
    step = re.search(
        r"log in as `(?P<login>[^`]+)` with `(?P<password>[^`]+)`, pick `(?P<campaign>[^`]+)`",
        section,
    )
    assert step, "the README no longer says how the agent logs in"
    debtor = re.search(r"^FC-1,(?P<name>[^,]+),", section, flags=re.M)
    assert debtor, "the README's first debtor"
    http_port = _free_port()
    fixed = os.environ.get("ASTERISK_SANDBOX_AMI_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    env.update(
        ASTERISK_SANDBOX_AMI_PORT=str(asterisk_ami.port),
        DIALER_HTTP_PORT=str(http_port),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME=f"{midday_in_mexico_city_offset(dt.datetime.now(dt.UTC)):+d}",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        PGPASSWORD=server.password or "",
    )
    if not fixed:
        env["ASTERISK_SANDBOX_INSTANCE"] = f"pytest-{os.getpid()}"
    path = tmp_path / "first-call.sh"
    # set -e: a README command that fails stops the run here, with its output in the log.
    path.write_text("set -e\n" + script + "\nwait\n", encoding="utf-8")
    log_path = tmp_path / "first-call.log"
    log = log_path.open("wb")
    # Started, not awaited: it runs `dialer serve` for the rest of the test.
    proc = subprocess.Popen(  # noqa: ASYNC220
        ["bash", str(path)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{http_port}"
    try:
        await asyncio.to_thread(wait_until_served, proc, base, log_path)
        output = log_path.read_text()
        # `dialer doctor`, run by the README before serve, found nothing wrong.
        assert "everything a shift needs is in place" in output, output[-4000:]
        assert "2 rows: 2 accepted, 0 rejected" in output
        await asyncio.to_thread(
            agent_takes_the_call,
            base,
            step["login"],
            step["password"],
            step["campaign"],
            debtor["name"],
        )
        attempt = await _bridged_attempt(server.url(db_name))
        assert attempt.number == "+525551020001"  # imported as written, dialed in E.164
        # Asterisk itself saw the debtor's call enter the agent's bridge.
        tag = f"dialer-{attempt.id}-"
        await ami.wait_for(
            lambda e: (
                e.get("Event") == "BridgeEnter" and str(e.get("Linkedid", "")).startswith(tag)
            ),
            10,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
        for leftover in ("debtors.csv", "debtors.rejects.csv"):
            (REPO / leftover).unlink(missing_ok=True)


def wait_until_served(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    """Until `dialer serve` (the README's last command) answers /healthz; a README command
    that fails ends the script first, and its output is the failure."""
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, "a README command failed:\n" + log_path.read_text()[-4000:]
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()[-4000:]
        time.sleep(0.3)


def agent_takes_the_call(base: str, login: str, password: str, campaign: str, name: str) -> None:
    """The README's browser step: log in, pick the campaign, Ready; the debtor pops."""
    with headless_chrome("es") as browser:
        wait = WebDriverWait(browser, 30)
        browser.get(base + "/agent/")
        browser.find_element(By.ID, "login-user").send_keys(login)
        browser.find_element(By.ID, "login-password").send_keys(password, Keys.ENTER)
        # The dialer called the agent's phone into the holding bridge: logged in.
        wait.until(
            ec.visibility_of_element_located(
                (By.CSS_SELECTOR, "#state-badge[data-state='logged_in']")
            )
        )
        Select(browser.find_element(By.ID, "campaign")).select_by_visible_text(campaign)
        browser.find_element(By.ID, "btn-ready").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "pop-name"), name))
        wait.until(
            ec.visibility_of_element_located(
                (By.CSS_SELECTOR, "#state-badge[data-state='talking']")
            )
        )
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "first-real-call.png"))


async def _bridged_attempt(url: str) -> CallAttempt:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as s:
            rows = (
                (await s.execute(select(CallAttempt).where(CallAttempt.bridged_at.is_not(None))))
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert len(rows) == 1, [(a.id, a.number, a.outcome) for a in rows]
    return rows[0]
