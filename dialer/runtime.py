"""What `dialer serve` runs besides HTTP when AMI servers are configured: the server pool, the
engine, and the links between them and the agents' hub (events in, commands out).

Built and torn down with the aiohttp application (`build_app` registers it); nothing else wires it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from aiohttp import web
from panoramisk.message import Message

from agents_ws.engine_port import PortRefused, SupervisorAction
from agents_ws.hub import AgentHub
from agents_ws.protocol import JsonObject
from agents_ws.server import HUB
from dialer import auth, metrics
from dialer.agent_service import DbAgentPort, HubAgents
from dialer.cluster import ClusterAgents, cluster_for
from dialer.engine.engine import Engine, PreviewRefused
from dialer.engine.pool_telephony import PoolTelephony
from dialer.engine.ports import CallEvent, CallEventKind, OriginateRefused, ReadyAgent
from dialer.settings import Settings
from dialer.supervisor import Supervisor
from dialer.telephony.agent_sessions import AgentSessions
from dialer.telephony.ami import AmiError
from dialer.telephony.asterisk import CallNotFound
from dialer.telephony.pool import ServerPool
from dialer.telephony.softphones import SOFTPHONE, Softphones, dial_string

log = logging.getLogger("dialer.runtime")

SPY_OPTIONS = {
    SupervisorAction.LISTEN: "qE",
    SupervisorAction.WHISPER: "qEw",
    SupervisorAction.BARGE: "qEB",
}


class PoolAgentTelephony:
    """`dialer.agent_service.AgentTelephony` over the pool: nailed-up sessions, hang-up, ChanSpy."""

    cluster: ClusterAgents | None = None  # reaches calls that another process placed

    def __init__(
        self,
        pool: ServerPool,
        engine: Engine | None = None,
        hub: AgentHub | None = None,
        phones: AgentSessions | None = None,
        softphones: Softphones | None = None,
    ) -> None:
        self.pool = pool
        self.softphones = softphones  # browser softphones' endpoints (None: not configured)
        self.engine = engine  # dials preview calls and routes them
        self.hub = hub  # tells whether the agent still holds a preview at the answer
        # The agents' nailed-up sessions, watched and re-opened (its `run` is the runtime's).
        self.phones = phones or AgentSessions(pool, lambda _agent, _up, _why: None)

    async def _originate(self, fields: dict[str, str]) -> None:
        servers = self.pool.in_rotation()
        if not servers:
            raise PortRefused("no Asterisk server is connected", None, "unavailable")
        await servers[0].connection.send({"Action": "Originate", "Async": "true", **fields})

    async def open_agent_channel(self, agent_id: int, endpoint: str | None) -> bool:
        """The agent's session in `[dialer-agent-session]`: adopted when Asterisk holds one,
        else their phone is called; watched from then on (dialer/telephony/agent_sessions.py).
        True when it is up now."""
        if endpoint == SOFTPHONE:
            # The softphone joins by itself after login; the watcher re-rings it (it answers)
            # only when its session dropped and it did not re-join.
            endpoint = dial_string(agent_id) if self.softphones is not None else None
        return await self.phones.open(agent_id, endpoint)

    async def softphone_credentials(self, agent_id: int, uses_softphone: bool) -> JsonObject | None:
        if self.softphones is None or not self.softphones.enabled:
            return None
        if self.softphones.simulated:  # `dialer demo` on its simulated PBX: every agent's
            return {"simulated": True}
        if not uses_softphone:
            return None
        try:
            return (await self.softphones.issue(agent_id)).to_json()
        except AmiError as exc:
            raise PortRefused(f"softphone not provisioned: {exc}", None, "unavailable") from exc

    async def softphone_audio_lost(self, agent_id: int, reason: str) -> None:
        await self.phones.drop(agent_id, reason)

    async def revoke_softphone(self, agent_id: int) -> None:
        """The agent was disabled or got a new password: their SIP credentials stop working
        now and their session is hung up."""
        if self.softphones is not None:
            await self.softphones.revoke(agent_id)
        await self.phones.drop(agent_id, "softphone_revoked")

    async def close_agent_channel(self, agent_id: int) -> None:
        """Hang up every session of the agent, on whichever server holds it; a softphone's SIP
        password dies with the shift (the next login gets a new one)."""
        await self.phones.close(agent_id)
        if (
            self.softphones is not None
            and self.softphones.enabled
            and not self.softphones.simulated
        ):
            await self.softphones.revoke(agent_id)

    async def hang_up(self, call_id: str, attempt_id: int | None) -> None:
        if attempt_id is None:
            raise PortRefused("this call has no attempt to hang up", "call_id", "unavailable")
        try:
            await self.pool.hang_up(attempt_id)
        except CallNotFound:
            # The campaign's owner, another process, placed the call: it hangs it up.
            if self.cluster is None or not await self.cluster.hang_up(attempt_id):
                raise
        except AmiError as exc:
            # Asterisk is out of reach (AMI down, or no reply): nothing to retry at once.
            raise PortRefused(
                f"Asterisk is not reachable now ({type(exc).__name__}); hang up on the phone",
                None,
                "unavailable",
            ) from exc

    async def originate_preview(self, attempt_id: int, campaign_id: int, agent_id: int) -> None:
        """Dial through the engine of this process (the agent's), as predictive calls are."""
        if self.engine is None or self.hub is None:
            raise PortRefused("preview dialing is not wired", None, "unavailable")
        hub, call_id = self.hub, str(attempt_id)
        session = hub.sessions.get(agent_id)
        channel = (session.identity.channel if session else None) or ""
        try:
            await self.engine.dial_preview(
                attempt_id,
                campaign_id,
                ReadyAgent(agent_id, channel),
                held=lambda: hub.holds(agent_id, call_id),
            )
        except PreviewRefused as exc:
            raise PortRefused(str(exc), "call_id") from exc
        except OriginateRefused as exc:
            raise PortRefused(f"the call could not be placed: {exc}", None, "unavailable") from exc

    async def supervise(
        self, action: SupervisorAction, supervisor_endpoint: str | None, agent_endpoint: str | None
    ) -> None:
        if not supervisor_endpoint or not agent_endpoint:
            field = "supervisor endpoint" if not supervisor_endpoint else "agent endpoint"
            raise PortRefused(f"no {field} configured", None, "unavailable")
        await self._originate(
            {
                "Channel": supervisor_endpoint,
                "Application": "ChanSpy",
                "Data": f"{agent_endpoint},{SPY_OPTIONS[action]}",
            }
        )


class DialingRuntime:
    def __init__(self, app: web.Application, settings: Settings, port: DbAgentPort) -> None:
        self.app = app
        self.settings = settings
        self.port = port
        self.pool = ServerPool.from_settings(settings.ami_servers)
        self.engine: Engine | None = None
        self.supervisor = Supervisor()

    @staticmethod
    def _up_meter(server: str) -> Callable[[bool], None]:
        return lambda up: metrics.set_ami_up(server, up)

    @staticmethod
    def _lag_meter(server: str) -> Callable[[Message], None]:
        """Asterisk stamps each event (timestampevents=yes): how late the dialer handles it."""

        def meter(message: Message) -> None:
            try:
                stamped = float(str(message.get("Timestamp", "")))
            except ValueError:
                return
            metrics.observe_ami_event_lag(server, time.time() - stamped)

        return meter

    def _phone_changed(self, agent_id: int, up: bool, reason: str) -> None:
        """The agent's nailed-up session came up or went down (AgentSessions says which)."""
        hub = self.app[HUB]
        if up:
            hub.channel_up(agent_id, reason)
        else:
            hub.channel_down(agent_id, reason)

    async def start(self, _app: web.Application) -> None:
        # Before the pool connects: the watcher must see the first login of every link.
        phones = AgentSessions(self.pool, self._phone_changed)
        softphones = Softphones(
            self.pool,
            self.settings.softphone_ws_url,
            self.settings.softphone_ice_servers,
            self.settings.softphone_turn_secret,
        )
        for server in self.pool.servers:
            server.connection.listeners.append(self._lag_meter(server.name))
            server.connection.state_listeners.append(self._up_meter(server.name))
            metrics.set_ami_up(server.name, False)
        await self.pool.start()
        sessions = self.app[auth.SESSIONS_KEY]
        telephony = PoolTelephony(self.pool)
        agents = HubAgents(self.app[HUB], sessions)
        # Several processes on one Postgres: the engine reaches the agents of all of them.
        cluster = cluster_for(agents, self.settings.database_url, self.settings.process_name)
        engine = Engine(
            sessions,
            telephony,
            agents if cluster is None else cluster,
            owner=self.settings.process_name,
            tick_hz=self.settings.tick_hz,
            lease_ttl=dt.timedelta(seconds=self.settings.lease_seconds),
            recordings_dir=self.settings.recordings_dir,
        )
        agents.on_ready = engine.agent_ready
        agents.on_finished = engine.handle_finished
        self.port.telephony = PoolAgentTelephony(
            self.pool, engine, self.app[HUB], phones, softphones
        )
        if cluster is not None:
            cluster.on_hang_up = telephony.hangup
            self.port.telephony.cluster = cluster
        self.engine = engine
        prepare = agents.prepare if cluster is None else cluster.prepare

        async def deliver(event: CallEvent) -> None:
            # Ringing: the screen pop is read now, so the router reads nothing at the answer.
            if event.kind in (CallEventKind.ORIGINATED, CallEventKind.RINGING):
                prepare(event.attempt_id)
            await engine.on_event(event)

        # Owned and restarted (shared backoff) by the supervisor; /healthz reports them down.
        self.supervisor.spawn("engine", engine.run)
        self.supervisor.spawn("call-events", lambda: telephony.pump(deliver))
        self.supervisor.spawn("agent-sessions", phones.run)
        if cluster is not None:
            self.supervisor.spawn("agents-cluster", cluster.run)
        log.info("dialing runtime started with %d Asterisk server(s)", len(self.pool.servers))

    def problems(self) -> dict[str, str]:
        """Why the service cannot dial now (for /healthz); empty when it can."""
        found = dict(self.supervisor.problems())
        if self.engine is not None:
            found.update({f"engine.{k}": v for k, v in self.engine.problems.items()})
        for server in self.pool.servers:
            if not server.connected:
                found[f"ami.{server.name}"] = server.connection.last_error or "not connected"
        return found

    async def stop(self, _app: web.Application) -> None:
        self.supervisor.stopping()
        if self.engine is not None:
            self.engine.stop()
            # The engine finishes its ticks and routers (a debtor being connected gets the agent
            # or the safe harbor) before the rest is cancelled.
            await self.supervisor.finish("engine", 10.0)
        await self.supervisor.stop()
        await self.pool.close()


RUNTIME: web.AppKey[DialingRuntime] = web.AppKey("dialing_runtime", DialingRuntime)


async def revoke_softphone(app: web.Application, agent_id: int) -> None:
    """The agent was disabled or re-credentialed: their softphone's SIP password stops working on
    every Asterisk server and their session is hung up (nothing to do without telephony)."""
    runtime = app.get(RUNTIME)
    telephony = runtime.port.telephony if runtime is not None else None
    if isinstance(telephony, PoolAgentTelephony):
        await telephony.revoke_softphone(agent_id)


def add_dialing(app: web.Application, settings: Settings, port: DbAgentPort) -> DialingRuntime:
    runtime = DialingRuntime(app, settings, port)
    app[RUNTIME] = runtime
    app.on_startup.append(runtime.start)
    app.on_cleanup.append(runtime.stop)
    return runtime
