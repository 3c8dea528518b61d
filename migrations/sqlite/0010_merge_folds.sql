-- Where a fold of the merge log stands (src/store/sqlite/merges.rs). Once the log reaches its
-- threshold, the events logged by then (up to `watermark`) are folded into their items a chunk of
-- items at a time, one chunk per group commit in item order, so that no request waits behind the
-- whole fold; each chunk's transaction writes this row. Rows of `merges` up to `watermark` whose
-- item is before `next_item` are folded, and are not read back after a restart; the last chunk
-- deletes every row up to the watermark and this row with them. At most one row.
CREATE TABLE merge_folds (
    watermark INTEGER NOT NULL,
    next_item INTEGER NOT NULL
);
