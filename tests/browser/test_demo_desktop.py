"""A person takes a call in the running demo: `dialer demo` (simulated PBX and agents) in a
subprocess, and the agent desktop in real headless Chromium logged in on the seat left free."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from dialer.demo.run import HUMAN_SEAT
from dialer.demo.seed import DEMO_PASSWORD
from tests.browser.chromium import headless_chrome
from tests.fixtures.postgres import _free_port

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def chrome() -> Iterator[webdriver.Chrome]:
    with headless_chrome("en") as driver:
        yield driver


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = _free_port()
    log = (tmp_path / "demo.log").open("wb")
    args = ["demo", "--port", str(port), "--duration", "240", "--workdir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer.cli", *args, "--json", str(tmp_path / "report.json")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while b"Running for" not in (tmp_path / "demo.log").read_bytes():
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()
            assert time.monotonic() < deadline, "the demo did not start within 60 s"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", proc, tmp_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_a_person_takes_a_call_beside_the_simulated_agents(
    demo: tuple[str, subprocess.Popen[bytes], Path], chrome: webdriver.Chrome
) -> None:
    base, proc, workdir = demo
    with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
        assert resp.status == 200
    wait = WebDriverWait(chrome, 20)
    chrome.get(base + "/agent/")
    chrome.find_element(By.ID, "login-user").send_keys(HUMAN_SEAT)
    chrome.find_element(By.ID, "login-password").send_keys(DEMO_PASSWORD, Keys.ENTER)
    # logged_in: the simulated PBX called the seat's phone into the holding bridge.
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='logged_in']"))
    )
    # The desktop's softphone is shown as simulated: the simulated PBX plays the audio.
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#softphone[data-state='simulated']"))
    )
    chrome.find_element(By.ID, "btn-ready").click()
    # The predictive engine dials for the whole team; this seat gets a debtor soon.
    WebDriverWait(chrome, 90).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='talking']"))
    )
    assert chrome.find_element(By.ID, "pop-name").text.endswith("(demo)")
    ARTIFACTS.mkdir(exist_ok=True)
    chrome.save_screenshot(str(ARTIFACTS / "demo-agent-desktop.png"))

    chrome.find_element(By.ID, "btn-hangup").click()
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#state-badge[data-state='wrap_up']"))
    )
    Select(chrome.find_element(By.ID, "disp-code")).select_by_value("RPC")
    chrome.find_element(By.ID, "disp-submit").click()
    wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#notice[data-kind='ack-disposition']"))
    )

    proc.send_signal(signal.SIGINT)  # Ctrl-C: the demo ends with its report
    assert proc.wait(60) == 0, (workdir / "demo.log").read_text()
    assert "Demo report" in (workdir / "demo.log").read_text()
    with sqlite3.connect(workdir / "dialer-demo.sqlite3") as db:
        rows = db.execute(
            "SELECT d.code, a.outcome FROM dispositions d "
            "JOIN agents g ON g.id = d.agent_id JOIN call_attempts a ON a.id = d.attempt_id "
            "WHERE g.login = ?",
            (HUMAN_SEAT,),
        ).fetchall()
    assert rows == [("RPC", "human")]
