"""Settings: a tree of frozen attrs sections, one per component, built from the environment.

Environment variables keep the names operators know (``RECO_DATABASE_URL``,
``RECO_CONSUMER_BATCH_MAX``, ``APP_ENV``): :mod:`reco.settings.names` maps each to
its leaf. :func:`load_settings` reads them (every problem at once);
:func:`evolve` changes a tree by those flat names (``evolve(s, database_url=...)``).
"""

from __future__ import annotations

from reco.settings.environment import converter, load_settings
from reco.settings.names import KNOBS, Knob, env_name, evolve
from reco.settings.redaction import REDACTED, redact_dsn
from reco.settings.sections import (
    AppEnv,
    BackgroundMode,
    ConsumerSettings,
    DatabaseSettings,
    EngineSettings,
    FolderSettings,
    HttpSettings,
    ImpressionSettings,
    KafkaSettings,
    LogFormat,
    MaintenanceSettings,
    RelaySettings,
    Settings,
    TrainingSettings,
)

__all__ = [
    "KNOBS",
    "REDACTED",
    "AppEnv",
    "BackgroundMode",
    "ConsumerSettings",
    "DatabaseSettings",
    "EngineSettings",
    "FolderSettings",
    "HttpSettings",
    "ImpressionSettings",
    "KafkaSettings",
    "Knob",
    "LogFormat",
    "MaintenanceSettings",
    "RelaySettings",
    "Settings",
    "TrainingSettings",
    "converter",
    "env_name",
    "evolve",
    "load_settings",
    "redact_dsn",
]
