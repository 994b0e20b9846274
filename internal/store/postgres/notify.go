package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/trainhook/trainhook/internal/store"
)

const notificationColumns = `id, event_id, model_id, type, sequence, url, model, status, created_at, retry_since,
	next_attempt_at, attempts, last_error, last_status, delivered_at, lease`

// insertNotifications writes one row per URL, each with the event's sequence.
const insertNotifications = `INSERT INTO notifications (event_id, model_id, type, sequence, url, model, status, created_at, retry_since, next_attempt_at)
SELECT $1, $2, $3, $7, u, $4::json, 'pending', $5, $5, $5
FROM unnest($6::text[]) AS u`

// claimNotifications leases due rows. FOR UPDATE SKIP LOCKED lets several
// instances claim at once without waiting for each other or getting the
// same row; the lease (lease_until, in the same statement) keeps the rows
// from being claimed again until it runs out, which is how a dead
// instance's work comes back. The NOT EXISTS keeps per model and URL order:
// a row waits while an earlier one is pending, leased or not.
const claimNotifications = `WITH due AS (
	SELECT n.id FROM notifications n
	WHERE n.status = 'pending' AND n.next_attempt_at <= $1 AND (n.lease_until IS NULL OR n.lease_until <= $1)
	  AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.status = 'pending' AND p.model_id = n.model_id AND p.url = n.url AND p.id < n.id)
	ORDER BY n.next_attempt_at, n.id
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)
UPDATE notifications m SET lease = $4, lease_until = $2 FROM due WHERE m.id = due.id
RETURNING m.id, m.event_id, m.model_id, m.type, m.sequence, m.url, m.model, m.status, m.created_at, m.retry_since,
	m.next_attempt_at, m.attempts, m.last_error, m.last_status, m.delivered_at, m.lease`

func scanNotification(row pgx.Row) (store.Notification, error) {
	var (
		n               store.Notification
		model           []byte
		created, since  time.Time
		next, delivered pgtype.Timestamptz
	)
	err := row.Scan(&n.ID, &n.EventID, &n.ModelID, &n.Type, &n.Sequence, &n.URL, &model, &n.Status, &created, &since,
		&next, &n.Attempts, &n.LastError, &n.LastStatus, &delivered, &n.Lease)
	if err != nil {
		return store.Notification{}, err
	}
	n.Model = append([]byte(nil), model...)
	n.CreatedAt, n.RetrySince = created.UTC(), since.UTC()
	if next.Valid {
		t := next.Time.UTC()
		n.NextAttemptAt = &t
	}
	if delivered.Valid {
		t := delivered.Time.UTC()
		n.DeliveredAt = &t
	}
	return n, nil
}

func (t *tx) AddNotification(ctx context.Context, n store.NewNotification) error {
	if len(n.URLs) == 0 {
		return nil
	}
	if n.EventID == "" || strings.Contains(n.EventID, ".") {
		return fmt.Errorf("add notification for model %s: event id %q is empty or contains '.'", n.ModelID, n.EventID)
	}
	if n.Sequence <= 0 {
		return fmt.Errorf("add notification %s for model %s: sequence %d is not positive", n.EventID, n.ModelID, n.Sequence)
	}
	if err := t.check(ctx); err != nil {
		return fmt.Errorf("add notification for model %s: %w", n.ModelID, err)
	}
	var e encoder
	at := e.time("at", n.At)
	model := e.json("model", n.Model)
	if e.err != nil || at == nil || model == nil {
		return fmt.Errorf("add notification for model %s: time %v or model missing: %v", n.ModelID, n.At, e.err)
	}
	urls := make([]string, len(n.URLs))
	for i, u := range n.URLs {
		urls[i] = text(u)
	}
	// It can fail only if the server does (the model exists: the change
	// that causes the event wrote it), so it goes with the next round trip.
	t.later("add notification "+n.EventID, insertNotifications, text(n.EventID), text(n.ModelID), text(n.Type), string(model.([]byte)), at, urls, n.Sequence)
	return nil
}

