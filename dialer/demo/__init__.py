"""The self-contained demo: synthetic debtors, simulated agents and PBX, live figures and a report.

Nothing here is used by `dialer serve`; it exercises the production engine end to end.
"""
