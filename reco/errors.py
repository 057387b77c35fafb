"""The exception tree of reco.

::

    RecoError
    ├── ConfigError                  bad settings; the process exits with code 2
    ├── StartupError                 a component could not start in time
    ├── MigrationError               the schema cannot be accounted for
    │   └── MigrationCheckFailed     `check-migrations` findings
    ├── TransientError               worth retrying with backoff
    │   ├── DatabaseUnavailable      connect / acquire / timeout / lost connection
    │   └── BrokerUnavailable        the Kafka broker cannot be reached
    └── PermanentError               retrying will not help
        └── InvalidMessage           a watch event that fails validation (dead-lettered)

Transient errors are retried inside components; permanent ones are answered
(4xx) or dead-lettered, never retried.
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


class BrokerUnavailable(TransientError):
    """The Kafka broker could not be reached."""


class PermanentError(RecoError):
    """A fault that retrying cannot fix."""


class InvalidMessage(PermanentError):
    """A message that fails validation; ``reason`` is a short machine-friendly text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
