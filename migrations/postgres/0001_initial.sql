-- The same schema as migrations/sqlite/0001_initial.sql, in PostgreSQL's types. Times are BIGINT
-- epoch milliseconds, as there, so both backends compute due times with the same arithmetic.
-- Text keys are compared in "C" collation: job IDs are UUIDv7 strings whose byte order is their
-- creation order, and `GET /jobs` pages by `id <` a cursor.

-- Pending items: one row per (media ID, task, options fingerprint) not yet claimed into a job.
CREATE TABLE items (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    media_id    TEXT    COLLATE "C" NOT NULL,
    task        TEXT    NOT NULL,
    fingerprint TEXT    COLLATE "C" NOT NULL,
    options     TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    first_seen  BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL,
    deadline    BIGINT  NOT NULL,
    due_at      BIGINT  NOT NULL,
    events      BIGINT  NOT NULL DEFAULT 1,
    UNIQUE (media_id, task, fingerprint)
);
CREATE INDEX items_group_due ON items (task, fingerprint, due_at);
CREATE INDEX items_due ON items (due_at);
CREATE INDEX items_media ON items (media_id);

-- One row per RefreshMediaPlayUrls batch.
CREATE TABLE jobs (
    id              TEXT    COLLATE "C" PRIMARY KEY,
    task            TEXT    NOT NULL,
    fingerprint     TEXT    COLLATE "C" NOT NULL,
    options         TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    dry_run         BOOLEAN NOT NULL DEFAULT FALSE,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    -- Start of the retry budget (max_age): creation, or the last operator retry.
    budget_from     BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    next_attempt_at BIGINT,
    lease_until     BIGINT,
    vod_job_id      TEXT,
    request_id      TEXT,
    error_code      TEXT,
    error_message   TEXT
);
CREATE INDEX jobs_status ON jobs (status, next_attempt_at);
CREATE INDEX jobs_created ON jobs (created_at);

-- The media IDs of a job and what became of each.
CREATE TABLE job_items (
    job_id     TEXT    COLLATE "C" NOT NULL REFERENCES jobs (id),
    position   BIGINT  NOT NULL,
    media_id   TEXT    COLLATE "C" NOT NULL,
    outcome    TEXT    NOT NULL,
    first_seen BIGINT  NOT NULL,
    events     BIGINT  NOT NULL,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX job_items_media ON job_items (media_id);

-- Delivery IDs seen recently, with the answer given, for redelivery detection.
CREATE TABLE deliveries (
    source      TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    receipt     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE INDEX deliveries_expiry ON deliveries (expires_at);
