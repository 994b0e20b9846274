-- 0001: the first schema.
--
-- Times are INTEGER unix nanoseconds (UTC), so they sort and compare as
-- numbers; NULL stands for Go's zero time or a nil pointer. JSON values are
-- TEXT, checked with json_valid so one bad value can never break a listing.
-- Empty strings, not NULLs, stand for absent text values.

CREATE TABLE models (
    id               TEXT    NOT NULL PRIMARY KEY, -- lower-case ULID: sorts by creation time
    name             TEXT    NOT NULL,
    name_fold        TEXT    NOT NULL,             -- name lower-cased by Go (Unicode), for ListModels' Query
    training_id      TEXT    NOT NULL DEFAULT '',
    trainer          TEXT    NOT NULL DEFAULT '',
    destination      TEXT    NOT NULL DEFAULT '',
    input            TEXT    CHECK (input IS NULL OR json_valid(input)),
    status           TEXT    NOT NULL,
    remote_status    TEXT    NOT NULL DEFAULT '',
    output           TEXT    CHECK (output IS NULL OR json_valid(output)),
    error            TEXT    NOT NULL DEFAULT '',
    progress_percent REAL    NOT NULL DEFAULT 0,
    progress_step    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER NOT NULL DEFAULT 0,
    log_tail         TEXT    NOT NULL DEFAULT '',
    log_len          INTEGER NOT NULL DEFAULT 0,
    metadata         TEXT    CHECK (metadata IS NULL OR json_valid(metadata)),
    flagged          INTEGER NOT NULL DEFAULT 0 CHECK (flagged IN (0, 1)),
    idempotency_key  TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER,
    started_at       INTEGER,
    completed_at     INTEGER,
    updated_at       INTEGER,
    next_check_at    INTEGER,
    check_attempts   INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL
);

-- Unique only when set: many models have no training id or key yet. Queries
-- must repeat "<> ''" for SQLite to use these partial indexes.
CREATE UNIQUE INDEX models_training_id ON models (training_id) WHERE training_id <> '';
CREATE UNIQUE INDEX models_idempotency_key ON models (idempotency_key) WHERE idempotency_key <> '';
-- ListModels by status, newest first, with a keyset cursor on id.
CREATE INDEX models_status_id ON models (status, id);
-- ClaimDue: only rows a poller may want are in it. Queries must repeat this
-- WHERE clause word for word for SQLite to use the index. It says "<>"
-- three times rather than NOT IN (...): SQLite evaluates a partial index's
-- WHERE on every write of a row, and an IN list builds a temporary b-tree
-- each time, which made UpdateModel several times slower.
CREATE INDEX models_due ON models (next_check_at, id)
    WHERE next_check_at IS NOT NULL AND status <> 'Ready' AND status <> 'Failed' AND status <> 'Canceled';

CREATE TABLE history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: order of application
    model_id      TEXT    NOT NULL REFERENCES models (id),
    from_status   TEXT    NOT NULL,
    to_status     TEXT    NOT NULL,
    remote_status TEXT    NOT NULL DEFAULT '',
    decision      TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    source_ref    TEXT    NOT NULL DEFAULT '',
    note          TEXT    NOT NULL DEFAULT '',
    at            INTEGER
);
-- An index on a rowid table ends with the rowid, so this also orders by id.
CREATE INDEX history_model ON history (model_id);

-- Every webhook request as received. No foreign key on model_id: a refused
-- delivery may name a model that does not exist.
CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: it is a public cursor
    webhook_id    TEXT    NOT NULL DEFAULT '',
    received_at   INTEGER,
    verified      INTEGER NOT NULL CHECK (verified IN (0, 1)),
    reason        TEXT    NOT NULL DEFAULT '',
    outcome       TEXT    NOT NULL DEFAULT '',
    training_id   TEXT    NOT NULL DEFAULT '',
    model_id      TEXT    NOT NULL DEFAULT '',
    remote_status TEXT    NOT NULL DEFAULT '',
    timestamp     TEXT    NOT NULL DEFAULT '', -- webhook-timestamp header as received
    signature     TEXT    NOT NULL DEFAULT '', -- webhook-signature header as received
    replay_of     INTEGER NOT NULL DEFAULT 0,  -- the delivery this one replayed; 0: none
    payload       BLOB    -- last, so reading the other columns never touches its overflow pages
);
CREATE INDEX deliveries_outcome ON deliveries (outcome);
CREATE INDEX deliveries_model ON deliveries (model_id);
-- Refused deliveries are rare and the interesting ones to list; verified
-- ones are nearly all rows, so a scan of the primary key finds them fast.
CREATE INDEX deliveries_refused ON deliveries (verified) WHERE verified = 0;

-- Webhook ids already processed, for dedupe.
CREATE TABLE webhook_ids (
    webhook_id TEXT    NOT NULL PRIMARY KEY,
    at         INTEGER
) WITHOUT ROWID;

-- Verified reports about training ids no model has yet, oldest first by id.
CREATE TABLE held (
    id          INTEGER PRIMARY KEY,
    training_id TEXT    NOT NULL,
    observation TEXT    NOT NULL CHECK (json_valid(observation)),
    at          INTEGER
);
CREATE INDEX held_training ON held (training_id);

CREATE TABLE settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
