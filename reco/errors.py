"""The exception tree of reco: the one vocabulary every retry and answer decision uses.

::

    RecoError
    ├── ConfigError                  bad settings; the process exits with code 2
    ├── StartupError                 a component could not start in time
    ├── MigrationError               the schema cannot be accounted for
    │   └── MigrationCheckFailed     `check-migrations` findings
    ├── TransientError               the dependency may recover: retry with backoff
    │   ├── DatabaseUnavailable      connect / acquire / timeout / lost connection / shutdown
    │   ├── DatabaseConflict         serialization failure, deadlock: run the transaction again
    │   └── BrokerUnavailable        the Kafka broker cannot be reached or asks to retry
    └── PermanentError               this input can never succeed: never retried
        ├── InvalidMessage           fails validation (4xx, or dead-lettered)
        ├── UnprocessableData        PostgreSQL refused the data (SQLSTATE class 22, 23, 54)
        └── RecordRejected           the broker refuses a record (too large, corrupt, invalid)

Library exceptions are translated at the edges, by class and SQLSTATE, never
by message text: asyncpg's in :mod:`reco.db.classify`, aiokafka's in
:mod:`reco.kafka.errors`. What neither edge recognises is a bug: it is not
retried (a component that meets one stops the process, loudly) and an HTTP
handler answers 500.

Transient errors are retried inside components for as long as they last,
with readiness or a metric saying so; permanent ones are answered (4xx) or
isolated and dead-lettered with their reason.
"""

from __future__ import annotations


class RecoError(Exception):
    """Base of every error reco raises on purpose."""


class ConfigError(RecoError):
    """The settings are invalid; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


class StartupError(RecoError):
    """A component failed to start or did not start within the deadline."""


class MigrationError(RecoError):
    """The database schema and the migration files disagree."""


class MigrationCheckFailed(MigrationError):
    """``check-migrations`` found problems; ``findings`` lists them."""

    def __init__(self, findings: list[str]) -> None:
        super().__init__("\n".join(findings))
        self.findings = findings


class TransientError(RecoError):
    """A fault that may go away: retry with backoff."""


class DatabaseUnavailable(TransientError):
    """PostgreSQL could not be reached or did not answer in time."""


class DatabaseConflict(TransientError):
    """The transaction lost a race (serialization failure, deadlock): run it again."""


class BrokerUnavailable(TransientError):
    """The Kafka broker could not be reached, or answered with a retriable error."""


class PermanentError(RecoError):
    """A fault that retrying cannot fix."""


class InvalidMessage(PermanentError):
    """A message that fails validation; ``reason`` is a short machine-friendly text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnprocessableData(PermanentError):
    """PostgreSQL refused the data itself; ``sqlstate`` says how (e.g. ``22P05``)."""

    def __init__(self, sqlstate: str, name: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate} ({name})")
        self.sqlstate = sqlstate
        self.name = name


class RecordRejected(PermanentError):
    """The broker refused a record for good; ``code`` names the broker's error."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
