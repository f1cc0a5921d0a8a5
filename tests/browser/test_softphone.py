"""The desktop's WebRTC softphone in real headless Chromium against the real Asterisk: the agent
logs in, the softphone gets its credentials over the desk's websocket, registers and joins the
agent session by itself; the websocket to Asterisk (through a TCP proxy of the test's) is cut for
5 s: the desktop says the audio is lost, no call is routed to the agent, and the softphone re-joins
by itself; then a campaign dials a testbed debtor who answers, and audio flows both ways: the
debtor's side records what it hears and the agent's tone (600 Hz, Chromium's fake microphone) is
found in it; the browser's inbound RTP carries the debtor's 1 kHz tone.

Screenshots of the softphone's states go to test-artifacts/softphone-*.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import threading
import time
import wave
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import func, select

from agents_ws.server import HUB
from dialer.app import build_app
from dialer.auth import hash_password
from dialer.runtime import RUNTIME, revoke_softphone
from dialer.settings import AmiServer, Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import Account, Agent, CallAttempt, Campaign, CampaignAccount, Phone
from dialer.telephony.softphones import SOFTPHONE
from tests.browser.chromium import headless_chrome
from tests.e2e.campaign_harness import midday_zone
from tests.fixtures.asterisk import AsteriskAmi
from tests.fixtures.postgres import _clean, _free_port

pytestmark = [pytest.mark.browser, pytest.mark.asterisk, pytest.mark.postgres]
T = TypeVar("T")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery"
AGENT_TONE_HZ = 600.0
DEBTOR_TONE_HZ = 1000.0  # asterisk_conf/testbed: 5559NN plays it
DEBTOR_NUMBER = "5559010001"  # answers after 1 s, records what it hears for 8 s
CUT_S = 5.0


def tone_wav(path: Path, hz: float, seconds: float = 10.0, rate: int = 48000) -> Path:
    """The agent's voice: a sine Chromium plays as its fake microphone (looped)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * 32767 * np.sin(2 * math.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def dominant_hz(path: Path) -> tuple[float, float]:
    """The strongest frequency of a recording, and its RMS level (0..32767)."""
    # Read by hand: Asterisk fills in the RIFF sizes only when the recording is closed, and the
    # test reads it while the debtor is still on the line.
    raw = path.read_bytes()
    rate = int.from_bytes(raw[24:28], "little")
    start = raw.index(b"data") + 8
    body = raw[start : start + (len(raw) - start) // 2 * 2]
    data = np.frombuffer(body, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
    freqs = np.fft.rfftfreq(len(data), 1 / rate)
    spectrum[freqs < 100] = 0  # no DC or hum
    return float(freqs[int(np.argmax(spectrum))]), float(np.sqrt(np.mean(data**2)))


class CuttableProxy:
    """A TCP proxy between the browser and Asterisk's websocket: `hold` keeps new connections
    waiting, `cut(s)` closes every connection and refuses new ones for s seconds."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = _free_port()
        self.held = asyncio.Event()
        self.held.set()
        self.refuse_until = 0.0
        self.conns: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refuse_until:
            writer.close()
            return
        await self.held.wait()
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.conns.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self.conns.difference_update((writer, up_w))

    def cut(self, seconds: float) -> None:
        self.refuse_until = time.monotonic() + seconds
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self.conns):
            w.transport.abort()


class LiveServer:
    """`dialer serve`'s app with the real Asterisk, on a loopback port, in its own thread."""

    def __init__(self, db_url: str, ami: AsteriskAmi) -> None:
        assert ami.ws_url, "the sandbox tells its websocket URL"
        self.loop = asyncio.new_event_loop()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_url, self.ami = db_url, ami
        self.asterisk_http_port = int(ami.ws_url.rsplit(":", 1)[1].split("/")[0])
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    async def _start(self) -> None:
        self.proxy = CuttableProxy(self.asterisk_http_port)
        await self.proxy.start()
        self.engine = make_engine(self.db_url)
        self.sessions = make_sessionmaker(self.engine)
        a = self.ami
        settings = Settings(
            ami_servers=(AmiServer("pbx1", a.host, a.port, a.username, a.secret, 20),),
            softphone_ws_url=f"ws://127.0.0.1:{self.proxy.port}/ws",
            process_name="softphone-e2e",
        )
        self.app = await build_app(settings, self.engine)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        await self.app[RUNTIME].pool.wait_connected(15)

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.proxy.stop()
        await _clean(self.engine)
        await self.engine.dispose()

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def seed(server: LiveServer) -> tuple[int, int]:
    async with server.sessions.begin() as s:
        agent = Agent(
            login="ana",
            name="Ana Agente",
            password_hash=hash_password(PASSWORD),
            role="agent",
            language="es",
            endpoint=SOFTPHONE,
        )
        campaign = Campaign(
            name="Softphone",
            state="running",
            dial_mode="progressive",
            amd_enabled=False,
            abandon_limit_s=2.0,
            compliance_profile="MX",
            dispositions=[{"code": "RPC", "label": "Right party", "contact": True, "rpc": True}],
        )
        account = Account(
            external_ref="SP-1",
            name="Debtor",
            balance=Decimal("100.00"),
            currency="MXN",
            days_past_due=40,
            aging_bucket="31-60",
            time_zone=midday_zone(dt.datetime.now(dt.UTC)),
        )
        account.phones = [Phone(number=DEBTOR_NUMBER)]
        s.add_all([agent, campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        return agent.id, campaign.id


async def attempts(server: LiveServer) -> int:
    async with server.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(CallAttempt))).scalar_one())


@pytest.fixture
def live(pg_url: str, asterisk_ami: AsteriskAmi) -> Iterator[LiveServer]:
    server = LiveServer(pg_url, asterisk_ami)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    tone = tone_wav(tmp_path / "agent-tone.wav", AGENT_TONE_HZ)
    flags = (
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone}",
        "--autoplay-policy=no-user-gesture-required",
        # Asterisk cannot resolve the .local names Chromium would give its host candidates.
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    )
    with headless_chrome("es", flags) as driver:
        yield driver


