-- impressions partitioned by served_at (daily, UTC): retention
-- (RECO_IMPRESSION_RETENTION) drops whole partitions (reco/maintenance/).
-- The primary key must contain the partition key: (recommendation_id,
-- served_at); a recommendation id is a fresh uuid4 per list served, so the
-- wider key loses nothing. A DEFAULT partition takes rows of a day without a
-- partition (reco_partition_create(), sql/0006, moves them out later).
-- Conversion in place, as for watch_events.
ALTER TABLE impressions RENAME TO impressions_unpartitioned;
ALTER TABLE impressions_unpartitioned RENAME CONSTRAINT impressions_pkey TO impressions_unpartitioned_pkey;
ALTER INDEX impressions_user_idx RENAME TO impressions_unpartitioned_user_idx;
ALTER INDEX impressions_served_at_idx RENAME TO impressions_unpartitioned_served_at_idx;

CREATE TABLE impressions (
    recommendation_id  uuid NOT NULL,
    user_id            text,
    endpoint           text NOT NULL,
    algorithm          text NOT NULL,
    items              jsonb NOT NULL,
    served_at          timestamptz NOT NULL,
    PRIMARY KEY (recommendation_id, served_at)
) PARTITION BY RANGE (served_at);
CREATE INDEX impressions_user_idx ON impressions (user_id, served_at DESC) WHERE user_id IS NOT NULL;
CREATE TABLE impressions_default PARTITION OF impressions DEFAULT;

SELECT reco_partition_create('impressions', 'served_at', d)
FROM (
    SELECT DISTINCT (served_at AT TIME ZONE 'UTC')::date AS d FROM impressions_unpartitioned
    UNION SELECT (now() AT TIME ZONE 'UTC')::date + i FROM generate_series(-1, 2) AS i
) AS days ORDER BY d;

INSERT INTO impressions SELECT * FROM impressions_unpartitioned;
DROP TABLE impressions_unpartitioned;
