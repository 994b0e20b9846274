-- 0006: two fewer b-trees to write for every notification, in the
-- transaction of the change it reports. The UNIQUE (event_id, url) index is
-- never read (an event's id is new and its URLs are distinct before they
-- are written), and the list's status filter only needs an index for the
-- rare failed rows: pending rows are in notifications_due, delivered rows
-- are most of the table. SQLite cannot drop a table constraint, so the
-- table is rebuilt and its attempts refer to the copy by name.
-- migrate: rebuilds a table; foreign keys are checked before commit

CREATE TABLE notifications_new (
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
    delivered_at    INTEGER
);
INSERT INTO notifications_new (id, event_id, model_id, type, sequence, url, model, status, created_at, retry_since,
    next_attempt_at, lease, lease_until, attempts, last_error, last_status, delivered_at)
SELECT id, event_id, model_id, type, sequence, url, model, status, created_at, retry_since,
    next_attempt_at, lease, lease_until, attempts, last_error, last_status, delivered_at
FROM notifications;
-- AUTOINCREMENT's high-water mark moves with the rows: ids stay unique.
DELETE FROM sqlite_sequence WHERE name = 'notifications_new';
UPDATE sqlite_sequence SET name = 'notifications_new' WHERE name = 'notifications';
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;

CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX notifications_model_seq ON notifications (model_id, sequence);
CREATE INDEX notifications_failed ON notifications (id) WHERE status = 'failed';
