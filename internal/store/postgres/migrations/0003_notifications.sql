-- 0003: the notifications outbox. A row is written in the transaction of
-- the status change it reports, one per (event, URL); senders lease due rows
-- with FOR UPDATE SKIP LOCKED, record every attempt in
-- notification_attempts and set the row's outcome.
CREATE TABLE notifications (
    id              bigserial   PRIMARY KEY, -- per model, commit order: transitions of one model serialise on its row
    event_id        text        NOT NULL,    -- the webhook-id, shared by the rows of one event
    model_id        text        NOT NULL REFERENCES models (id),
    type            text        NOT NULL,
    sequence        bigint      NOT NULL,
    url             text        NOT NULL,
    model           json        NOT NULL, -- json, not jsonb: kept byte for byte, so the payload shows fields in the API's order
    status          text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    created_at      timestamptz NOT NULL,
    retry_since     timestamptz NOT NULL,
    next_attempt_at timestamptz,
    lease           text        NOT NULL DEFAULT '',
    lease_until     timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    last_status     integer     NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    UNIQUE (event_id, url)
);
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX notifications_model_url ON notifications (model_id, url, id) WHERE status = 'pending';
CREATE INDEX notifications_model_seq ON notifications (model_id, sequence);
CREATE INDEX notifications_status ON notifications (status, id);

CREATE TABLE notification_attempts (
    id              bigserial   PRIMARY KEY,
    notification_id bigint      NOT NULL REFERENCES notifications (id),
    at              timestamptz NOT NULL,
    status_code     integer     NOT NULL DEFAULT 0,
    latency_ns      bigint      NOT NULL DEFAULT 0,
    error           text        NOT NULL DEFAULT ''
);
CREATE INDEX notification_attempts_of ON notification_attempts (notification_id, id);

-- A model's own notification URL (POST /api/models "notify_url"), on top of
-- the configured ones; checked against TRAINHOOK_NOTIFY_ALLOWED_ORIGINS
-- before it is stored.
CREATE TABLE model_notify_urls (
    model_id TEXT NOT NULL PRIMARY KEY REFERENCES models (id),
    url      TEXT NOT NULL
);
