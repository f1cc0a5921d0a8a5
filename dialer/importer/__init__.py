"""Account import from CSV files: column mapping, row parsing, streaming batched upserts.

Both the CLI (`dialer import`) and the API (`POST /api/accounts/import`) call
`load.import_accounts`.
"""
