-- A claim takes a group's due items oldest first: ORDER BY first_seen, id LIMIT n. The group's
-- index ended at first_seen, so PostgreSQL could not stop after n rows in that order: it read
-- every item of the group and sorted them (40-60 ms a claim with 130,000 pending, a claim's cost
-- growing with the backlog; BENCHMARKS.md, "A claim that read the whole group"). With id in
-- the index the scan returns the items in the claim's order and stops after n due ones, as
-- SQLite's index (which ends with the row ID) always did.
--
-- The table is locked first, against reads too, for the whole migration (a few seconds per
-- million pending items): building the indexes under a lock against writes only, then dropping
-- the old ones, would have to strengthen the lock midway, and a claim of a replica of the previous
-- release (a row lock taken, its delete waiting for the build) would deadlock with it.
LOCK TABLE items IN ACCESS EXCLUSIVE MODE;
CREATE INDEX items_group_order_by_id ON items (account, task, fingerprint, first_seen, id);
CREATE INDEX items_urgent_by_id ON items (account, task, fingerprint, first_seen, id) WHERE priority > 0;
DROP INDEX items_group_order;
DROP INDEX items_urgent;
ALTER INDEX items_group_order_by_id RENAME TO items_group_order;
ALTER INDEX items_urgent_by_id RENAME TO items_urgent;
