"""Create reco's topics on the development broker (``reco dev``).

Production topics are created by the operators (see deploy/); here we create
them so that the dev stack behaves like a cluster with auto-creation off.
A topic that already exists (a second run on the same broker) is fine.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from reco.observability.logs import get_logger
from reco.settings import Settings

log = get_logger("reco_dev.devstack")

TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code
PARTITIONS = 4


def topic_specs(settings: Settings) -> list[NewTopic]:
    names = (settings.watch_events_topic, settings.dead_letter_topic, settings.impressions_topic)
    return [NewTopic(name, num_partitions=PARTITIONS, replication_factor=1) for name in names]


def failures(topic_errors: list[tuple[object, ...]]) -> list[str]:
    """The per-topic errors that matter: everything but success and "already exists"."""
    return [
        f"{error[0]}: error code {error[1]}"
        for error in topic_errors
        if error[1] not in (0, TOPIC_ALREADY_EXISTS)
    ]


async def create_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(settings.kafka_request_timeout * 1000),
    )
    await admin.start()
    try:
        response = await admin.create_topics(topic_specs(settings))
    finally:
        await admin.close()
    problems = failures(list(response.topic_errors))
    if problems:
        raise RuntimeError("could not create topics: " + "; ".join(problems))
    log.info("topics ready", topics=[t.name for t in topic_specs(settings)])
