-- Several VOD accounts from one deployment: an item and a job belong to one account ('default'
-- is the [vod] section's), and the account is part of an item's key: the same media ID in two
-- accounts is two items. Existing rows belong to 'default'. SQLite cannot change a table's UNIQUE
-- constraint in place, so the items table is rebuilt (its ids kept: the merge log names them).
-- The key leads with the media ID, so that /media/{id} finds an ID's items in it.
-- items_account_due serves each account's lane: its due groups and its next due time, read
-- without walking another account's due items (one held on its quota may have many).
CREATE TABLE items_v8 (
    id          INTEGER PRIMARY KEY,
    account     TEXT    NOT NULL,
    media_id    TEXT    NOT NULL,
    task        TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    events      INTEGER NOT NULL DEFAULT 1,
    priority    INTEGER NOT NULL DEFAULT 0,
    quiet       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (media_id, account, task, fingerprint)
);

INSERT INTO items_v8 (id, account, media_id, task, fingerprint, source, first_seen, last_seen,
                      deadline, due_at, events, priority, quiet)
SELECT id, 'default', media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at,
       events, priority, quiet
FROM items;

DROP TABLE items;
ALTER TABLE items_v8 RENAME TO items;

CREATE INDEX items_due ON items (due_at, account, task, fingerprint, media_id);
CREATE INDEX items_group_order ON items (account, task, fingerprint, first_seen);
CREATE INDEX items_first_seen ON items (first_seen);
CREATE INDEX items_urgent ON items (account, task, fingerprint, first_seen) WHERE priority > 0;
CREATE INDEX items_account_due ON items (account, due_at, task, fingerprint, media_id);

ALTER TABLE jobs ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
DROP INDEX jobs_held;
CREATE INDEX jobs_held ON jobs (account, quota, next_attempt_at) WHERE status = 'held';