func (s *Store) ClaimNotifications(ctx context.Context, now, leaseUntil time.Time, limit int) ([]store.Notification, error) {
	rows, err := s.pool.Query(ctx, claimNotifications, now, leaseUntil, clampLimit(limit), rand.Text())
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Notification, error) { return scanNotification(r) })
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	slices.SortFunc(out, func(a, b store.Notification) int {
		if c := a.NextAttemptAt.Compare(*b.NextAttemptAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

func (s *Store) FinishNotification(ctx context.Context, id int64, lease string, r store.NotificationResult) error {
	a := r.Attempt
	var next, delivered any
	switch r.Status {
	case store.NotifyPending:
		next = r.RetryAt
	case store.NotifyDelivered:
		delivered = a.At
	case store.NotifyFailed:
	default:
		return fmt.Errorf("finish notification %d: unknown status %q", id, r.Status)
	}
	stale := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO notification_attempts (notification_id, at, status_code, latency_ns, error) VALUES ($1, $2, $3, $4, $5)`,
			id, a.At, a.StatusCode, int64(a.Latency), text(a.Error)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE notifications SET attempts = attempts + 1, last_error = $1, last_status = $2,
	status = $3, next_attempt_at = $4, delivered_at = $5, lease = '', lease_until = NULL
WHERE id = $6 AND lease = $7 AND status = 'pending'`, text(a.Error), a.StatusCode, r.Status, next, delivered, id, lease)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			stale = true
			_, err = tx.Exec(ctx, `UPDATE notifications SET attempts = attempts + 1 WHERE id = $1`, id)
		}
		return err
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
	n, err := scanNotification(s.pool.QueryRow(ctx, `UPDATE notifications SET status = 'pending', next_attempt_at = $2, retry_since = $2,
	lease = '', lease_until = NULL, delivered_at = NULL WHERE id = $1
RETURNING `+notificationColumns, id, now))
	if err != nil {
		return store.Notification{}, fmt.Errorf("resend notification %d: %w", id, notFound(err))
	}
	n.Lease = ""
	return n, nil
}

func (s *Store) ListNotifications(ctx context.Context, f store.NotificationFilter) ([]store.Notification, error) {
	var (
		q    strings.Builder
		args []any
	)
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	q.WriteString(`SELECT ` + notificationColumns + ` FROM notifications WHERE true`)
	if f.Status != "" {
		q.WriteString(` AND status = ` + arg(text(f.Status)))
	}
	if f.ModelID != "" {
		q.WriteString(` AND model_id = ` + arg(text(f.ModelID)))
	}
	if f.Before > 0 {
		q.WriteString(` AND id < ` + arg(f.Before))
	}
	q.WriteString(` ORDER BY id DESC LIMIT ` + arg(clampLimit(f.Limit)))
	rows, err := s.pool.Query(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Notification, error) {
		n, err := scanNotification(r)
		n.Lease = ""
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	return out, nil
}

func (s *Store) GetNotification(ctx context.Context, id int64) (store.Notification, []store.NotificationAttempt, error) {
	n, err := scanNotification(s.pool.QueryRow(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE id = $1`, id))
	if err != nil {
		return store.Notification{}, nil, fmt.Errorf("get notification %d: %w", id, notFound(err))
	}
	n.Lease = ""
	rows, err := s.pool.Query(ctx, `SELECT at, status_code, latency_ns, error FROM notification_attempts WHERE notification_id = $1 ORDER BY id`, id)
	if err != nil {
		return store.Notification{}, nil, fmt.Errorf("get attempts of notification %d: %w", id, err)
	}
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.NotificationAttempt, error) {
		var (
			a   store.NotificationAttempt
			lat int64
		)
		err := r.Scan(&a.At, &a.StatusCode, &lat, &a.Error)
		a.At, a.Latency = a.At.UTC(), time.Duration(lat)
		return a, err
	})
	if err != nil {
		return store.Notification{}, nil, fmt.Errorf("get attempts of notification %d: %w", id, err)
	}
	return n, as, nil
}

func (s *Store) NotificationStats(ctx context.Context) (store.NotificationStats, error) {
	var (
		st     store.NotificationStats
		oldest pgtype.Timestamptz
	)
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM notifications WHERE status = 'pending'`).Scan(&st.Pending, &oldest); err != nil {
		return st, fmt.Errorf("count pending notifications: %w", err)
	}
	if oldest.Valid {
		st.OldestPending = oldest.Time.UTC()
	}
	return st, nil
}

func (t *tx) SetModelNotifyURL(ctx context.Context, modelID, url string) error {
	if err := t.check(ctx); err != nil {
		return fmt.Errorf("set notify URL of model %s: %w", modelID, err)
	}
	_, err := t.exec(ctx, nil, `INSERT INTO model_notify_urls (model_id, url) VALUES ($1, $2)
ON CONFLICT (model_id) DO UPDATE SET url = excluded.url`, text(modelID), text(url))
	if err != nil {
		return fmt.Errorf("set notify URL of model %s: %w", modelID, err)
	}
	if t.pf != nil {
		t.pf.notifyURL[text(modelID)] = text(url)
	}
	return nil
}

func (t *tx) ModelNotifyURL(ctx context.Context, modelID string) (string, error) {
	if err := t.check(ctx); err != nil {
		return "", fmt.Errorf("read notify URL of model %s: %w", modelID, err)
	}
	if t.pf != nil {
		if u, ok := t.pf.notifyURL[text(modelID)]; ok {
			return u, nil
		}
	}
	var u string
	err := t.queryRow(ctx, `SELECT url FROM model_notify_urls WHERE model_id = $1`, text(modelID)).Scan(&u)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read notify URL of model %s: %w", modelID, err)
	}
	return u, nil
}
