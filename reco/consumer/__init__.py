"""The watch-event consumer: Kafka to PostgreSQL, idempotent, dead-lettering bad messages."""
