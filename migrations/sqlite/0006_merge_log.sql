-- The merge log: an event for an item already pending is appended here (one page at the end of
-- one B-tree) instead of rewriting the item's row and moving its items_due entry, and folded into
-- the item later, many events at once (see src/store/sqlite/merges.rs). Only events that move the
-- item's due time later are logged.
-- quiet is the event's quiet delay in milliseconds (at most max_wait).
CREATE TABLE merges (
    seq     INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL,
    seen    INTEGER NOT NULL,
    quiet   INTEGER NOT NULL
);

-- The quiet delay of each item's latest event. With it the real due time of a normal item is
-- MIN(last_seen + quiet, deadline), and the stored due_at (the flusher's index key) need only be
-- a lower bound: a fold that moves the due time later leaves due_at and its index entry alone.
-- Existing items have an exact due_at, which this quiet reproduces.
ALTER TABLE items ADD COLUMN quiet INTEGER NOT NULL DEFAULT 0;
UPDATE items SET quiet = due_at - last_seen WHERE priority = 0;
