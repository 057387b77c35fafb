"""SQL as plain async functions that take the connection first; the caller owns the transaction."""
