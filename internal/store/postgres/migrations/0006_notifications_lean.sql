-- 0006: two fewer indexes to write for every notification, in the
-- transaction of the change it reports. UNIQUE (event_id, url) is never read
-- (an event's id is new and its URLs are distinct before they are written),
-- and the list's status filter only needs an index for the rare failed
-- rows: pending rows are in notifications_due, delivered rows are most of
-- the table.
ALTER TABLE notifications DROP CONSTRAINT notifications_event_id_url_key;
DROP INDEX notifications_status;
CREATE INDEX notifications_failed ON notifications (id) WHERE status = 'failed';
