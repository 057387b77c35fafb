-- A row the broker refuses for good (larger than the topic's max.message.bytes
-- or the producer's request limit) is never retried: the relay sets it aside,
-- published_at stamped so that the rows behind it move on and retention prunes
-- it, with the broker's error here (reco_outbox_rejected_total counts them).
ALTER TABLE outbox ADD COLUMN publish_error text;
