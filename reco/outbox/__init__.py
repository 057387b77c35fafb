"""The transactional outbox relay: committed rows to Kafka, in order per key."""
