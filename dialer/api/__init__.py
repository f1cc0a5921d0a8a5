"""The operations REST API (aiohttp, JSON): one module per resource, an OpenAPI document merged
from their fragments (`openapi.py`), authenticated supervisor/admin via `dialer.auth`.
"""
