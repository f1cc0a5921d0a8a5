"""The engine: campaign runners that pace and claim, and the router that hands answers to agents.

It talks to Asterisk and to the agents only through the ports in `dialer.engine.ports`.
"""
