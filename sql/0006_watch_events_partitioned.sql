-- watch_events partitioned by the day it was received, so that the dedup
-- window (RECO_WATCH_EVENT_RETENTION, docs/design.md "Retention") expires by
-- dropping whole partitions (reco/maintenance/), never by deleting rows.
--
-- Why received, not occurred: the window is about how long an event id is
-- remembered after we saw it (a producer's retries and the topic's retention
-- count from then); occurred_at may be any instant of years 1-9999 (backfills),
-- and partitioning by it would put an old backfill straight into an expired
-- partition.
--
-- A partitioned table's unique key must contain the partition key. The key is
-- therefore (event_id, received_day), with received_day a date (UTC): two
-- transactions storing the same id on the same day still meet in the unique
-- index (ON CONFLICT DO NOTHING, exactly as before). Across days the insert
-- first looks the batch's ids up in every partition (event_id leads the
-- primary key: one `= ANY` index lookup per partition), and
-- watch_events_day() orders the day change: a transaction takes a shared
-- advisory lock on its day (read again after the lock: the day has not moved
-- under it), then waits until every transaction still holding the previous
-- day's lock has ended, so it sees their rows. A redelivered id is thus
-- stored once for as long as its partition is kept.
--
-- Conversion in place: the rows move into the partitioned table (one
-- partition per day that has rows; maintenance drops the expired ones at its
-- first pass). The DEFAULT partition takes a row whose day has no partition
-- yet, so no insert ever fails; reco_partition_create() moves such rows out
-- when their day's partition is created.

-- Creates the daily partition of `parent` (partition key column `key`, of
-- type date or timestamptz, days in UTC) for `day`, unless it exists; rows of
-- that day waiting in the DEFAULT partition move into it. True when created.
-- The caller holds a lock_timeout: creating a partition locks the parent.
CREATE FUNCTION reco_partition_create(parent text, key text, day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := format('%s_p%s', parent, to_char(day, 'YYYYMMDD'));
    deflt text := parent || '_default';
    keytype regtype;
    lo text;
    hi text;
BEGIN
    IF to_regclass(quote_ident(part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    SELECT a.atttypid::regtype INTO keytype FROM pg_attribute a
    WHERE a.attrelid = parent::regclass AND a.attname = key;
    IF keytype = 'date'::regtype THEN
        lo := quote_literal(day::text);
        hi := quote_literal((day + 1)::text);
    ELSE
        lo := quote_literal((day::timestamp AT TIME ZONE 'UTC')::text);
        hi := quote_literal(((day + 1)::timestamp AT TIME ZONE 'UTC')::text);
    END IF;
    EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', parent);
    EXECUTE format(
        'CREATE TEMP TABLE reco_partition_moving ON COMMIT DROP AS '
        'SELECT * FROM %I WHERE %I >= %s::%s AND %I < %s::%s',
        deflt, key, lo, keytype, key, hi, keytype);
    EXECUTE format('DELETE FROM %I WHERE %I >= %s::%s AND %I < %s::%s',
        deflt, key, lo, keytype, key, hi, keytype);
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
        part, parent, lo, hi);
    EXECUTE format('INSERT INTO %I SELECT * FROM reco_partition_moving', parent);
    DROP TABLE reco_partition_moving;
    RETURN true;
END
$$;

ALTER TABLE watch_events RENAME TO watch_events_unpartitioned;
ALTER TABLE watch_events_unpartitioned RENAME CONSTRAINT watch_events_pkey TO watch_events_unpartitioned_pkey;
ALTER INDEX watch_events_user_idx RENAME TO watch_events_unpartitioned_user_idx;

CREATE TABLE watch_events (
    event_id         text NOT NULL,
    user_id          text NOT NULL,
    item_id          text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    watched_seconds  double precision,
    completed        boolean,
    received_at      timestamptz NOT NULL DEFAULT now(),
    -- the partition key: the UTC day received_at falls on (set by the insert)
    received_day     date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
    PRIMARY KEY (event_id, received_day)
) PARTITION BY RANGE (received_day);
CREATE INDEX watch_events_user_idx ON watch_events (user_id, occurred_at DESC);
CREATE TABLE watch_events_default PARTITION OF watch_events DEFAULT;

SELECT reco_partition_create('watch_events', 'received_day', d)
FROM (
    SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date AS d FROM watch_events_unpartitioned
    UNION SELECT (now() AT TIME ZONE 'UTC')::date + i FROM generate_series(-1, 2) AS i
) AS days ORDER BY d;

INSERT INTO watch_events
    (event_id, user_id, item_id, occurred_at, watched_seconds, completed, received_at, received_day)
SELECT event_id, user_id, item_id, occurred_at, watched_seconds, completed, received_at,
       (received_at AT TIME ZONE 'UTC')::date
FROM watch_events_unpartitioned;

DROP TABLE watch_events_unpartitioned;

-- The day a storing transaction writes its events under (see above): a shared
-- lock on its day, then a barrier on the previous day's lock. Both advisory
-- lock keys are (this constant, days since 1970-01-01). The barrier is a
-- session lock taken and released at once (a transaction lock would be held
-- to the commit and serialise the day's writers); the handler releases it
-- when the statement is cancelled in between, so it never outlives the call.
CREATE FUNCTION watch_events_day() RETURNS date
LANGUAGE plpgsql AS $$
DECLARE
    d date;
BEGIN
    LOOP
        d := (clock_timestamp() AT TIME ZONE 'UTC')::date;
        PERFORM pg_advisory_xact_lock_shared(726354, d - DATE '1970-01-01');
        EXIT WHEN (clock_timestamp() AT TIME ZONE 'UTC')::date = d;
    END LOOP;
    BEGIN
        PERFORM pg_advisory_lock(726354, d - 1 - DATE '1970-01-01');
        PERFORM pg_advisory_unlock(726354, d - 1 - DATE '1970-01-01');
    EXCEPTION WHEN query_canceled OR others THEN
        IF EXISTS (
            SELECT 1 FROM pg_locks
            WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
              AND mode = 'ExclusiveLock' AND classid = 726354
              AND objid = (d - 1 - DATE '1970-01-01') AND objsubid = 2
        ) THEN
            PERFORM pg_advisory_unlock(726354, d - 1 - DATE '1970-01-01');
        END IF;
        RAISE;
    END;
    RETURN d;
END
$$;
