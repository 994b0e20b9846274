-- 0003: the notifications outbox. A row is written in the transaction of
-- the status change it reports, one per (event, URL); the sender leases due
-- rows, records every attempt in notification_attempts and sets the row's
-- outcome. Times are INTEGER unix nanoseconds, as elsewhere.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: commit order per model, and a public cursor
    event_id        TEXT    NOT NULL,                  -- the webhook-id, shared by the rows of one event
    model_id        TEXT    NOT NULL REFERENCES models (id),
    type            TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    url             TEXT    NOT NULL,
    model           TEXT    NOT NULL,                  -- the model as the payload shows it, JSON
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    created_at      INTEGER NOT NULL,
    retry_since     INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease           TEXT    NOT NULL DEFAULT '',
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    last_status     INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER,
    UNIQUE (event_id, url)
);
-- The claim walks pending rows by due time; the ordering check looks up an
-- earlier pending row of the same model and URL.
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX notifications_model_url ON notifications (model_id, url, id) WHERE status = 'pending';
CREATE INDEX notifications_model_seq ON notifications (model_id, sequence);
CREATE INDEX notifications_status ON notifications (status, id);

CREATE TABLE notification_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL REFERENCES notifications (id),
    at              INTEGER NOT NULL,
    status_code     INTEGER NOT NULL DEFAULT 0,
    latency_ns      INTEGER NOT NULL DEFAULT 0,
    error           TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX notification_attempts_of ON notification_attempts (notification_id, id);

-- A model's own notification URL (POST /api/models "notify_url"), on top of
-- the configured ones; checked against TRAINHOOK_NOTIFY_ALLOWED_ORIGINS
-- before it is stored.
CREATE TABLE model_notify_urls (
    model_id TEXT NOT NULL PRIMARY KEY REFERENCES models (id),
    url      TEXT NOT NULL
);
