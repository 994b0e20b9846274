package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/store"
)

// Prune deletes old rows in batches, each its own Write: a batch holds the
// write lock for one small transaction, and the deliveries waiting for it
// go in between (Write's lock is a channel, and blocked senders are served
// in order). A batch reads the ids it deletes through the indexes of
// migration 0002, oldest first, so its cost does not grow with the table.
//
// Deleting a delivery frees its payload's overflow pages, which SQLite reads
// to follow their chain: hence the byte bound as well as the row bound. The
// freed pages are reused by later writes; the file does not shrink (VACUUM
// does that, offline).
func (s *Store) Prune(ctx context.Context, p store.PrunePolicy) (store.Pruned, error) {
	var out store.Pruned
	rows, maxBytes := p.Batch()
	deliveries := func(what string, counter *int64, sel string, args ...any) error {
		return s.pruneLoop(ctx, &out, what, func(t *tx) (pruneBatch, error) {
			return t.deleteDeliveries(ctx, sel, rows, maxBytes, args...)
		}, func(b pruneBatch) {
			*counter += b.rows
			out.PayloadBytes += b.bytes
		})
	}
	if !p.RefusedBefore.IsZero() {
		if err := deliveries("refused deliveries", &out.Refused, `SELECT id, coalesce(length(payload), 0) FROM deliveries INDEXED BY deliveries_refused_age
WHERE verified = 0 AND received_at < ? ORDER BY received_at LIMIT ?`, cutoff(p.RefusedBefore), rows); err != nil {
			return out, err
		}
	}
	if p.RefusedKeep > 0 {
		// The newest refused delivery beyond the cap; those after it stay.
		// Deliveries refused meanwhile get higher ids, so the bound holds
		// for the whole loop.
		var last int64
		err := s.r.QueryRowContext(ctx, `SELECT id FROM deliveries WHERE verified = 0 ORDER BY id DESC LIMIT 1 OFFSET ?`, p.RefusedKeep).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows): // no more than RefusedKeep
		case err != nil:
			return out, fmt.Errorf("prune refused deliveries beyond the newest %d: %w", p.RefusedKeep, err)
		default:
			if err := deliveries("refused deliveries beyond the cap", &out.RefusedOver, `SELECT id, coalesce(length(payload), 0) FROM deliveries
WHERE verified = 0 AND id <= ? ORDER BY id LIMIT ?`, last, rows); err != nil {
				return out, err
			}
		}
	}
	if !p.VerifiedBefore.IsZero() {
		if err := deliveries("verified deliveries", &out.Verified, `SELECT id, coalesce(length(payload), 0) FROM deliveries INDEXED BY deliveries_verified_age
WHERE verified = 1 AND received_at < ? ORDER BY received_at LIMIT ?`, cutoff(p.VerifiedBefore), rows); err != nil {
			return out, err
		}
	}
	if !p.ClaimsBefore.IsZero() {
		err := s.pruneLoop(ctx, &out, "webhook-id claims", func(t *tx) (pruneBatch, error) {
			c, err := t.pruneCtx(ctx)
			if err != nil {
				return pruneBatch{}, err
			}
			res, err := t.s.wc.ExecContext(c, `DELETE FROM webhook_ids WHERE webhook_id IN (
	SELECT webhook_id FROM webhook_ids WHERE at < ? ORDER BY at LIMIT ?)`, cutoff(p.ClaimsBefore), rows)
			if err != nil {
				return pruneBatch{}, t.failed(err)
			}
			n, err := res.RowsAffected()
			return pruneBatch{rows: n, more: n == int64(rows)}, err
		}, func(b pruneBatch) { out.Claims += b.rows })
		if err != nil {
			return out, err
		}
	}
	if !p.HeldBefore.IsZero() {
		err := s.pruneLoop(ctx, &out, "held observations", func(t *tx) (pruneBatch, error) {
			c, err := t.pruneCtx(ctx)
			if err != nil {
				return pruneBatch{}, err
			}
			rs, err := t.s.wc.QueryContext(c, `DELETE FROM held WHERE id IN (
	SELECT id FROM held WHERE at < ? ORDER BY at LIMIT ?) RETURNING training_id`, cutoff(p.HeldBefore), rows)
			if err != nil {
				return pruneBatch{}, t.failed(err)
			}
			defer rs.Close()
			var b pruneBatch
			for rs.Next() {
				var id string
				if err := rs.Scan(&id); err != nil {
					return pruneBatch{}, err
				}
				b.trainingIDs = append(b.trainingIDs, id)
			}
			if err := rs.Err(); err != nil {
				return pruneBatch{}, t.failed(err)
			}
			b.rows = int64(len(b.trainingIDs))
			b.more = b.rows == int64(rows)
			return b, nil
		}, func(b pruneBatch) {
			out.Held += b.rows
			out.AddHeldIDs(b.trainingIDs...)
		})
		if err != nil {
			return out, err
		}
	}
	if !p.NotificationsBefore.IsZero() {
		err := s.pruneLoop(ctx, &out, "notifications", func(t *tx) (pruneBatch, error) {
			return t.deleteNotifications(ctx, cutoff(p.NotificationsBefore), rows)
		}, func(b pruneBatch) { out.Notifications += b.rows })
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// pruneNotificationsSQL selects finished notifications, oldest first, up to
// the first one created at or after the cutoff. The outbox has no index on
// its creation time (one more b-tree to write in every delivery's
// transaction), but ids follow commit order, so the walk from the lowest id
// ends at the first new row instead of reading the whole table; a row that
// committed out of order goes at a later prune.
const pruneNotificationsSQL = `SELECT id FROM notifications
WHERE id < coalesce((SELECT id FROM notifications WHERE created_at >= ?1 ORDER BY id LIMIT 1), 9223372036854775807)
  AND status <> 'pending'
ORDER BY id LIMIT ?2`

// deleteNotifications deletes a batch of finished notifications created
// before cutoff, with their attempts.
func (t *tx) deleteNotifications(ctx context.Context, cutoff int64, rows int) (pruneBatch, error) {
	c, err := t.pruneCtx(ctx)
	if err != nil {
		return pruneBatch{}, err
	}
	rs, err := t.s.wc.QueryContext(c, pruneNotificationsSQL, cutoff, rows)
	if err != nil {
		return pruneBatch{}, t.failed(err)
	}
	var ids []any
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			rs.Close()
			return pruneBatch{}, err
		}
		ids = append(ids, id)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return pruneBatch{}, t.failed(err)
	}
	if len(ids) == 0 {
		return pruneBatch{}, nil
	}
	in := "(?" + strings.Repeat(", ?", len(ids)-1) + ")"
	if _, err := t.s.wc.ExecContext(c, "DELETE FROM notification_attempts WHERE notification_id IN "+in, ids...); err != nil {
		return pruneBatch{}, t.failed(err)
	}
	res, err := t.s.wc.ExecContext(c, "DELETE FROM notifications WHERE id IN "+in, ids...)
	if err != nil {
		return pruneBatch{}, t.failed(err)
	}
	n, err := res.RowsAffected()
	return pruneBatch{rows: n, more: len(ids) == rows}, err
}

