"""Domain rules as plain functions over dataclasses: retry and recycling, and what follows a call.

No database, no sockets, no clock: callers pass `now` in.
"""
