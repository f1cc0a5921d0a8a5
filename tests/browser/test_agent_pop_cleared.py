"""After a call is disposed and the agent is Ready again, the previous debtor's pop is gone and
the forms are disabled: nothing can be recorded against a finished call by mistake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from agents_ws.server import HUB
from tests.browser.chromium import headless_chrome
from tests.browser.test_agent_desktop import PASSWORD, LiveServer, push_call, seed

pytestmark = [pytest.mark.browser, pytest.mark.postgres]


@pytest.fixture
def live(pg_url: str) -> Iterator[LiveServer]:
    server = LiveServer(pg_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chrome("es") as driver:
        yield driver


def badge(state: str) -> tuple[str, str]:
    return (By.CSS_SELECTOR, f"#state-badge[data-state='{state}']")


def test_the_pop_is_cleared_when_the_agent_is_ready_again(
    live: LiveServer, browser: webdriver.Chrome
) -> None:
    offer = live.call(seed(live))
    wait = WebDriverWait(browser, 10)
    browser.get(live.url + "/agent/")
    browser.find_element(By.ID, "login-user").send_keys("ana")
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
    wait.until(ec.visibility_of_element_located(badge("logged_in")))
    browser.find_element(By.ID, "btn-ready").click()
    wait.until(ec.visibility_of_element_located(badge("ready")))

    assert live.call(push_call(live, offer))
    wait.until(ec.text_to_be_present_in_element((By.ID, "pop-name"), "Carlos Gómez Ruiz"))

    async def hang_up() -> None:
        live.app[HUB].call_ended(offer.call_id)

    live.call(hang_up())
    wait.until(ec.visibility_of_element_located(badge("wrap_up")))
    # Still on screen during wrap-up: the agent records the outcome.
    assert browser.find_element(By.ID, "pop").is_displayed()
    codes = Select(browser.find_element(By.ID, "disp-code"))
    codes.select_by_index(len(codes.options) - 1)
    browser.find_element(By.ID, "disp-submit").click()
    saved = (By.CSS_SELECTOR, "#notice[data-kind='ack-disposition']")
    wait.until(ec.visibility_of_element_located(saved))
    if not browser.find_elements(*badge("ready")):
        browser.find_element(By.ID, "btn-ready").click()
    wait.until(ec.visibility_of_element_located(badge("ready")))

    wait.until(ec.invisibility_of_element_located((By.ID, "pop")))
    assert browser.find_element(By.ID, "no-call").is_displayed()
    for form_button in ("disp-submit", "ptp-submit", "cb-submit"):
        assert browser.find_element(By.ID, form_button).get_attribute("disabled") is not None
