-- 0002: indexes for retention (Store.Prune), so each kind of row is found
-- oldest first without scanning the table, and a batch of 1,000 costs the
-- same in a table of a thousand rows or of millions. Each adds one small
-- entry per insert, appended at the end of its index (times grow).
--
-- Building them takes a lock that blocks writes to these tables for as long
-- as the build (seconds for millions of deliveries: only the small columns
-- are read, not the payloads).

-- Verified and refused deliveries have their own retention, so each has its
-- own index (as in SQLite, whose planner would otherwise list verified
-- deliveries through a combined one); id orders ties.
CREATE INDEX deliveries_verified_age ON deliveries (received_at, id) WHERE verified;
CREATE INDEX deliveries_refused_age ON deliveries (received_at, id) WHERE NOT verified;
-- Webhook-id claims, by the time they were first claimed.
CREATE INDEX webhook_ids_at ON webhook_ids (at);
-- Held observations, by the time they were received.
CREATE INDEX held_at ON held (at, id);
