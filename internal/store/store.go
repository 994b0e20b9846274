// Package store declares the storage trainhook's service needs. SQLite and
// PostgreSQL implement it in sub-packages; storetest is the conformance suite
// both must pass.
package store

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// Errors every implementation returns (wrapped or not; test with errors.Is).
var (
	// ErrNotFound: no row matches.
	ErrNotFound = errors.New("not found")
	// ErrStale: a conditional update found the record changed since it was
	// read (its Version moved). Re-read and decide again.
	ErrStale = errors.New("record changed since it was read")
	// ErrDuplicate: a unique value (training id, idempotency key) is taken.
	ErrDuplicate = errors.New("duplicate")
)

// Store is what the service needs from a database. Reads run outside any
// transaction; every write runs inside Write.
type Store interface {
	// Write runs fn in one transaction and commits if fn returns nil. When it
	// returns nil, what fn wrote is durable.
	Write(ctx context.Context, fn func(Tx) error) error

	GetModel(ctx context.Context, id string) (training.Model, error)
	ListModels(ctx context.Context, f ModelFilter) ([]training.Model, error)
	// ModelsByTrainingID returns the models whose training id is one of
	// ids, in no particular order; ids no model has are left out.
	ModelsByTrainingID(ctx context.Context, ids []string) ([]training.Model, error)
	History(ctx context.Context, modelID string) ([]training.HistoryEntry, error)
	ListDeliveries(ctx context.Context, f DeliveryFilter) ([]training.Delivery, error)
	GetDelivery(ctx context.Context, id int64) (training.Delivery, error)
	// CountModels counts models by status, for metrics and the dashboard.
	CountModels(ctx context.Context) (map[training.Status]int, error)

	Outbox

	// Prune deletes what p says has been kept long enough, in transactions
	// of at most p.BatchRows rows and about p.BatchBytes payload bytes each,
	// so that no prune holds SQLite's write lock, or PostgreSQL's row locks,
	// for long. It never touches models or their history. Several prunes
	// may run at once (instances sharing PostgreSQL): each row is deleted
	// once, and counted by the prune that deleted it. When ctx ends it stops
	// after the current batch and returns what it deleted with ctx's error.
	Prune(ctx context.Context, p PrunePolicy) (Pruned, error)

	// Ping checks the database answers; Migrated reports the schema version
	// applied and the newest one this binary knows.
	Ping(ctx context.Context) error
	Migrated(ctx context.Context) (applied, latest int, err error)
	Close() error
}

// Tx is one write transaction. Its methods see the transaction's own writes.
type Tx interface {
	ModelByID(ctx context.Context, id string) (training.Model, error)
	ModelByTrainingID(ctx context.Context, trainingID string) (training.Model, error)
	ModelByIdempotencyKey(ctx context.Context, key string) (training.Model, error)
	// InsertModel stores a new model with Version 1 (it sets m.Version).
	// ErrDuplicate when its training id or idempotency key is taken.
	InsertModel(ctx context.Context, m *training.Model) error
	// UpdateModel writes every field of m if the stored Version still equals
	// m.Version, and increments m.Version; otherwise it returns ErrStale.
	// ErrDuplicate when m.TrainingID is taken by another model.
	UpdateModel(ctx context.Context, m *training.Model) error

	AddHistory(ctx context.Context, h training.HistoryEntry) error

	// AddDelivery appends a received webhook delivery (verified or refused)
	// and returns its id.
	AddDelivery(ctx context.Context, d training.Delivery) (int64, error)
	// ClaimWebhookID records that a verified delivery was processed. It
	// returns false if the webhook-id was claimed before: a duplicate.
	ClaimWebhookID(ctx context.Context, webhookID string, at time.Time) (bool, error)

	// HoldObservation keeps a verified report about a training id no model
	// has yet; TakeHeld returns and deletes those for a training id, oldest first.
	HoldObservation(ctx context.Context, obs training.Observation) error
	TakeHeld(ctx context.Context, trainingID string) ([]training.Observation, error)

	// ClaimDue returns up to limit non-terminal models (with or without a
	// training id) whose NextCheckAt is set and at
	// or before now, oldest first, and moves their NextCheckAt to leaseUntil
	// so no other poller takes them meanwhile; if the poller dies, the
	// lease runs out and they are due again.
	ClaimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]training.Model, error)

	// Setting and PutSettingIfAbsent keep small server-wide values (such as
	// the key behind per-model webhook tokens). PutSettingIfAbsent returns
	// the value now stored, which is the existing one if there was one.
	Setting(ctx context.Context, name string) (string, error)
	PutSettingIfAbsent(ctx context.Context, name, value string) (string, error)

	// AddNotification stores one pending notification per URL for the
	// event, in this transaction.
	AddNotification(ctx context.Context, n NewNotification) error
	// SetModelNotifyURL keeps a model's own notification URL;
	// ModelNotifyURL returns it, "" when it has none.
	SetModelNotifyURL(ctx context.Context, modelID, url string) error
	ModelNotifyURL(ctx context.Context, modelID string) (string, error)
}

