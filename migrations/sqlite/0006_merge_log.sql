-- The merge log: an event for an item already pending is appended here (one page at the end of
-- one B-tree) instead of rewriting the item's row and moving its items_due entry, and folded into
-- the item later, many events at once (see src/store/sqlite/merges.rs). Only events that move the
-- item's due time later are logged, so an item's stored due_at is never later than its real one.
-- quiet is the event's quiet delay in milliseconds (at most max_wait).
CREATE TABLE merges (
    seq     INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL,
    seen    INTEGER NOT NULL,
    quiet   INTEGER NOT NULL
);
