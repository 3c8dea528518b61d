-- Pending items: one row per (media ID, task, options fingerprint) not yet claimed into a job.
CREATE TABLE items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    media_id    TEXT    NOT NULL,
    task        TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    options     TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    events      INTEGER NOT NULL DEFAULT 1,
    UNIQUE (media_id, task, fingerprint)
);
CREATE INDEX items_group_due ON items (task, fingerprint, due_at);
CREATE INDEX items_due ON items (due_at);
CREATE INDEX items_media ON items (media_id);

-- One row per RefreshMediaPlayUrls batch.
CREATE TABLE jobs (
    id              TEXT    PRIMARY KEY,
    task            TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    options         TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    dry_run         INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    -- Start of the retry budget (max_age): creation, or the last operator retry.
    budget_from     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    vod_job_id      TEXT,
    request_id      TEXT,
    error_code      TEXT,
    error_message   TEXT
);
CREATE INDEX jobs_status ON jobs (status, next_attempt_at);
CREATE INDEX jobs_created ON jobs (created_at);

-- The media IDs of a job and what became of each.
CREATE TABLE job_items (
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    position   INTEGER NOT NULL,
    media_id   TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX job_items_media ON job_items (media_id);

-- Delivery IDs seen recently, with the answer given, for redelivery detection.
CREATE TABLE deliveries (
    source      TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    receipt     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE INDEX deliveries_expiry ON deliveries (expires_at);
