package store

import (
	"context"
	"encoding/json"
	"time"
)

// Notification statuses. A notification is pending until a 2xx answer
// (delivered) or until its retry window ends or the receiver answers 410
// (failed). Resend makes a delivered or failed one pending again.
const (
	NotifyPending   = "pending"
	NotifyDelivered = "delivered"
	NotifyFailed    = "failed"
)

// NewNotification is an event to tell the app about, written by
// Tx.AddNotification in the transaction of the change that caused it (a
// transactional outbox): it is stored if and only if the change is.
type NewNotification struct {
	EventID string // the webhook-id: unique, the same for every URL and retry, no '.'
	ModelID string // the model it is about
	Type    string // model.ready, ...
	// Sequence orders the model's events: the model's version after the
	// change (positive, and higher for every later change of the model).
	Sequence int64
	At       time.Time       // when the change happened (the payload's timestamp)
	Model    json.RawMessage // the model as the payload shows it
	URLs     []string        // one row per URL; none: nothing is stored
}

// Notification is one event for one URL.
type Notification struct {
	ID            int64           `json:"id"`
	EventID       string          `json:"event_id"`
	ModelID       string          `json:"model_id"`
	Type          string          `json:"type"`
	Sequence      int64           `json:"sequence"` // per model, from 1, shared by the rows of one event
	URL           string          `json:"url"`
	Model         json.RawMessage `json:"model,omitempty"`
	Status        string          `json:"status"`
	CreatedAt     time.Time       `json:"created_at"`                // the change's time (NewNotification.At)
	RetrySince    time.Time       `json:"retry_since"`               // the retry window starts here: creation, or the last resend
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"` // pending only
	Attempts      int             `json:"attempts"`
	LastError     string          `json:"last_error,omitempty"`
	LastStatus    int             `json:"last_status,omitempty"` // HTTP status of the last attempt, 0 if none came
	DeliveredAt   *time.Time      `json:"delivered_at,omitempty"`

	// Lease is set by ClaimNotifications: the claim's token, which
	// FinishNotification must present.
	Lease string `json:"-"`
}

// NotificationAttempt is one try to send a notification.
type NotificationAttempt struct {
	At         time.Time     `json:"at"`
	StatusCode int           `json:"status_code,omitempty"` // 0: no answer
	Latency    time.Duration `json:"latency_ns"`
	Error      string        `json:"error,omitempty"`
}

// NotificationResult is what FinishNotification records after an attempt.
type NotificationResult struct {
	Attempt NotificationAttempt
	// Status is NotifyDelivered, NotifyFailed, or NotifyPending to retry at
	// RetryAt.
	Status  string
	RetryAt time.Time
}

// NotificationFilter selects notifications, newest first.
type NotificationFilter struct {
	Status  string // empty: any
	ModelID string // empty: any
	Before  int64  // cursor: only ids lower than this; 0: from the newest
	Limit   int    // 1..1000
}

// NotificationStats is the outbox's state, for metrics.
type NotificationStats struct {
	Pending       int       // pending rows
	OldestPending time.Time // creation time of the oldest pending row; zero when none
}

// Outbox is the notification side of a store, used by the sender and the
// API. Every write runs in its own short transaction.
type Outbox interface {
	// ClaimNotifications leases up to limit pending notifications whose
	// next attempt is due at now and that are not leased (or whose lease
	// ended), oldest first, setting their lease to leaseUntil. A row is not
	// claimable while an earlier row (lower id) for the same model and URL
	// is pending: per model and URL they go out in commit order. On
	// PostgreSQL several instances claim at once without getting the same
	// row; a dead instance's rows come back when their lease ends.
	ClaimNotifications(ctx context.Context, now, leaseUntil time.Time, limit int) ([]Notification, error)
	// FinishNotification records an attempt and its result for a claimed
	// notification. ErrStale if the lease was lost (it ran out and another
	// claim took the row, or it was resent meanwhile): the attempt is
	// still recorded, the status is not changed.
	FinishNotification(ctx context.Context, id int64, lease string, r NotificationResult) error
	// ResendNotification makes a notification pending again, due at now,
	// with a new retry window. ErrNotFound if there is none.
	ResendNotification(ctx context.Context, id int64, now time.Time) (Notification, error)

	ListNotifications(ctx context.Context, f NotificationFilter) ([]Notification, error)
	GetNotification(ctx context.Context, id int64) (Notification, []NotificationAttempt, error)
	NotificationStats(ctx context.Context) (NotificationStats, error)
}
