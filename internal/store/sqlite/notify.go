package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/store"
)

// notificationColumns is what every notification query selects, in the
// order scanNotification reads.
const notificationColumns = `id, event_id, model_id, type, sequence, url, model, status, created_at, retry_since,
	next_attempt_at, attempts, last_error, last_status, delivered_at, lease`

func scanNotification(row scanner) (store.Notification, error) {
	var (
		n               store.Notification
		model           string
		created, since  sql.NullInt64
		next, delivered sql.NullInt64
	)
	err := row.Scan(&n.ID, &n.EventID, &n.ModelID, &n.Type, &n.Sequence, &n.URL, &model, &n.Status, &created, &since,
		&next, &n.Attempts, &n.LastError, &n.LastStatus, &delivered, &n.Lease)
	if err != nil {
		return store.Notification{}, err
	}
	n.Model = rawJSON([]byte(model))
	n.CreatedAt, n.RetrySince = decodeTime(created), decodeTime(since)
	n.NextAttemptAt, n.DeliveredAt = decodeTimePtr(next), decodeTimePtr(delivered)
	return n, nil
}

// AddNotification runs in the transaction of the change it reports.
func (t *tx) AddNotification(ctx context.Context, n store.NewNotification) error {
	if len(n.URLs) == 0 {
		return nil
	}
	if n.EventID == "" || strings.Contains(n.EventID, ".") {
		return fmt.Errorf("add notification for model %s: event id %q is empty or contains '.'", n.ModelID, n.EventID)
	}
	seq := n.Sequence
	if seq <= 0 {
		return fmt.Errorf("add notification %s for model %s: sequence %d is not positive", n.EventID, n.ModelID, seq)
	}
	var e encoder
	at := e.time("at", n.At)
	if e.err != nil || at == nil {
		return fmt.Errorf("add notification for model %s: time %v: %v", n.ModelID, n.At, e.err)
	}
	for _, u := range n.URLs {
		ctx, st, err := t.begin(ctx, stmtAddNotification)
		if err != nil {
			return fmt.Errorf("add notification for model %s: %w", n.ModelID, err)
		}
		if _, err := st.ExecContext(ctx, n.EventID, n.ModelID, n.Type, seq, u, string(n.Model), at); err != nil {
			return fmt.Errorf("add notification %s for model %s: %w", n.EventID, n.ModelID, t.failed(err))
		}
	}
	return nil
}

// The claim's queries. INDEXED BY: without statistics SQLite's planner may
// take another index for the due rows or the ordering check, sorting every
// pending row and scanning them again for each one, which is quadratic in
// the backlog; with these indexes a claim walks the due rows in order and
// checks each against the few rows of its model.
const (
	anyDueNotificationSQL = `SELECT count(*) FROM (SELECT 1 FROM notifications INDEXED BY notifications_due
WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) LIMIT 1)`
	claimNotificationsSQL = `SELECT ` + notificationColumns + ` FROM notifications n INDEXED BY notifications_due
WHERE n.status = 'pending' AND n.next_attempt_at <= ? AND (n.lease_until IS NULL OR n.lease_until <= ?)
  AND NOT EXISTS (SELECT 1 FROM notifications p INDEXED BY notifications_model_seq
    WHERE p.model_id = n.model_id AND p.id < n.id AND p.status = 'pending' AND p.url = n.url)
ORDER BY n.next_attempt_at, n.id LIMIT ?`
)

