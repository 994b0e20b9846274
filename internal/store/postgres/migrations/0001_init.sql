-- 0001: the first schema. It has the same tables, columns and meaning as
-- SQLite's 0001_init.sql, and the two files keep the same numbers: a change
-- to the schema is a new file in both directories.
--
-- Where the types differ from SQLite's:
--   * times are timestamptz (microseconds, UTC); NULL stands for Go's zero
--     time or a nil pointer;
--   * JSON values are json, not jsonb: json checks the syntax and keeps the
--     text exactly (spacing, key order, and \u0000, which jsonb refuses);
--   * flags are boolean, payloads bytea, counters bigint;
--   * ids are COLLATE "C", so they compare byte by byte whatever the
--     database's locale: ULIDs and keyset cursors sort as in SQLite.
-- Empty strings, not NULLs, stand for absent text values.

CREATE TABLE models (
    id               text COLLATE "C" NOT NULL PRIMARY KEY, -- lower-case ULID: sorts by creation time
    name             text   NOT NULL,
    name_fold        text   NOT NULL,             -- name lower-cased by Go (Unicode), for ListModels' Query
    training_id      text   NOT NULL DEFAULT '',
    trainer          text   NOT NULL DEFAULT '',
    destination      text   NOT NULL DEFAULT '',
    input            json,
    status           text   NOT NULL,
    remote_status    text   NOT NULL DEFAULT '',
    output           json,
    error            text   NOT NULL DEFAULT '',
    progress_percent double precision NOT NULL DEFAULT 0,
    progress_step    bigint NOT NULL DEFAULT 0,
    progress_total   bigint NOT NULL DEFAULT 0,
    log_tail         text   NOT NULL DEFAULT '',
    log_len          bigint NOT NULL DEFAULT 0,
    metadata         json,
    flagged          boolean NOT NULL DEFAULT false,
    idempotency_key  text   NOT NULL DEFAULT '',
    created_at       timestamptz,
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz,
    next_check_at    timestamptz,
    check_attempts   bigint NOT NULL DEFAULT 0,
    version          bigint NOT NULL
);

-- Unique only when set: many models have no training id or key yet.
CREATE UNIQUE INDEX models_training_id ON models (training_id) WHERE training_id <> '';
CREATE UNIQUE INDEX models_idempotency_key ON models (idempotency_key) WHERE idempotency_key <> '';
-- ListModels by status, newest first, with a keyset cursor on id.
CREATE INDEX models_status_id ON models (status, id);
-- ClaimDue: only rows a poller may want are in it. ClaimDue's query repeats
-- this WHERE clause so the planner can prove the index applies.
CREATE INDEX models_due ON models (next_check_at, id)
    WHERE next_check_at IS NOT NULL AND status NOT IN ('Ready', 'Failed', 'Canceled');

CREATE TABLE history (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- never reused: order of application
    model_id      text COLLATE "C" NOT NULL REFERENCES models (id),
    from_status   text NOT NULL,
    to_status     text NOT NULL,
    remote_status text NOT NULL DEFAULT '',
    decision      text NOT NULL,
    source        text NOT NULL,
    source_ref    text NOT NULL DEFAULT '',
    note          text NOT NULL DEFAULT '',
    at            timestamptz
);
-- Unlike SQLite's, a PostgreSQL index does not end with the row id: name it.
CREATE INDEX history_model ON history (model_id, id);

-- Every webhook request as received. No foreign key on model_id: a refused
-- delivery may name a model that does not exist.
CREATE TABLE deliveries (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- never reused: it is a public cursor
    webhook_id    text    NOT NULL DEFAULT '',
    received_at   timestamptz,
    verified      boolean NOT NULL,
    reason        text    NOT NULL DEFAULT '',
    outcome       text    NOT NULL DEFAULT '',
    training_id   text    NOT NULL DEFAULT '',
    model_id      text    NOT NULL DEFAULT '',
    remote_status text    NOT NULL DEFAULT '',
    timestamp     text    NOT NULL DEFAULT '', -- webhook-timestamp header as received
    signature     text    NOT NULL DEFAULT '', -- webhook-signature header as received
    replay_of     bigint  NOT NULL DEFAULT 0,  -- the delivery this one replayed; 0: none
    payload       bytea   -- large values live out of line (TOAST), so listing the others stays cheap
);
CREATE INDEX deliveries_outcome ON deliveries (outcome, id);
CREATE INDEX deliveries_model ON deliveries (model_id, id);
-- Refused deliveries are rare and the interesting ones to list; verified
-- ones are nearly all rows, so a scan of the primary key finds them fast.
CREATE INDEX deliveries_refused ON deliveries (id) WHERE NOT verified;

-- Webhook ids already processed, for dedupe.
CREATE TABLE webhook_ids (
    webhook_id text NOT NULL PRIMARY KEY,
    at         timestamptz
);

-- Verified reports about training ids no model has yet, oldest first by id.
CREATE TABLE held (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    training_id text NOT NULL,
    observation json NOT NULL,
    at          timestamptz
);
CREATE INDEX held_training ON held (training_id, id);

CREATE TABLE settings (
    name  text NOT NULL PRIMARY KEY,
    value text NOT NULL
);
