"""Compliance: jurisdiction profiles (data), calling windows, frequency limits and the claim rule.

Everything here is pure: callers pass the clock and the facts, nothing reads a database or a socket.
"""
