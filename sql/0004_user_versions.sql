-- A version stamp per user, moved by every change of the user's history.
--
-- The read path keeps each user's scored list in the process
-- (reco/engine/lists.py) and reuses it only while the stamp read with the
-- request is the one the list was scored at: a committed watch changes the
-- stamp in the same transaction, so the next request of any instance scores
-- afresh (read-after-write, exactly), and an unchanged user costs one
-- primary-key lookup instead of the history and the scoring.
--
-- Stamped by triggers, whoever writes user_history (the consumer's
-- apply_events, tools, tests), once per statement and user, in user order
-- after the history rows (every writer locks history rows, then these). The
-- stamp is a sequence value, never reused: a user whose rows are deleted and
-- written again does not get an old stamp back. A user without a row has
-- version 0.
CREATE SEQUENCE user_version_seq;

CREATE TABLE user_versions (
    user_id  text PRIMARY KEY,
    version  bigint NOT NULL
);

CREATE FUNCTION user_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_versions AS v (user_id, version)
    SELECT user_id, nextval('user_version_seq')
    FROM (SELECT DISTINCT user_id FROM changed ORDER BY user_id) AS u
    ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END
$$;

-- A trigger with transition tables fires on one event; one each.
CREATE TRIGGER user_versions_after_insert AFTER INSERT ON user_history
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION user_versions_bump();
CREATE TRIGGER user_versions_after_update AFTER UPDATE ON user_history
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION user_versions_bump();
CREATE TRIGGER user_versions_after_delete AFTER DELETE ON user_history
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION user_versions_bump();
