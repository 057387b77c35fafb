-- Neighbours of x read in weight order, so a fetch reads about K rows.
--
-- The neighbours query (reco/engine/queries.py, _NEIGHBOURS) takes the top K
-- of the range item_id = x and the range other_item_id = x. With only the
-- primary key and an index on (other_item_id), it read both ranges whole and
-- sorted them: a popular item's tens of thousands of pairs per fetch. With
-- both ranges ordered by (weight DESC, the other item), the planner merges two
-- index scans (Merge Append) and stops after K rows.
--
-- The trade-off: an index on weight means a fold's increment is no longer a
-- HOT update; every changed pair now also writes an entry in each of the
-- three indexes (docs/performance.md, "Neighbour reads (issue 15)"). The
-- plain (other_item_id) index is replaced: the second index has it as its
-- prefix, and the fold and prune address rows by ctid and the primary key.
CREATE INDEX item_cooccurrence_top_idx
    ON item_cooccurrence (item_id, weight DESC, other_item_id);
CREATE INDEX item_cooccurrence_other_top_idx
    ON item_cooccurrence (other_item_id, weight DESC, item_id);
DROP INDEX item_cooccurrence_other_idx;
