"""The embedded development stack: a real PostgreSQL and a real Kafka-protocol broker.

Both run as child processes on free loopback ports. ``reco dev`` uses them,
and so do the test fixtures (session-scoped servers, a fresh database and
fresh topic names per test).
"""
