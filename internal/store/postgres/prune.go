package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/trainhook/trainhook/internal/store"
)

// Each batch is one statement, so one transaction: it locks the oldest rows
// of its kind (at most the batch's rows) with FOR UPDATE SKIP LOCKED and
// deletes them. Instances pruning at the same time take different rows
// instead of waiting for each other, and each counts only what it deleted;
// a batch that finds fewer rows than its bound (the others are another
// instance's, or there are none) ends the loop. The indexes of migration
// 0002 make each batch's cost independent of the table's size.
//
// The payload bytes bound matters here too: deleting a row also deletes its
// out-of-line (TOAST) chunks, about one per 2 KB of payload. octet_length
// reads a TOASTed value's size from its pointer, without fetching it.
const (
	// $1 before, $2 rows, $3 bytes. The condition on verified is written
	// out, so that the planner may use the partial index of that kind.
	pruneVerifiedByAge = `WITH old AS (
	SELECT id, received_at, coalesce(octet_length(payload), 0)::bigint AS n FROM deliveries
	WHERE verified AND received_at < $1
	ORDER BY received_at, id LIMIT $2
	FOR UPDATE SKIP LOCKED
), ` + pickAndDelete
	pruneRefusedByAge = `WITH old AS (
	SELECT id, received_at, coalesce(octet_length(payload), 0)::bigint AS n FROM deliveries
	WHERE NOT verified AND received_at < $1
	ORDER BY received_at, id LIMIT $2
	FOR UPDATE SKIP LOCKED
), ` + pickAndDelete
	// pickAndDelete takes the oldest of them while the payload bytes before
	// each are 0 or the total stays within $3, deletes those, and answers
	// how many were selected, picked and deleted, and their bytes.
	pickAndDelete = `picked AS (
	SELECT id, n FROM (SELECT id, n, sum(n) OVER (ORDER BY received_at, id) - n AS before FROM old) w
	WHERE before = 0 OR before + n <= $3
), gone AS (
	DELETE FROM deliveries d USING picked WHERE d.id = picked.id RETURNING picked.n
)
SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM picked), count(*), coalesce(sum(n), 0)::bigint FROM gone`

	// $1 last id, $2 rows, $3 bytes: refused deliveries up to $1, oldest
	// first by id (which stands in for received_at in pickAndDelete's order).
	pruneRefusedOver = `WITH old AS (
	SELECT id, id AS received_at, coalesce(octet_length(payload), 0)::bigint AS n FROM deliveries
	WHERE NOT verified AND id <= $1
	ORDER BY id LIMIT $2
	FOR UPDATE SKIP LOCKED
), ` + pickAndDelete

	pruneClaims = `WITH old AS (
	SELECT webhook_id FROM webhook_ids WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
	DELETE FROM webhook_ids w USING old WHERE w.webhook_id = old.webhook_id RETURNING 1
)
SELECT count(*) FROM gone`

	pruneHeld = `WITH old AS (
	SELECT id FROM held WHERE at < $1 ORDER BY at, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM held h USING old WHERE h.id = old.id RETURNING h.training_id`

	// pruneNotifications deletes finished notifications, oldest first, up
	// to the first one created at or after the cutoff, with their attempts.
	// The outbox has no index on its creation time (one more to write in
	// every delivery's transaction); ids follow commit order closely, so
	// the walk from the lowest id ends at the first new row, and a row that
	// committed out of order goes at a later prune.
	pruneNotifications = `WITH bound AS (
	SELECT coalesce((SELECT id FROM notifications WHERE created_at >= $1 ORDER BY id LIMIT 1), 9223372036854775807) AS id
), old AS (
	SELECT n.id FROM notifications n, bound WHERE n.id < bound.id AND n.status <> 'pending'
	ORDER BY n.id LIMIT $2 FOR UPDATE OF n SKIP LOCKED
), attempts AS (
	DELETE FROM notification_attempts a USING old WHERE a.notification_id = old.id
), gone AS (
	DELETE FROM notifications n USING old WHERE n.id = old.id RETURNING 1
)
SELECT count(*) FROM gone`
)

