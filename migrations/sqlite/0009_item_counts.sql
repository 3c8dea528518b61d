-- The queue's figures without reading the queue: how many items are pending, and how many of them
-- urgent, per account and per second of their stored due time, kept by triggers on `items` in the
-- transaction that changes an item. /queue, /metrics and the status page sum these rows (one per
-- second that some pending item falls due in) and count only the items falling due in the current
-- second, so a read costs the same at 10 and at 1,000,000 pending items.
--
-- Each trigger does a lookup and an in-place update; an UPSERT here would make every insert into
-- `items` keep a statement journal (measured: a third of the insert rate).
CREATE TABLE item_counts (
    account    TEXT    NOT NULL,
    due_second INTEGER NOT NULL,
    items      INTEGER NOT NULL,
    urgent     INTEGER NOT NULL,
    PRIMARY KEY (account, due_second)
) WITHOUT ROWID;

INSERT INTO item_counts (account, due_second, items, urgent)
SELECT account, due_at / 1000, COUNT(*), SUM(priority > 0) FROM items GROUP BY account, due_at / 1000;

CREATE TRIGGER item_counts_insert AFTER INSERT ON items BEGIN
    INSERT OR IGNORE INTO item_counts (account, due_second, items, urgent)
    VALUES (NEW.account, NEW.due_at / 1000, 0, 0);
    UPDATE item_counts SET items = items + 1, urgent = urgent + (NEW.priority > 0)
    WHERE account = NEW.account AND due_second = NEW.due_at / 1000;
END;

CREATE TRIGGER item_counts_delete AFTER DELETE ON items BEGIN
    UPDATE item_counts SET items = items - 1, urgent = urgent - (OLD.priority > 0)
    WHERE account = OLD.account AND due_second = OLD.due_at / 1000;
    DELETE FROM item_counts
    WHERE account = OLD.account AND due_second = OLD.due_at / 1000 AND items = 0;
END;

-- Only when the item changes second or urgency (a fold that writes the same due time does not).
CREATE TRIGGER item_counts_update AFTER UPDATE OF account, due_at, priority ON items
WHEN OLD.account <> NEW.account OR OLD.due_at / 1000 <> NEW.due_at / 1000
     OR (OLD.priority > 0) <> (NEW.priority > 0)
BEGIN
    UPDATE item_counts SET items = items - 1, urgent = urgent - (OLD.priority > 0)
    WHERE account = OLD.account AND due_second = OLD.due_at / 1000;
    DELETE FROM item_counts
    WHERE account = OLD.account AND due_second = OLD.due_at / 1000 AND items = 0;
    INSERT OR IGNORE INTO item_counts (account, due_second, items, urgent)
    VALUES (NEW.account, NEW.due_at / 1000, 0, 0);
    UPDATE item_counts SET items = items + 1, urgent = urgent + (NEW.priority > 0)
    WHERE account = NEW.account AND due_second = NEW.due_at / 1000;
END;

-- Each account's oldest pending item is one seek (the figures are per account); the oldest of all
-- is the least of the accounts'. Nothing reads the due items of every account at once any more
-- (each lane reads its own through items_account_due), so items_due goes: one index entry fewer
-- for every item stored.
DROP INDEX items_first_seen;
CREATE INDEX items_account_first_seen ON items (account, first_seen);
DROP INDEX items_due;
