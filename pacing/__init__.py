"""Pure pacing decisions: forecasts, estimators, dial policies and the discrete-event simulator.

No I/O, no asyncio, no imports from `dialer`: numpy and the standard library only.
"""