// Prune deletes old rows in batches; see the statements above.
func (s *Store) Prune(ctx context.Context, p store.PrunePolicy) (store.Pruned, error) {
	var out store.Pruned
	rows, maxBytes := p.Batch()
	// deliveries runs a delivery statement until a batch finds less than
	// it may take: fewer rows than the bound, and all within the bytes.
	deliveries := func(what string, counter *int64, q string, args ...any) error {
		for {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("prune %s: %w", what, err)
			}
			var selected, picked, n, bytes int64
			if err := s.pool.QueryRow(ctx, q, args...).Scan(&selected, &picked, &n, &bytes); err != nil {
				return fmt.Errorf("prune %s on %s: %w", what, s.desc, err)
			}
			out.Batches++
			*counter += n
			out.PayloadBytes += bytes
			if selected < int64(rows) && picked == selected {
				return nil
			}
		}
	}
	if !p.RefusedBefore.IsZero() {
		if err := deliveries("refused deliveries", &out.Refused, pruneRefusedByAge, p.RefusedBefore, rows, maxBytes); err != nil {
			return out, err
		}
	}
	if p.RefusedKeep > 0 {
		// The newest refused delivery beyond the cap; those after it stay.
		// Deliveries refused meanwhile get higher ids, so the bound holds
		// for the whole loop.
		var last int64
		err := s.pool.QueryRow(ctx, `SELECT id FROM deliveries WHERE NOT verified ORDER BY id DESC OFFSET $1 LIMIT 1`, p.RefusedKeep).Scan(&last)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // no more than RefusedKeep
		case err != nil:
			return out, fmt.Errorf("prune refused deliveries beyond the newest %d on %s: %w", p.RefusedKeep, s.desc, err)
		default:
			if err := deliveries("refused deliveries beyond the cap", &out.RefusedOver, pruneRefusedOver, last, rows, maxBytes); err != nil {
				return out, err
			}
		}
	}
	if !p.VerifiedBefore.IsZero() {
		if err := deliveries("verified deliveries", &out.Verified, pruneVerifiedByAge, p.VerifiedBefore, rows, maxBytes); err != nil {
			return out, err
		}
	}
	if !p.ClaimsBefore.IsZero() {
		for {
			if err := ctx.Err(); err != nil {
				return out, fmt.Errorf("prune webhook-id claims: %w", err)
			}
			var n int64
			if err := s.pool.QueryRow(ctx, pruneClaims, p.ClaimsBefore, rows).Scan(&n); err != nil {
				return out, fmt.Errorf("prune webhook-id claims on %s: %w", s.desc, err)
			}
			out.Batches++
			out.Claims += n
			if n < int64(rows) {
				break
			}
		}
	}
	if !p.HeldBefore.IsZero() {
		for {
			if err := ctx.Err(); err != nil {
				return out, fmt.Errorf("prune held observations: %w", err)
			}
			rs, err := s.pool.Query(ctx, pruneHeld, p.HeldBefore, rows)
			var ids []string
			if err == nil {
				ids, err = pgx.CollectRows(rs, pgx.RowTo[string])
			}
			if err != nil {
				return out, fmt.Errorf("prune held observations on %s: %w", s.desc, err)
			}
			out.Batches++
			out.Held += int64(len(ids))
			out.AddHeldIDs(ids...)
			if len(ids) < rows {
				break
			}
		}
	}
	if !p.NotificationsBefore.IsZero() {
		for {
			if err := ctx.Err(); err != nil {
				return out, fmt.Errorf("prune notifications: %w", err)
			}
			var n int64
			if err := s.pool.QueryRow(ctx, pruneNotifications, p.NotificationsBefore, rows).Scan(&n); err != nil {
				return out, fmt.Errorf("prune notifications on %s: %w", s.desc, err)
			}
			out.Batches++
			out.Notifications += n
			if n < int64(rows) {
				break
			}
		}
	}
	return out, nil
}
