"""What request handlers reach: settings, readiness and the components' handles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import attrs
from quart import Quart, current_app

from reco.impressions.model import DiscardingSink, ImpressionSink
from reco.observability.readiness import Readiness
from reco.settings import Settings

if TYPE_CHECKING:
    from reco.db.pool import Database
    from reco.engine.recommender import Recommender


@attrs.define
class AppState:
    settings: Settings
    readiness: Readiness
    database: Database | None = None
    impressions: ImpressionSink = attrs.field(factory=DiscardingSink)
    recommender: Recommender | None = None
    # Handles added by the components that own them (impression sink, engine...).
    extras: dict[str, Any] = attrs.field(factory=dict)


def state(app: Quart | None = None) -> AppState:
    return cast(AppState, (app or current_app).extensions["reco"])