def softphone_state(browser: webdriver.Chrome) -> str:
    return str(browser.find_element(By.ID, "softphone").get_attribute("data-state"))


def quality(browser: webdriver.Chrome) -> dict[str, float]:
    got = browser.execute_script("return window.softphone && window.softphone.quality;")
    return dict(got or {})


def shot(browser: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"softphone-{name}.png"))


def test_softphone_joins_survives_a_cut_and_carries_audio_both_ways(
    live: LiveServer, browser: webdriver.Chrome, asterisk_ami: AsteriskAmi
) -> None:
    assert asterisk_ami.spool_dir is not None
    agent_id, campaign_id = live.call(seed(live))
    hub = live.app[HUB]
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)

    # Joining: the proxy holds the websocket to Asterisk, so the step stays on screen.
    live.proxy.held.clear()
    browser.get(live.url + "/agent/")
    browser.find_element(By.ID, "login-user").send_keys("ana")
    browser.find_element(By.ID, "login-password").send_keys(PASSWORD, Keys.ENTER)
    wait.until(lambda b: softphone_state(b) == "connecting")
    shot(browser, "joining")
    live.loop.call_soon_threadsafe(live.proxy.held.set)

    # Ready: registered, in the holding bridge, the dialer counts the agent's audio up.
    wait.until(lambda b: softphone_state(b) == "ready")
    wait.until(lambda b: quality(b).get("mos", 0) > 0)
    assert hub.sessions[agent_id].phone_up
    wait.until(
        lambda b: b.find_element(By.ID, "state-badge").get_attribute("data-phone") == "up"
    )
    shot(browser, "ready")

    # The pre-shift audio test: the echo extension sends the agent's tone back.
    wait.until(lambda b: b.execute_script("return window.softphone.registered;") is True)
    browser.find_element(By.ID, "sp-test").click()
    WebDriverWait(browser, 20, poll_frequency=0.2).until(
        lambda b: b.find_element(By.ID, "sp-test-result").get_attribute("data-ok") is not None
    )
    echo = browser.find_element(By.ID, "sp-test-result")
    assert echo.get_attribute("data-ok") == "true", (echo.text, echo.get_attribute("data-energy"))

    # The websocket to Asterisk cut for 5 s: audio lost at once, no call routed meanwhile.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ALT, "r")  # ready for calls
    wait.until(
        lambda b: b.find_element(By.ID, "state-badge").get_attribute("data-state") == "ready"
    )
    cut_at = time.monotonic()
    live.loop.call_soon_threadsafe(live.proxy.cut, CUT_S)
    wait.until(lambda b: softphone_state(b) in ("audio_lost", "rejoining", "connecting"))
    wait.until(
        lambda b: b.find_element(By.ID, "state-badge").get_attribute("data-phone") == "down"
    )
    lost_after = time.monotonic() - cut_at
    shot(browser, "audio-lost")
    assert not hub.sessions[agent_id].phone_up
    # While the websocket is down (until the softphone is back): nothing dialed, nobody offered.
    checks = 0
    while time.monotonic() - cut_at < CUT_S and softphone_state(browser) != "ready":
        assert hub.pick(campaign_id) is None, "an agent without audio was offered a call"
        assert not hub.sessions[agent_id].phone_up
        assert live.call(attempts(live)) == 0, "a call was placed for an agent without audio"
        checks += 1
        time.sleep(0.2)
    assert checks >= 10

    # It re-joins by itself; then the campaign's call reaches the agent.
    wait.until(lambda b: softphone_state(b) == "ready")
    rejoined_after = time.monotonic() - cut_at
    assert browser.execute_script("return window.softphone.rejoined;") is True
    print(f"\naudio lost shown {lost_after:.1f} s after the cut; re-joined {rejoined_after:.1f} s")
    steps = browser.execute_script("return window.softphone.steps;")
    print("softphone steps (ms, state, detail):", steps)
    before = quality(browser)
    WebDriverWait(browser, 60, poll_frequency=0.2).until(
        lambda b: "hidden" not in str(b.find_element(By.ID, "pop").get_attribute("class"))
    )
    WebDriverWait(browser, 15, poll_frequency=0.5).until(
        lambda b: quality(b).get("totalAudioEnergy", 0) > before.get("totalAudioEnergy", 0) + 0.05
    )
    during = quality(browser)
    shot(browser, "in-call")
    browser.find_element(By.ID, "sp-mute").click()
    wait.until(lambda b: b.find_element(By.ID, "softphone").get_attribute("data-muted") == "true")
    shot(browser, "muted")

    # The debtor's side: what it heard is the agent's tone.
    heard = asterisk_ami.spool_dir / "monitor" / "softphone-test" / f"{DEBTOR_NUMBER}-heard.wav"
    deadline, size = time.monotonic() + 30, -1
    while time.monotonic() < deadline:  # closed by StopMixMonitor: it stops growing
        now_size = heard.stat().st_size if heard.exists() else 0
        if now_size > 40000 and now_size == size:
            break
        size = now_size
        time.sleep(1.0)
    head = heard.read_bytes()[:16]
    assert head.startswith(b"RIFF"), f"recording {heard} starts with {head!r}"
    hz, rms = dominant_hz(heard)
    print(
        f"debtor heard {hz:.0f} Hz at RMS {rms:.0f}; browser inbound: audioLevel "
        f"{during.get('audioLevel')}, energy {before.get('totalAudioEnergy', 0):.3f} -> "
        f"{during.get('totalAudioEnergy', 0):.3f}, MOS {during.get('mos')}"
    )
    assert abs(hz - AGENT_TONE_HZ) < 15, f"the debtor heard {hz:.0f} Hz, not the agent's tone"
    assert rms > 300
    assert during["audioLevel"] > 0.01

    # The agent is disabled (or re-credentialed): the softphone's password stops working at once,
    # its session is hung up, and it cannot come back.
    revoked_at = time.monotonic()
    live.call(revoke_softphone(live.app, agent_id))
    wait.until(lambda b: softphone_state(b) != "ready")
    assert not hub.sessions[agent_id].phone_up
    gone_after = time.monotonic() - revoked_at
    time.sleep(6)  # the softphone's re-join tries meanwhile (1, 2 s apart) must all fail
    assert softphone_state(browser) != "ready"
    assert browser.execute_script("return window.softphone.registered;") is False
    assert not hub.sessions[agent_id].phone_up
    print(f"revoked: the softphone lost its session {gone_after:.1f} s later and stayed out")