// ClaimNotifications selects then leases, in one Write. There is no SKIP
// LOCKED in SQLite and none is needed: the write lock makes the claim
// exclusive, and the lease keeps the next claim off the rows.
func (s *Store) ClaimNotifications(ctx context.Context, now, leaseUntil time.Time, limit int) ([]store.Notification, error) {
	// Most polls find nothing due. Looking first on a read connection
	// spares intake the write lock (and a commit) every poll.
	var due int
	err := s.r.QueryRowContext(ctx, anyDueNotificationSQL, now.UnixNano(), now.UnixNano()).Scan(&due)
	if err != nil {
		return nil, fmt.Errorf("look for due notifications: %w", err)
	}
	if due == 0 {
		return nil, nil
	}
	var out []store.Notification
	err = s.writeUnsynced(ctx, func(stx store.Tx) error {
		out = out[:0]
		t := stx.(*tx)
		c, err := t.pruneCtx(ctx)
		if err != nil {
			return err
		}
		rows, err := s.wc.QueryContext(c, claimNotificationsSQL, now.UnixNano(), now.UnixNano(), clampLimit(limit))
		if err != nil {
			return t.failed(err)
		}
		for rows.Next() {
			n, err := scanNotification(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return t.failed(err)
		}
		for i := range out {
			out[i].Lease = rand.Text()
			if _, err := s.wc.ExecContext(c, `UPDATE notifications SET lease = ?, lease_until = ? WHERE id = ?`,
				out[i].Lease, leaseUntil.UnixNano(), out[i].ID); err != nil {
				return t.failed(err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	return out, nil
}

func (s *Store) FinishNotification(ctx context.Context, id int64, lease string, r store.NotificationResult) error {
	var stale bool
	err := s.writeUnsynced(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		c, err := t.pruneCtx(ctx)
		if err != nil {
			return err
		}
		a := r.Attempt
		if _, err := s.wc.ExecContext(c, `INSERT INTO notification_attempts (notification_id, at, status_code, latency_ns, error) VALUES (?, ?, ?, ?, ?)`,
			id, a.At.UnixNano(), a.StatusCode, int64(a.Latency), a.Error); err != nil {
			return t.failed(err)
		}
		var next, delivered any
		switch r.Status {
		case store.NotifyPending:
			next = r.RetryAt.UnixNano()
		case store.NotifyDelivered:
			delivered = a.At.UnixNano()
		case store.NotifyFailed:
		default:
			return fmt.Errorf("unknown notification status %q", r.Status)
		}
		res, err := s.wc.ExecContext(c, `UPDATE notifications SET attempts = attempts + 1, last_error = ?, last_status = ?,
	status = ?, next_attempt_at = ?, delivered_at = ?, lease = '', lease_until = NULL
WHERE id = ? AND lease = ? AND status = 'pending'`, a.Error, a.StatusCode, r.Status, next, delivered, id, lease)
		if err != nil {
			return t.failed(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			stale = true
			_, err = s.wc.ExecContext(c, `UPDATE notifications SET attempts = attempts + 1 WHERE id = ?`, id)
			return t.failed(err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish notification %d: %w", id, err)
	}
	if stale {
		return fmt.Errorf("finish notification %d: lease lost: %w", id, store.ErrStale)
	}
	return nil
}

func (s *Store) ResendNotification(ctx context.Context, id int64, now time.Time) (store.Notification, error) {
	var n store.Notification
	err := s.Write(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		c, err := t.pruneCtx(ctx)
		if err != nil {
			return err
		}
		_, err = s.wc.ExecContext(c, `UPDATE notifications SET status = 'pending', next_attempt_at = ?, retry_since = ?,
	lease = '', lease_until = NULL, delivered_at = NULL WHERE id = ?`, now.UnixNano(), now.UnixNano(), id)
		if err != nil {
			return t.failed(err)
		}
		n, err = scanNotification(s.wc.QueryRowContext(c, `SELECT `+notificationColumns+` FROM notifications WHERE id = ?`, id))
		return t.failed(notFound(err))
	})
	if err != nil {
		return store.Notification{}, fmt.Errorf("resend notification %d: %w", id, err)
	}
	return n, nil
}

// listNotificationsFrom starts the list's query. Pending rows are found
// through the due index and sorted: there are as many as the backlog, while
// the table behind them (delivered rows, newest first, the plan SQLite
// picks) can be every notification ever sent. The partial index needs its
// condition written out, not bound.
func listNotificationsFrom(status string) string {
	if status == "pending" {
		return `SELECT ` + notificationColumns + ` FROM notifications INDEXED BY notifications_due WHERE status = 'pending'`
	}
	return `SELECT ` + notificationColumns + ` FROM notifications WHERE 1 = 1`
}

func (s *Store) ListNotifications(ctx context.Context, f store.NotificationFilter) ([]store.Notification, error) {
	var (
		q    strings.Builder
		args []any
	)
	q.WriteString(listNotificationsFrom(f.Status))
	if f.Status != "" && f.Status != "pending" {
		q.WriteString(` AND status = ?`)
		args = append(args, f.Status)
	}
	if f.ModelID != "" {
		q.WriteString(` AND model_id = ?`)
		args = append(args, f.ModelID)
	}
	if f.Before > 0 {
		q.WriteString(` AND id < ?`)
		args = append(args, f.Before)
	}
	q.WriteString(` ORDER BY id DESC LIMIT ?`)
	args = append(args, clampLimit(f.Limit))
	rows, err := s.r.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	defer rows.Close()
	var out []store.Notification
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, fmt.Errorf("list notifications: %w", err)
		}
		n.Lease = ""
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	return out, nil
}

func (s *Store) GetNotification(ctx context.Context, id int64) (store.Notification, []store.NotificationAttempt, error) {
	n, err := scanNotification(s.r.QueryRowContext(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE id = ?`, id))
	if err != nil {
		return store.Notification{}, nil, fmt.Errorf("get notification %d: %w", id, notFound(err))
	}
	n.Lease = ""
	rows, err := s.r.QueryContext(ctx, `SELECT at, status_code, latency_ns, error FROM notification_attempts WHERE notification_id = ? ORDER BY id`, id)
	if err != nil {
		return store.Notification{}, nil, fmt.Errorf("get attempts of notification %d: %w", id, err)
	}
	defer rows.Close()
	var as []store.NotificationAttempt
	for rows.Next() {
		var (
			a       store.NotificationAttempt
			at, lat int64
		)
		if err := rows.Scan(&at, &a.StatusCode, &lat, &a.Error); err != nil {
			return store.Notification{}, nil, fmt.Errorf("get attempts of notification %d: %w", id, err)
		}
		a.At, a.Latency = time.Unix(0, at).UTC(), time.Duration(lat)
		as = append(as, a)
	}
	return n, as, rows.Err()
}

func (s *Store) NotificationStats(ctx context.Context) (store.NotificationStats, error) {
	var (
		st     store.NotificationStats
		oldest sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT count(*), min(created_at) FROM notifications WHERE status = 'pending'`).Scan(&st.Pending, &oldest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("count pending notifications: %w", err)
	}
	st.OldestPending = decodeTime(oldest)
	return st, nil
}

func (t *tx) SetModelNotifyURL(ctx context.Context, modelID, url string) error {
	c, err := t.pruneCtx(ctx)
	if err != nil {
		return fmt.Errorf("set notify URL of model %s: %w", modelID, err)
	}
	_, err = t.s.wc.ExecContext(c, `INSERT INTO model_notify_urls (model_id, url) VALUES (?, ?)
ON CONFLICT (model_id) DO UPDATE SET url = excluded.url`, modelID, url)
	if err != nil {
		return fmt.Errorf("set notify URL of model %s: %w", modelID, t.failed(err))
	}
	return nil
}

func (t *tx) ModelNotifyURL(ctx context.Context, modelID string) (string, error) {
	c, err := t.pruneCtx(ctx)
	if err != nil {
		return "", fmt.Errorf("read notify URL of model %s: %w", modelID, err)
	}
	var u string
	err = t.s.wc.QueryRowContext(c, `SELECT url FROM model_notify_urls WHERE model_id = ?`, modelID).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read notify URL of model %s: %w", modelID, t.failed(err))
	}
	return u, nil
}
