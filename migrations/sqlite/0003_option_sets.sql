-- Each distinct option set is stored once, under its fingerprint, instead of in every pending item.
-- The options JSON was more than half of an item row, and item rows are what ingest writes: a
-- smaller row means fewer pages written and synced per group commit.
--
-- The items table is rebuilt without that column and without AUTOINCREMENT, which updated
-- sqlite_sequence on every insert. Nothing outside this table refers to an item's id; the id only
-- breaks ties in the order of first_seen, and a new id is still larger than every pending one.
CREATE TABLE option_sets (
    fingerprint TEXT PRIMARY KEY,
    options     TEXT NOT NULL
) WITHOUT ROWID;

INSERT OR IGNORE INTO option_sets (fingerprint, options)
SELECT fingerprint, options FROM items;

CREATE TABLE items_v3 (
    id          INTEGER PRIMARY KEY,
    media_id    TEXT    NOT NULL,
    task        TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    events      INTEGER NOT NULL DEFAULT 1,
    UNIQUE (media_id, task, fingerprint)
);

INSERT INTO items_v3 (id, media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events)
SELECT id, media_id, task, fingerprint, source, first_seen, last_seen, deadline, due_at, events FROM items;

DROP TABLE items;
ALTER TABLE items_v3 RENAME TO items;

CREATE INDEX items_due ON items (due_at, task, fingerprint, media_id);
CREATE INDEX items_group_order ON items (task, fingerprint, first_seen);
CREATE INDEX items_first_seen ON items (first_seen);
