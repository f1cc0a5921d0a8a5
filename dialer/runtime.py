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
from agents_ws.server import HUB
from dialer import auth, metrics
from dialer.agent_service import DbAgentPort, HubAgents
from dialer.cluster import ClusterAgents, cluster_for
from dialer.engine.engine import Engine, PreviewRefused
from dialer.engine.pool_telephony import PoolTelephony
from dialer.engine.ports import OriginateRefused, ReadyAgent
from dialer.settings import Settings
from dialer.supervisor import Supervisor
from dialer.telephony.ami import AmiError
from dialer.telephony.asterisk import CallNotFound
from dialer.telephony.pool import ServerPool

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
        self, pool: ServerPool, engine: Engine | None = None, hub: AgentHub | None = None
    ) -> None:
        self.pool = pool
        self.engine = engine  # dials preview calls and routes them
        self.hub = hub  # tells whether the agent still holds a preview at the answer

    async def _originate(self, fields: dict[str, str]) -> None:
        servers = self.pool.in_rotation()
        if not servers:
            raise PortRefused("no Asterisk server is connected", None, "unavailable")
        await servers[0].connection.send({"Action": "Originate", "Async": "true", **fields})

    async def open_agent_channel(self, agent_id: int, endpoint: str | None) -> bool:
        """Call the agent's phone into `[dialer-agent-session]` to wait in a holding bridge."""
        if not endpoint:
            return False
        await self._originate(
            {
                "Channel": endpoint,
                "Context": "dialer-agent-session",
                "Exten": "login",
                "Priority": "1",
                "Timeout": "30000",
                "Variable": f"DIALER_AGENT={agent_id}",
            }
        )
        return True

    async def close_agent_channel(self, agent_id: int) -> None:
        """Hang up the agent's nailed-up channel, found through the global the dialplan sets
        (`DIALER_AGENT_<id>`, see [dialer-agent-session]) on whichever server holds it."""
        for server in self.pool.in_rotation():
            try:
                reply = await server.connection.send(
                    {"Action": "Getvar", "Variable": f"DIALER_AGENT_{agent_id}"}, limit_s=2.0
                )
                channel = str(reply.get("Value") or "")
                if channel:
                    await server.connection.send(
                        {"Action": "Hangup", "Channel": channel, "Cause": "16"}, limit_s=2.0
                    )
            except Exception as exc:  # the channel may be gone already; logout goes on
                log.warning(
                    "agent %d: could not hang up the agent channel on %s: %s",
                    agent_id,
                    server.name,
                    type(exc).__name__,
                )

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

    def _agent_session(self, message: Message) -> None:
        """`DialerAgentSession` user events tell the hub whether an agent's channel is up."""
        if message.get("Event") != "UserEvent" or message.get("UserEvent") != "DialerAgentSession":
            return
        try:
            agent_id = int(str(message.get("Agent", "")))
        except ValueError:
            return
        hub = self.app[HUB]
        if message.get("State") in ("login", "holding"):
            hub.channel_up(agent_id)
        elif message.get("State") == "logout":
            hub.channel_down(agent_id)

    async def start(self, _app: web.Application) -> None:
        for server in self.pool.servers:
            server.connection.listeners.append(self._agent_session)
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
        self.port.telephony = PoolAgentTelephony(self.pool, engine, self.app[HUB])
        if cluster is not None:
            cluster.on_hang_up = telephony.hangup
            self.port.telephony.cluster = cluster
        self.engine = engine
        # Owned and restarted (shared backoff) by the supervisor; /healthz reports them down.
        self.supervisor.spawn("engine", engine.run)
        self.supervisor.spawn("call-events", lambda: telephony.pump(engine.on_event))
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


def add_dialing(app: web.Application, settings: Settings, port: DbAgentPort) -> DialingRuntime:
    runtime = DialingRuntime(app, settings, port)
    app[RUNTIME] = runtime
    app.on_startup.append(runtime.start)
    app.on_cleanup.append(runtime.stop)
    return runtime
