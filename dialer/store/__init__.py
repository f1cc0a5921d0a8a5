"""Persistence: SQLAlchemy tables, the engine factory, schema checks and repositories.

The only package that holds SQL; everything else calls its functions.
"""
