package training

import (
	"encoding/json"
	"time"
)

// Model is one model record: a training trainhook tracks and what became of it.
type Model struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	TrainingID  string          `json:"training_id,omitempty"`
	Trainer     string          `json:"trainer,omitempty"`     // owner/model:version, set by [lifecycle]
	Destination string          `json:"destination,omitempty"` // owner/name, set by [lifecycle]
	Input       json.RawMessage `json:"input,omitempty"`
	Status      Status          `json:"status"`
	// RemoteStatus is Replicate's own word for the training, as last applied.
	RemoteStatus string          `json:"remote_status,omitempty"`
	Output       json.RawMessage `json:"output,omitempty"` // for a training: {"version": ..., "weights": ...}
	Error        string          `json:"error,omitempty"`
	Progress     Progress        `json:"progress"`
	LogTail      string          `json:"log_tail,omitempty"`
	// LogLen is the length of the whole log when the tail was taken; a report
	// with a shorter log is older than what is stored.
	LogLen   int             `json:"log_len"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Flagged is set when Replicate reported two different final outcomes.
	Flagged        bool   `json:"flagged,omitempty"`
	IdempotencyKey string `json:"-"`

	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	CompletedAt *time.Time `json:"completed_at,omitempty"` // Replicate's completed_at
	UpdatedAt   time.Time  `json:"updated_at"`

	// Polling state; it lives in the database so a restart loses nothing.
	NextCheckAt *time.Time `json:"next_check_at,omitempty"`
	// CheckAttempts counts the checks in a row that failed (Replicate
	// unreachable, 404, rate limited); it sets the backoff of the next.
	CheckAttempts int `json:"check_attempts,omitempty"`
	// NotFoundSince and NotFoundChecks count the checks in a row that
	// Replicate answered 404 for the training: after a grace period the
	// model is Failed rather than polled forever. Any report resets them.
	NotFoundSince  *time.Time `json:"not_found_since,omitempty"`
	NotFoundChecks int        `json:"not_found_checks,omitempty"`

	// ArchivedAt is set when a person removed the model: it is hidden from
	// lists, but kept with its history.
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
	// RetryOf is the id of the model this one retried ("" if none).
	RetryOf string `json:"retry_of,omitempty"`
	// WebURL is the training's page on replicate.com, from the urls.web
	// Replicate reports; "" until a report carries one.
	WebURL string `json:"web_url,omitempty"`

	// Version increases on every write; updates are conditional on it, so two
	// writers racing on one record cannot both win.
	Version int64 `json:"-"`
}

// Progress is how far a running training is, parsed from its logs.
type Progress struct {
	Percent float64 `json:"percent"`
	Step    int     `json:"step,omitempty"`
	Total   int     `json:"total,omitempty"`
	// ETASeconds is the time left by the trainer's own estimate (tqdm's
	// "[elapsed<left]"), as of the model's UpdatedAt. It is not stored: it
	// is read from the log tail (WithETA).
	ETASeconds int `json:"eta_seconds,omitempty"`
}

// Source says where a report came from.
type Source string

const (
	SourceWebhook Source = "webhook"
	SourcePoll    Source = "poll"
	SourceAPI     Source = "api"
)

// Observation is one report of a training's state, from a webhook or a poll.
// Both go through the same Apply.
type Observation struct {
	TrainingID  string
	ModelID     string // set when the delivery URL binds it to a model
	Remote      string // Replicate's status
	Output      json.RawMessage
	Error       string
	Logs        string
	StartedAt   *time.Time
	CompletedAt *time.Time
	Source      Source
	SourceRef   string // webhook-id for webhooks
	At          time.Time
	// WebURL is the training's page on replicate.com (urls.web), when the
	// report carries it.
	WebURL string
}

// HistoryEntry records one transition, or one flagged conflict, of a model.
type HistoryEntry struct {
	ID           int64     `json:"id"`
	ModelID      string    `json:"model_id"`
	From         Status    `json:"from"`
	To           Status    `json:"to"`
	RemoteStatus string    `json:"remote_status,omitempty"`
	Decision     Decision  `json:"decision"`
	Source       Source    `json:"source"`
	SourceRef    string    `json:"source_ref,omitempty"`
	Note         string    `json:"note,omitempty"`
	At           time.Time `json:"at"`
}

// Delivery is one webhook request as received: verified or refused, and what came of it.
type Delivery struct {
	ID           int64     `json:"id"`
	WebhookID    string    `json:"webhook_id"`
	ReceivedAt   time.Time `json:"received_at"`
	Verified     bool      `json:"verified"`
	Reason       string    `json:"reason,omitempty"`  // why it was refused
	Outcome      string    `json:"outcome,omitempty"` // applied, duplicate, held, ...
	TrainingID   string    `json:"training_id,omitempty"`
	ModelID      string    `json:"model_id,omitempty"`
	RemoteStatus string    `json:"remote_status,omitempty"`
	// Timestamp and Signature are the webhook-timestamp and webhook-signature
	// headers as received, kept so a delivery can be replayed and verified
	// again (a signature is not a secret).
	Timestamp string `json:"timestamp,omitempty"`
	Signature string `json:"signature,omitempty"`
	// ReplayOf is the id of the delivery this one replayed (0: none).
	ReplayOf int64  `json:"replay_of,omitempty"`
	Payload  []byte `json:"-"`
}

// Summary is m as lists and live events carry it: without its log tail
// (kilobytes per model; the single model's read has it), input or
// idempotency key.
func Summary(m Model) Model {
	m = WithETA(m)
	m.LogTail, m.Input, m.IdempotencyKey = "", nil, ""
	return m
}

// WithETA sets m.Progress.ETASeconds from the last progress line of its log
// tail while the training runs (0 once it has ended, or without an
// estimate).
func WithETA(m Model) Model {
	m.Progress.ETASeconds = 0
	if m.Status.Terminal() {
		return m
	}
	if p, ok := ParseProgress(m.LogTail); ok {
		m.Progress.ETASeconds = p.ETASeconds
	}
	return m
}
