"""The dialer service: config, domain rules, telephony, engine, store, ops API, metrics and CLI."""

__version__ = "0.1.0"
