"""Telephony: the dialer's side of Asterisk (AMI connection, call outcomes, call state).

Everything that speaks AMI or knows Asterisk's codes lives here; the rest of the dialer sees calls.
"""