// ModelFilter selects models, newest first.
type ModelFilter struct {
	Status training.Status // empty: any
	Query  string          // substring of the name, case-insensitive; empty: any
	Before string          // cursor: only models with an id lower than this
	Limit  int             // 1..1000
	// Archived includes archived models (ArchivedAt set); without it they
	// are left out.
	Archived bool
}

// DeliveryFilter selects deliveries, newest first.
type DeliveryFilter struct {
	Verified *bool  // nil: any
	Outcome  string // empty: any
	ModelID  string // empty: any
	Before   int64  // cursor: only deliveries with a lower id; 0: from the newest
	Limit    int    // 1..1000
}

// Default batch bounds of Prune.
const (
	DefaultPruneRows  = 1000
	DefaultPruneBytes = 64 << 20
)

// PrunePolicy says which rows Prune deletes. A zero time deletes none of
// that kind. Rows whose time is unknown (NULL) are kept.
type PrunePolicy struct {
	// VerifiedBefore: verified deliveries received before it, payloads
	// included.
	VerifiedBefore time.Time
	// RefusedBefore: refused deliveries received before it.
	RefusedBefore time.Time
	// RefusedKeep caps the refused deliveries kept: all but the newest
	// RefusedKeep (by id) are deleted, whatever their age. 0: no cap.
	RefusedKeep int
	// ClaimsBefore: webhook-id claims (ClaimWebhookID) made before it. A
	// delivery whose claim is gone is no longer recognised as a duplicate.
	ClaimsBefore time.Time
	// HeldBefore: held observations (HoldObservation) received before it.
	HeldBefore time.Time
	// NotificationsBefore: delivered and failed notifications created
	// before it, with their attempts. Pending ones are kept, however old.
	NotificationsBefore time.Time
	// BatchRows bounds the rows one transaction deletes (0:
	// DefaultPruneRows); BatchBytes bounds the delivery payload bytes (0:
	// DefaultPruneBytes), though a batch always deletes at least one row.
	BatchRows  int
	BatchBytes int64
}

// Batch returns the batch bounds with defaults applied.
func (p PrunePolicy) Batch() (rows int, bytes int64) {
	rows, bytes = p.BatchRows, p.BatchBytes
	if rows <= 0 {
		rows = DefaultPruneRows
	}
	if bytes <= 0 {
		bytes = DefaultPruneBytes
	}
	return rows, bytes
}

// Pruned is what one Prune deleted.
type Pruned struct {
	Verified      int64 // verified deliveries
	Refused       int64 // refused deliveries older than RefusedBefore
	RefusedOver   int64 // refused deliveries beyond RefusedKeep
	PayloadBytes  int64 // delivery payload bytes among them, as stored (a store may compress them)
	Claims        int64 // webhook-id claims
	Held          int64 // held observations
	Notifications int64 // delivered and failed notifications
	// HeldTrainingIDs are the distinct training ids of the held
	// observations deleted, at most MaxPrunedHeldIDs of them, for the log.
	HeldTrainingIDs []string
	Batches         int // transactions run (each one statement on PostgreSQL)
}

// MaxPrunedHeldIDs bounds Pruned.HeldTrainingIDs.
const MaxPrunedHeldIDs = 20

// AddHeldIDs adds training ids to HeldTrainingIDs, without repeats, up to
// MaxPrunedHeldIDs.
func (p *Pruned) AddHeldIDs(ids ...string) {
	for _, id := range ids {
		if len(p.HeldTrainingIDs) >= MaxPrunedHeldIDs {
			return
		}
		if !slices.Contains(p.HeldTrainingIDs, id) {
			p.HeldTrainingIDs = append(p.HeldTrainingIDs, id)
		}
	}
}

// Total is the number of rows deleted.
func (p Pruned) Total() int64 {
	return p.Verified + p.Refused + p.RefusedOver + p.Claims + p.Held + p.Notifications
}
