-- Trained models (`reco train`): item-to-item neighbour lists fitted in a
-- batch process from user_history, one row per model version.
--
-- A training run inserts its version row (active = false), then its
-- neighbour rows, and commits; one short transaction then flips `active`
-- to the new version (and off the old one) and deletes versions beyond the
-- kept count. Readers find the active version first and read that
-- version's rows only, so they never see a half-written model: a version's
-- rows are complete before it can become active, and they are deleted only
-- once it is inactive (a reader that still holds an old version number
-- finds no rows and falls back to the live co-occurrence, for at most one
-- model-cache sync).
--
-- Expand only: an older release does not read these tables and keeps
-- serving the live co-occurrence; `reco train` of an older image does not
-- exist. Contracting later means dropping the two tables.
CREATE TABLE model_versions (
    version        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    method         text NOT NULL,           -- "ease" | "item-knn"
    trained_from   timestamptz,             -- the training window: first watch read
    trained_to     timestamptz,             -- last watch read
    started_at     timestamptz NOT NULL,
    fit_seconds    double precision NOT NULL,
    users          integer NOT NULL,
    items          integer NOT NULL,
    watches        bigint NOT NULL,
    params         jsonb NOT NULL,          -- lambda, neighbours per item, ...
    figures        jsonb NOT NULL,          -- its own offline Recall@10 / NDCG@10
    active         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- At most one active version, whatever the number of concurrent trainers.
CREATE UNIQUE INDEX model_versions_one_active ON model_versions (active) WHERE active;

-- One row per item: its neighbours, strongest first, and their weights
-- (parallel arrays: one row per item keeps a version of 100k items at 100k
-- rows, read with one index range per seed).
CREATE TABLE model_neighbours (
    version    bigint NOT NULL REFERENCES model_versions (version) ON DELETE CASCADE,
    item_id    text NOT NULL,
    neighbours text[] NOT NULL,
    weights    real[] NOT NULL,
    PRIMARY KEY (version, item_id),
    CHECK (cardinality(neighbours) = cardinality(weights))
);
