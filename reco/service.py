"""The composition root: builds every component and hands them to the supervisor.

Start order (stop order is the reverse): database, maintenance, outbox relay, impression
writer, co-occurrence folder, consumer, HTTP. HTTP starts last so traffic arrives only when the
rest is ready, and stops first so no request finds a stopped dependency; the
impression writer drains before the relay finishes its last batch.

Each component stops within its share of ``RECO_SHUTDOWN_TIMEOUT``
(:data:`SHUTDOWN_SHARES`): the shares add up to less than the whole, so the
stops, run one after the other, end within it (the supervisor refuses shares
that do not; tests/unit/test_service_shares.py holds the figures).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

from reco.api.app import create_app
from reco.api.server import HttpServer
from reco.api.state import AppState
from reco.consumer.component import WatchEventConsumer
from reco.db.pool import Database
from reco.engine.recommender import Recommender
from reco.engine.stamps import StampWatch
from reco.folder.component import CooccurrenceFolder
from reco.impressions.buffer import ImpressionBuffer
from reco.impressions.writer import ImpressionWriter
from reco.lifecycle import Component
from reco.maintenance.component import Maintainer
from reco.observability.logs import get_logger
from reco.observability.readiness import Readiness
from reco.outbox.relay import OutboxRelay
from reco.settings import Settings
from reco.supervisor import Supervisor

log = get_logger("reco.service")

# Fractions of RECO_SHUTDOWN_TIMEOUT, by component name, in stop order. HTTP lets in-flight
# requests finish; the consumer stores its batches in hand and leaves the group; the writer
# writes the buffer out; the relay publishes its batch in hand and flushes; the pool closes.
SHUTDOWN_SHARES: dict[str, float] = {
    "http": 0.25,
    "consumer": 0.25,
    "cooccurrence-folder": 0.1,
    "impression-writer": 0.15,
    "outbox-relay": 0.1,
    "maintenance": 0.05,
    "user-stamps": 0.02,
    "database": 0.05,
}
EXTRA_SHARE = 0.02  # each extra component (reco dev's banner): it holds no work


def build(
    settings: Settings, *, handle_signals: bool = True, extra: Sequence[Component] = ()
) -> tuple[Supervisor, AppState, HttpServer]:
    """Every component; ``extra`` ones start after HTTP (``reco dev``'s banner)."""
    readiness = Readiness()
    database = Database(settings.database, readiness, migrate=settings.should_migrate_on_start)
    recommender = Recommender(database, settings.engine)
    app_state = AppState(
        settings=settings, readiness=readiness, database=database, recommender=recommender,
    )  # fmt: skip
    components: list[Component] = [database]
    folder = CooccurrenceFolder(settings.folder, database)
    if settings.engine.list_cache_size > 0:  # kept lists served without a stamp read
        forget = recommender.lists.forget

        def changed(user_id: str) -> None:  # a committed batch: the user's list, the folder
            forget(user_id)
            folder.wake()

        recommender.stamps = StampWatch(settings.database, changed)
        components.append(recommender.stamps)
    if settings.maintenance.enabled:
        components.append(Maintainer(settings.maintenance, database))
    impressions = ImpressionBuffer(settings.impressions)
    app_state.impressions = impressions
    if settings.relay.enabled:
        components.append(OutboxRelay(settings.relay, settings.kafka, database, readiness))
    components.append(ImpressionWriter(
        settings.impressions, database, impressions, topic=settings.kafka.impressions_topic,
    ))  # fmt: skip
    components.append(folder)
    if settings.consumer.enabled:
        components.append(
            WatchEventConsumer(settings.consumer, settings.kafka, readiness, database)
        )
    http = HttpServer(
        create_app(app_state), settings.http.bind,
        keep_alive_timeout=settings.http.keep_alive_timeout,
    )  # fmt: skip
    components.append(http)
    components.extend(extra)

    def on_stopping() -> None:
        readiness.shutting_down = True

    shares = {**SHUTDOWN_SHARES, **{c.name: EXTRA_SHARE for c in extra}}
    supervisor = Supervisor(
        components, startup_timeout=settings.startup_timeout,
        shutdown_timeout=settings.shutdown_timeout, on_stopping=on_stopping,
        handle_signals=handle_signals, shares=shares,
    )  # fmt: skip
    return supervisor, app_state, http


async def serve(settings: Settings, extra: Sequence[Component] = ()) -> int:
    """Run the service until a signal; return the exit status."""
    supervisor, _, _ = build(settings, extra=extra)
    freeze_startup_objects()
    return await supervisor.run()


def freeze_startup_objects() -> None:
    """Move what is alive after start-up (modules, classes, functions) out of the GC's reach.

    Generation-2 collections then walk only what the service allocated since,
    so they stay short (CPython's gc.freeze, meant for this). Frozen objects
    are still freed by reference counting when they die.
    """
    gc.collect()
    gc.freeze()
