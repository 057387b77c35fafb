"""PostgreSQL: the pool component, migrations and the SQL functions.

SQL lives in plain async functions that take the connection first
(``reco/db/queries/``); the caller owns the transaction.
"""
