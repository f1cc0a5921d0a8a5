"""The supervisor view lists the supervisors watching apart from the agents (who alone get
listen/whisper/barge)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.chromium import headless_chrome
from tests.browser.test_agent_desktop import PASSWORD, LiveServer, agent_on_call, seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


@pytest.fixture
def live(pg_url: str) -> Iterator[LiveServer]:
    server = LiveServer(pg_url)
    try:
        yield server
    finally:
        server.stop()


def test_supervisors_are_listed_apart_from_agents(live: LiveServer) -> None:
    offer = live.call(seed(live))
    http = live.call(agent_on_call(live, offer))  # adds the supervisor "sam" too
    try:
        with headless_chrome("es") as browser:
            wait = WebDriverWait(browser, 10)
            browser.get(live.url + "/supervisor/")
            browser.find_element(By.ID, "login-user").send_keys("sam")
            browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
            wait.until(ec.text_to_be_present_in_element((By.ID, "agents"), "Ana Agente"))
            wait.until(ec.text_to_be_present_in_element((By.ID, "supervisors"), "Sara"))
            agents = browser.find_element(By.ID, "agents").text
            supervisors = browser.find_element(By.ID, "supervisors").text
            assert "Sara Supervisora" not in agents
            assert "Sara Supervisora (sam)" in supervisors and "Supervisor" in supervisors
            assert "Ana Agente" not in supervisors
            # Only agents have call actions.
            assert len(browser.find_elements(By.CSS_SELECTOR, "#supervisors button")) == 0
    finally:
        live.call(http.close())
