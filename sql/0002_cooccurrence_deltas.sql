-- Co-occurrence increments, folded in by one writer (reco/engine/folding.py).
--
-- A consumer batch used to add its pair weights to item_cooccurrence in its
-- own transaction. Popular pairs are in nearly every batch, so concurrent
-- batches (store lanes, instances) waited for each other's row locks until
-- commit: the pair upsert ran one batch at a time. A batch now appends its
-- increments here (no index, no row shared with any other batch), in the
-- same transaction as its events, so nothing is lost or counted twice; the
-- folder deletes every committed increment, sums them per pair and adds the
-- sums to item_cooccurrence in one transaction, under an advisory lock that
-- makes it the table's only writer.
CREATE TABLE item_cooccurrence_deltas (
    item_id        text NOT NULL,
    other_item_id  text NOT NULL,
    weight         double precision NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);

-- When each item's neighbour list last changed (the folder stamps both ends
-- of every pair it adds to): the read-side caches drop what changed since
-- their last look, as they do for item_popularity.changed_at.
CREATE TABLE item_neighbour_changes (
    item_id     text PRIMARY KEY,
    changed_at  timestamptz NOT NULL
);
CREATE INDEX item_neighbour_changes_changed_idx ON item_neighbour_changes (changed_at);