// pruneBatch is what one batch deleted.
type pruneBatch struct {
	rows, bytes int64
	trainingIDs []string // of held observations
	more        bool     // some may be left
}

// pruneLoop runs batch in one Write after another until it reports that
// nothing is left, ctx ends or a Write fails, and counts each committed
// batch with add.
func (s *Store) pruneLoop(ctx context.Context, out *store.Pruned, what string, batch func(t *tx) (pruneBatch, error), add func(pruneBatch)) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("prune %s: %w", what, err)
		}
		var b pruneBatch
		err := s.Write(ctx, func(stx store.Tx) error {
			var err error
			b, err = batch(stx.(*tx))
			return err
		})
		if err != nil {
			return fmt.Errorf("prune %s: %w", what, err)
		}
		out.Batches++
		add(b)
		if !b.more {
			return nil
		}
	}
}

// pruneCtx is begin for the statements Prune runs directly on the write
// connection, unprepared: they run a few times an hour, not per delivery.
func (t *tx) pruneCtx(ctx context.Context) (context.Context, error) {
	if t.lost != nil {
		return nil, t.lost
	}
	if t.ended.Load() {
		return nil, errTxEnded
	}
	return stmtCtx(ctx)
}

// deleteDeliveries deletes the deliveries sel returns (id and payload
// length, oldest first, at most rows of them), in order, while the payload
// bytes before each stay 0 or the total stays within maxBytes (so at least
// one).
func (t *tx) deleteDeliveries(ctx context.Context, sel string, rows int, maxBytes int64, args ...any) (pruneBatch, error) {
	c, err := t.pruneCtx(ctx)
	if err != nil {
		return pruneBatch{}, err
	}
	rs, err := t.s.wc.QueryContext(c, sel, args...)
	if err != nil {
		return pruneBatch{}, t.failed(err)
	}
	var b pruneBatch
	var ids []any
	selected, full := 0, false
	for rs.Next() {
		var id, size int64
		if err := rs.Scan(&id, &size); err != nil {
			rs.Close()
			return pruneBatch{}, err
		}
		selected++
		full = full || b.bytes > 0 && b.bytes+size > maxBytes
		if !full {
			ids = append(ids, id)
			b.bytes += size
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return pruneBatch{}, t.failed(err)
	}
	if len(ids) == 0 {
		return pruneBatch{}, nil
	}
	res, err := t.s.wc.ExecContext(c, "DELETE FROM deliveries WHERE id IN (?"+strings.Repeat(", ?", len(ids)-1)+")", ids...)
	if err != nil {
		return pruneBatch{}, t.failed(err)
	}
	if b.rows, err = res.RowsAffected(); err != nil {
		return pruneBatch{}, err
	}
	b.more = selected == rows || full
	return b, nil
}

// cutoff encodes a prune's time bound, clamped to the storable range.
func cutoff(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return minTime.UnixNano()
	case t.After(maxTime):
		return maxTime.UnixNano()
	}
	return t.UnixNano()
}
