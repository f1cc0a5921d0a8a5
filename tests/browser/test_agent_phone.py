"""An agent whose phone cannot be put on line sees why, in the desktop (real Chromium, the real
service dialing the real Asterisk sandbox), instead of a bare red "disconnected"; the server logs
it with the agent's id only."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from dialer.app import build_app
from dialer.auth import hash_password
from dialer.runtime import RUNTIME
from dialer.settings import AmiServer, Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import Agent
from tests.browser.chromium import headless_chrome
from tests.browser.test_agent_desktop import PASSWORD, LiveServer
from tests.fixtures.asterisk import AsteriskAmi

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.asterisk]


class DialingServer(LiveServer):
    """The live app with the sandbox's Asterisk configured, as `dialer serve` runs it."""

    ami: AsteriskAmi

    async def _start(self) -> None:
        from aiohttp import web

        self.engine = make_engine(self.db_url)
        self.sessions = make_sessionmaker(self.engine)
        async with self.sessions.begin() as s:
            s.add(Agent(login="ana", name="Ana", password_hash=hash_password(PASSWORD)))
            s.add(
                Agent(login="ben", name="Ben", password_hash=hash_password(PASSWORD),
                      endpoint="PJSIP/agent9999", language="en")
            )  # fmt: skip
        settings = Settings(ami_servers=(AmiServer.parse(f"{self.ami.url}?name=pbx"),))
        self.app = await build_app(settings, self.engine)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await self.app[RUNTIME].pool.wait_connected(15)


@pytest.fixture
def live(pg_url: str, asterisk_ami: AsteriskAmi) -> Iterator[DialingServer]:
    DialingServer.ami = asterisk_ami
    server = DialingServer(pg_url)
    try:
        yield server
    finally:
        server.stop()


def log_in(browser: webdriver.Chrome, url: str, login: str) -> WebDriverWait[webdriver.Chrome]:
    browser.get(url + "/agent/")
    browser.find_element(By.ID, "login-user").send_keys(login)
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
    return WebDriverWait(browser, 15)


def test_an_agent_without_a_phone_is_told_why_and_the_server_logs_it(
    live: DialingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dialer.phone")
    with headless_chrome("es") as browser:
        wait = log_in(browser, live.url, "ana")
        box = (By.CSS_SELECTOR, "#phone-status[data-status='missing']")
        wait.until(ec.visibility_of_element_located(box))
        text = browser.find_element(By.ID, "phone-status").text
        assert text.startswith("No tiene un teléfono configurado")
        assert "dialer agent update ana --phone PJSIP/" in text
        assert browser.find_element(By.ID, "state-badge").text == "SIN TELÉFONO"
        assert browser.find_element(By.ID, "btn-ready").get_attribute("disabled") is not None
    [line] = [r for r in caplog.records if r.name == "dialer.phone"]
    assert line.getMessage().endswith("cannot be put on line: phone missing")
    assert "ana" not in line.getMessage()  # the id only, as every log line


def test_a_phone_asterisk_does_not_know_is_named(live: DialingServer) -> None:
    with headless_chrome("en") as browser:
        wait = log_in(browser, live.url, "ben")
        # The hub says "logged in" once the call to the phone is sent; the desktop still asks.
        box = (By.CSS_SELECTOR, "#phone-status[data-status='not_configured']")
        wait.until(ec.visibility_of_element_located(box))
        text = browser.find_element(By.ID, "phone-status").text
        assert text.startswith("Your phone (PJSIP/agent9999) does not exist in Asterisk")
        assert browser.find_element(By.ID, "state-badge").text == "NO PHONE"
