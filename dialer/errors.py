"""Errors a user can fix: one line on the CLI, a 4xx body naming the field in the API."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; printed as one line."""
