-- 0002: indexes for retention (Store.Prune), so each kind of row is found
-- oldest first without scanning the table, and a batch of 1,000 costs the
-- same in a table of a thousand rows or of millions. Each adds one small
-- entry per insert, appended at the end of its index (times grow).

-- Verified and refused deliveries have their own retention, so each has its
-- own index; an index on a rowid table ends with the rowid, so these also
-- order ties by id. Partial, not one index on (verified, received_at): the
-- planner would take that one for ListDeliveries' "verified = 1 ORDER BY id
-- DESC" and sort every verified delivery, where it now scans the primary key
-- from the end. Prune names them with INDEXED BY, since without statistics
-- the planner prefers deliveries_refused and a sort for refused ones.
CREATE INDEX deliveries_verified_age ON deliveries (received_at) WHERE verified = 1;
CREATE INDEX deliveries_refused_age ON deliveries (received_at) WHERE verified = 0;
-- Webhook-id claims, by the time they were first claimed.
CREATE INDEX webhook_ids_at ON webhook_ids (at);
-- Held observations, by the time they were received.
CREATE INDEX held_at ON held (at);
