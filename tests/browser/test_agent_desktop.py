"""The agent desktop in real headless Chromium (Debian's chromium + chromedriver, via Selenium):
log in, go ready, get a screen pop pushed through the hub, record a promise-to-pay, see the ack.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from agents_ws.engine_port import CallOffer, CampaignLive
from agents_ws.server import HUB
from dialer.agent_service import build_screen_pop
from dialer.app import build_app
from dialer.auth import hash_password
from dialer.settings import Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    CallAttempt,
    Campaign,
    Disposition,
    Payment,
    Phone,
    PromiseToPay,
)
from tests.browser.chromium import headless_chrome
from tests.fixtures.postgres import _clean, _free_port

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
T = TypeVar("T")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery"


class LiveServer:
    """The real app on a loopback port, in its own thread and event loop (Selenium blocks)."""

    def __init__(self, db_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url = db_url
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    async def _start(self) -> None:
        self.engine = make_engine(self.db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.app = await build_app(Settings(), self.engine)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await _clean(self.engine)
        await self.engine.dispose()

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def seed(server: LiveServer) -> CallOffer:
    async with server.sessions.begin() as s:
        s.add(
            Agent(
                login="ana",
                name="Ana Agente",
                password_hash=hash_password(PASSWORD),
                role="agent",
                language="es",
            )
        )
        campaign = Campaign(name="Tarjetas 31-60", state="running", dial_mode="predictive")
        account = Account(
            external_ref="TC-000123",
            name="Carlos Gómez Ruiz",
            balance=Decimal("1850000.00"),
            currency="COP",
            days_past_due=47,
            aging_bucket="31-60",
            time_zone="America/Bogota",
            custom_fields={"producto": "Tarjeta Oro", "sucursal": "Medellín"},
        )
        s.add_all([campaign, account])
        await s.flush()
        phone = Phone(account_id=account.id, number="+573001234567", phone_type="mobile")
        s.add_all(
            [
                phone,
                Phone(
                    account_id=account.id, number="+5746041234", phone_type="landline", priority=2
                ),
                Payment(
                    account_id=account.id,
                    amount=Decimal("200000.00"),
                    currency="COP",
                    paid_at=dt.datetime(2026, 9, 15, 15, tzinfo=dt.UTC),
                    reference="PSE-8812",
                ),
            ]
        )
        await s.flush()
        attempt = CallAttempt(
            campaign_id=campaign.id, account_id=account.id, phone_id=phone.id, number=phone.number
        )
        s.add(attempt)
        await s.flush()
        s.add(
            Disposition(
                account_id=account.id,
                campaign_id=campaign.id,
                code="THIRD_PARTY",
                notes="Contestó la esposa; llamar después de las 6 pm",
            )
        )
        return CallOffer(
            call_id=f"call-{attempt.id}",
            campaign_id=campaign.id,
            account_id=account.id,
            attempt_id=attempt.id,
            phone_id=phone.id,
            time_zone="America/Bogota",
        )


async def push_call(server: LiveServer, offer: CallOffer) -> bool:
    """What the engine does on a human answer: reserve the agent, bridge, push the screen pop."""
    hub = server.app[HUB]
    if hub.reserve(offer) is None:
        return False
    async with server.sessions() as s:
        pop = await build_screen_pop(
            s,
            offer.campaign_id,
            offer.account_id,
            dt.datetime.now(dt.UTC),
            attempt_id=offer.attempt_id,
            phone_id=offer.phone_id,
            language="es",
        )
    return hub.call_bridged(offer.call_id, pop)


async def promises(server: LiveServer) -> list[tuple[Decimal, dt.date]]:
    async with server.sessions() as s:
        rows = await s.execute(select(PromiseToPay.amount, PromiseToPay.due_date))
        return [(a, d) for a, d in rows]


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chrome("es") as driver:
        yield driver


@pytest.fixture
def live(pg_url: str) -> Iterator[LiveServer]:
    server = LiveServer(pg_url)
    try:
        yield server
    finally:
        server.stop()


def test_agent_logs_in_goes_ready_gets_screen_pop_and_records_promise(
    live: LiveServer, browser: webdriver.Chrome
) -> None:
    offer = live.call(seed(live))
    wait = WebDriverWait(browser, 10)
    browser.get(live.url + "/agent/")
    browser.find_element(By.ID, "login-user").send_keys("ana")
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
    badge = (By.CSS_SELECTOR, "#state-badge[data-state='logged_in']")
    wait.until(ec.visibility_of_element_located(badge))
    assert browser.find_element(By.ID, "conn").get_attribute("data-status") == "up"

    # Ready from the keyboard: Alt+R.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ALT, "r")
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='ready']"))
    )

    assert live.call(push_call(live, offer))
    wait.until(ec.text_to_be_present_in_element((By.ID, "pop-name"), "Carlos Gómez Ruiz"))
    balance = browser.find_element(By.ID, "pop-balance")
    assert balance.get_attribute("data-amount") == "1850000.00"
    assert balance.text == "1.850.000,00 COP"  # shown the Colombian way, sent canonically
    assert "plan en cuotas" in browser.find_element(By.ID, "pop-script").text
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='talking']"))
    )

    # A decimal comma is refused next to the field, before anything is sent.
    due = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    amount = browser.find_element(By.ID, "ptp-amount-0")
    amount.send_keys("12,50")
    browser.execute_script("document.getElementById('ptp-date-0').value = arguments[0]", due)
    browser.find_element(By.ID, "ptp-submit").click()
    assert "12.50" in browser.find_element(By.ID, "ptp-amount-0-error").text
    assert amount.get_attribute("aria-invalid") == "true"

    amount.clear()
    amount.send_keys("12.50")
    browser.find_element(By.ID, "ptp-submit").click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#notice[data-kind='ack-ptp']")))
    assert browser.find_element(By.ID, "notice").text == "Promesa de pago: Guardado (#1)"
    assert browser.find_element(By.ID, "conn-text").text == "Conectado"
    # The acknowledgement came after the commit: the promise is in Postgres now.
    assert live.call(promises(live)) == [(Decimal("12.50"), dt.date.fromisoformat(due))]

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "agent-desktop.png"))


async def agent_on_call(server: LiveServer, offer: CallOffer) -> aiohttp.ClientSession:
    """An agent (a plain websocket client, not the browser) who goes ready and takes the call."""
    async with server.sessions.begin() as s:
        s.add(
            Agent(
                login="sam",
                name="Sara Supervisora",
                role="supervisor",
                password_hash=hash_password(PASSWORD),
            )
        )
    http = aiohttp.ClientSession(server.url)
    token = (
        await (await http.post("/api/login", json={"login": "ana", "password": PASSWORD})).json()
    )["token"]
    ws = await http.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
    await ws.send_json({"type": "state.ready", "id": "r1"})
    async with asyncio.timeout(5):
        while (await ws.receive_json()).get("state") != "ready":
            pass
    assert await push_call(server, offer)
    server.app[HUB].set_campaigns_live(
        [
            CampaignLive(
                offer.campaign_id, "Tarjetas 31-60", 4, 2, 1, 0.012, "launch 3: 1 ready, forecast 2"
            )
        ]
    )
    return http


def test_supervisor_sees_agent_talking_with_listen_whisper_barge(
    live: LiveServer, browser: webdriver.Chrome
) -> None:
    offer = live.call(seed(live))
    http = live.call(agent_on_call(live, offer))
    try:
        wait = WebDriverWait(browser, 10)
        browser.get(live.url + "/supervisor/")
        browser.find_element(By.ID, "login-user").send_keys("sam")
        browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
        wait.until(ec.text_to_be_present_in_element((By.ID, "agents"), "Ana Agente"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "campaigns"), "launch 3"))
        listen = browser.find_element(By.CSS_SELECTOR, "[data-key^='listen-']")
        assert listen.is_enabled()
        listen.click()  # no telephony in this test: the engine answers "unavailable"
        wait.until(ec.text_to_be_present_in_element((By.ID, "notice"), "telephony"))
        assert "EN LLAMADA" in browser.find_element(By.ID, "agents").text  # her language: es
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "supervisor.png"))
    finally:
        live.call(http.close())


async def disable(server: LiveServer, login: str) -> None:
    """What an admin's PATCH /api/agents/{id} {"active": false} does, through the API."""
    async with server.sessions.begin() as s:
        s.add(Agent(login="boss", name="Boss", role="admin", password_hash=hash_password(PASSWORD)))
        agent_id = (await s.execute(select(Agent.id).where(Agent.login == login))).scalar_one()
    async with aiohttp.ClientSession(server.url) as http:
        login_resp = await http.post("/api/login", json={"login": "boss", "password": PASSWORD})
        token = (await login_resp.json())["token"]
        resp = await http.patch(
            f"/api/agents/{agent_id}",
            json={"active": False},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 200, await resp.text()


def test_a_disabled_agent_sees_why_their_session_ended(
    live: LiveServer, browser: webdriver.Chrome
) -> None:
    live.call(seed(live))
    wait = WebDriverWait(browser, 10)
    browser.get(live.url + "/agent/")
    browser.find_element(By.ID, "login-user").send_keys("ana")
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
    badge = (By.CSS_SELECTOR, "#state-badge[data-state='logged_in']")
    wait.until(ec.visibility_of_element_located(badge))
    live.call(disable(live, "ana"))
    # Within the revocation check (0.5 s) the socket closes with 4001 and the login form says why.
    WebDriverWait(browser, 3).until(
        ec.text_to_be_present_in_element((By.ID, "login-error"), "Su sesión terminó")
    )
    assert browser.find_element(By.ID, "login-view").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('dialer.token')") is None


def test_the_desktop_shows_why_a_reserved_call_never_reached_the_agent(
    live: LiveServer, browser: webdriver.Chrome
) -> None:
    offer = live.call(seed(live))
    wait = WebDriverWait(browser, 10)
    browser.get(live.url + "/agent/")
    browser.find_element(By.ID, "login-user").send_keys("ana")
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='logged_in']"))
    )
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ALT, "r")
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='ready']"))
    )
    hub = live.app[HUB]

    async def reserve() -> int | None:  # on the server's loop, as the engine does
        return hub.reserve(offer)

    async def release() -> None:  # what the engine does when the debtor hangs up meanwhile
        hub.release(offer.call_id, "debtor_hung_up")

    assert live.call(reserve()) is not None
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='reserved']"))
    )
    live.call(release())
    badge = browser.find_element(By.ID, "state-badge")
    told = "Disponible · El deudor colgó antes de conectar"  # (shown in capitals by the CSS)
    wait.until(lambda _d: badge.get_attribute("textContent") == told)
    badge = browser.find_element(By.ID, "state-badge")
    assert badge.get_attribute("data-state") == "ready"
