-- The queue's figures without reading the queue: how many items are pending, and how many of them
-- urgent, per account and per second of their due time. /queue, /metrics and the status page sum
-- these rows and count only the items falling due in the current second, so a read costs the same
-- at 10 and at 1,000,000 pending items.
--
-- Statement triggers append one row per (account, second) a statement changed, with the change:
-- rows are only ever appended by the writers, so replicas committing at once never wait for each
-- other on a counter row (one row per second would make every replica's commit wait for the
-- others'). The leader folds the rows of each (account, second) that has several into one, every
-- 10 s (`Store::fold_item_counts`): a delete and an insert of the sums in one statement, so every
-- snapshot sees the same totals, and two folds at once cannot count a row twice (a row is deleted
-- by one of them only).
-- Replicas of the previous release may still be writing: nothing changes items between the
-- counts read below and the triggers that keep them from then on.
LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE item_counts (
    account    TEXT   NOT NULL,
    due_second BIGINT NOT NULL,
    items      BIGINT NOT NULL,
    urgent     BIGINT NOT NULL
);

INSERT INTO item_counts (account, due_second, items, urgent)
SELECT account, due_at / 1000, COUNT(*), COUNT(*) FILTER (WHERE priority > 0)
FROM items GROUP BY account, due_at / 1000;

CREATE FUNCTION item_counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO item_counts (account, due_second, items, urgent)
        SELECT account, due_at / 1000, COUNT(*), COUNT(*) FILTER (WHERE priority > 0)
        FROM new_items GROUP BY account, due_at / 1000;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO item_counts (account, due_second, items, urgent)
        SELECT account, due_at / 1000, -COUNT(*), -COUNT(*) FILTER (WHERE priority > 0)
        FROM old_items GROUP BY account, due_at / 1000;
    ELSE
        INSERT INTO item_counts (account, due_second, items, urgent)
        SELECT account, due_second, SUM(n), SUM(u) FROM (
            SELECT account, due_at / 1000 AS due_second, -1 AS n,
                   -(CASE WHEN priority > 0 THEN 1 ELSE 0 END) AS u
            FROM old_items
            UNION ALL
            SELECT account, due_at / 1000, 1, CASE WHEN priority > 0 THEN 1 ELSE 0 END
            FROM new_items
        ) AS d
        GROUP BY account, due_second HAVING SUM(n) <> 0 OR SUM(u) <> 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER item_counts_insert AFTER INSERT ON items
    REFERENCING NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_change();
CREATE TRIGGER item_counts_update AFTER UPDATE ON items
    REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_change();
CREATE TRIGGER item_counts_delete AFTER DELETE ON items
    REFERENCING OLD TABLE AS old_items
    FOR EACH STATEMENT EXECUTE FUNCTION item_counts_change();

-- Each account's oldest pending item is one seek (the figures are per account); the oldest of all
-- is the least of the accounts'. Nothing reads the due items of every account at once any more
-- (each lane reads its own through items_account_due), so items_due goes: one index entry fewer
-- for every item stored and every merge. The indexes are dropped last: a DROP INDEX locks the
-- table against reads too, until the migration commits.
CREATE INDEX items_account_first_seen ON items (account, first_seen);
DROP INDEX items_first_seen;
DROP INDEX items_due;
