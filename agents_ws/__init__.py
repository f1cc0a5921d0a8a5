"""The agents' side of the dialer: websocket protocol, sessions, agent state machine, desktop.

Talks to the engine through the small interface in `agents_ws.engine_port`.
"""
