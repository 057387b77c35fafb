-- reco initial schema. Each table notes the queries it serves; docs/design.md
-- maps every index to its query.

-- ---------------------------------------------------------------- catalogue
CREATE TABLE items (
    item_id     text PRIMARY KEY,
    title       text NOT NULL,
    genres      text[] NOT NULL DEFAULT '{}',
    active      boolean NOT NULL DEFAULT true,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (length(item_id) BETWEEN 1 AND 128)
);
-- genre filter on popular/recommendations: genres && ARRAY[...]
CREATE INDEX items_genres_idx ON items USING gin (genres);

-- ------------------------------------------------------------- watch events
-- Every accepted watch event, once (event_id is the idempotency key). No
-- foreign key to items: an event may arrive before its item.
CREATE TABLE watch_events (
    event_id         text PRIMARY KEY,
    user_id          text NOT NULL,
    item_id          text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    watched_seconds  double precision,
    completed        boolean,
    received_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX watch_events_user_idx ON watch_events (user_id, occurred_at DESC);

-- ------------------------------------------------- what recommendations read
-- Maintained incrementally by reco/engine/ingest.py::apply_events in the
-- consumer's transaction; read by reco/engine/queries.py. See docs/design.md
-- "Engine".

-- Per-user history: one row per (user, item), the latest watch.
CREATE TABLE user_history (
    user_id          text NOT NULL,
    item_id          text NOT NULL,
    first_watched_at timestamptz NOT NULL,
    last_watched_at  timestamptz NOT NULL,
    watch_count      integer NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, item_id)
);
-- the user's whole history, most recent first (for_user: seeds and exclusion;
-- apply_events: the last N items a new watch pairs with)
CREATE INDEX user_history_recent_idx ON user_history (user_id, last_watched_at DESC);

-- Item popularity. user_count (distinct watchers) normalises co-occurrence;
-- log_score is time-decayed popularity ("trending"), kept in log space
-- relative to a fixed epoch so that an increment never rescales other rows:
-- log_score = log(sum(exp((t_i - epoch) / tau))).
CREATE TABLE item_popularity (
    item_id      text PRIMARY KEY,
    watch_count  bigint NOT NULL DEFAULT 0,
    user_count   bigint NOT NULL DEFAULT 0,
    log_score    double precision NOT NULL,
    last_at      timestamptz NOT NULL,
    -- when this item's counts or neighbour list last changed (wall clock of
    -- the writing transaction): read-side caches drop what changed since
    changed_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- trending lists: ORDER BY log_score DESC
CREATE INDEX item_popularity_score_idx ON item_popularity (log_score DESC);
-- popular lists: ORDER BY user_count DESC
CREATE INDEX item_popularity_count_idx ON item_popularity (user_count DESC, item_id);
-- cache invalidation: changed_at > $1
CREATE INDEX item_popularity_changed_idx ON item_popularity (changed_at);

-- Item-to-item co-occurrence from each user's recent history: a first watch
-- of b pairs with the user's last N distinct items, weight decay^distance
-- (closer in the sequence counts more). Symmetric, so stored once per
-- unordered pair, ordered by Python's string order (apply_events sorts): half
-- the rows to write. No CHECK: the database's collation may order differently.
CREATE TABLE item_cooccurrence (
    item_id        text NOT NULL,
    other_item_id  text NOT NULL,
    weight         double precision NOT NULL,
    PRIMARY KEY (item_id, other_item_id)
) WITH (fillfactor = 70);
-- Neighbours of x: the primary-key range item_id = x plus this index's range
-- other_item_id = x. Deliberately no index on weight: an increment then
-- touches no index (a HOT update, hence the fillfactor), which keeps
-- apply_events fast; the read side takes the top-K per item and caches it.
CREATE INDEX item_cooccurrence_other_idx ON item_cooccurrence (other_item_id);

-- -------------------------------------------------------------- impressions
CREATE TABLE impressions (
    recommendation_id  uuid PRIMARY KEY,
    user_id            text,
    endpoint           text NOT NULL,
    algorithm          text NOT NULL,
    items              jsonb NOT NULL,
    served_at          timestamptz NOT NULL
);
CREATE INDEX impressions_user_idx ON impressions (user_id, served_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX impressions_served_at_idx ON impressions (served_at);

-- ------------------------------------------------------------------ outbox
-- Rows to publish to Kafka. txid records the writing transaction so the relay
-- reads only rows whose transaction is below the snapshot's xmin (a row with a
-- smaller id may commit after a larger one).
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    topic         text NOT NULL,
    message_key   text NOT NULL,
    event_id      text NOT NULL,
    event_type    text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
-- the relay's claim: unpublished rows in id order
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
-- retention pruning of published rows
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
-- re-sent events are not enqueued twice (within the retention of published rows)
CREATE UNIQUE INDEX outbox_topic_event_id_key ON outbox (topic, event_id);

-- The relay's claim: the oldest committed unpublished rows, in id order, only
-- from transactions below the snapshot's xmin (all ended: no smaller id can
-- still appear). The planner settings pin the ordered walk of the partial
-- index: without statistics (a fresh or bursty table) the planner otherwise
-- bitmap-scans and sorts the whole backlog on every claim.
CREATE FUNCTION outbox_pending(batch integer) RETURNS SETOF outbox
LANGUAGE sql STABLE
SET enable_bitmapscan = off SET enable_seqscan = off SET enable_sort = off
AS $$
    SELECT * FROM outbox
    WHERE published_at IS NULL AND txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY id
    LIMIT batch
$$;

-- Wake the relay at commit (NOTIFY is delivered on commit, once per transaction
-- and payload); the relay also polls, since a notification is lost while nobody
-- listens.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('reco_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify_after_insert AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
