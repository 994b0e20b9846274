package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// The prefetch reads, in one round trip with BEGIN, what a batch of reports
// will read. ORDER BY id makes every transaction lock its rows in the same
// order (the row locks are taken as the sorted rows come out), so two
// instances prefetching overlapping batches queue rather than deadlock.
// The claims are read after the models, in a statement of their own: under
// READ COMMITTED it sees what committed while the lock was awaited, so an
// instance that waited for another's batch on the same model finds that
// batch's claims, and reports the duplicate without a retry.
const (
	prefetchModels = `SELECT ` + modelColumns + ` FROM models
WHERE (training_id = ANY($1::text[]) AND training_id <> '') OR id = ANY($2::text[])
ORDER BY id FOR UPDATE`
	prefetchNotifyURLs = `SELECT u.model_id, u.url FROM model_notify_urls u JOIN models m ON m.id = u.model_id
WHERE (m.training_id = ANY($1::text[]) AND m.training_id <> '') OR m.id = ANY($2::text[])`
	prefetchClaims = `SELECT webhook_id FROM webhook_ids WHERE webhook_id = ANY($1::text[])`
	// Delivery ids come from the identity column's own sequence, taken
	// ahead, so AddDelivery can return the id of a row it has not sent yet.
	// An id taken and not used is a gap, as a rolled-back insert leaves.
	prefetchDeliveryIDs = `SELECT nextval(pg_get_serial_sequence('deliveries', 'id')) FROM generate_series(1, $1::int)`

	insertDeliveryWithID = `INSERT INTO deliveries (id, webhook_id, received_at, verified, reason, outcome, training_id, model_id, remote_status,
	timestamp, signature, replay_of, payload)
OVERRIDING SYSTEM VALUE
VALUES ($13, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

	// Checked statements: a write held back until the commit whose result
	// is known in advance, unless another transaction got in the way. If
	// it changes other than exactly one row, the division by zero fails it,
	// which aborts the transaction on the server: the COMMIT that follows
	// in the same round trip then does nothing (the server skips the rest
	// of a failed pipeline), and Write rolls back and returns ErrRetry.
	// count(*) is an aggregate, so the division cannot be evaluated early.
	claimWebhookIDChecked = `WITH c AS (INSERT INTO webhook_ids (webhook_id, at) VALUES ($1, $2) ON CONFLICT (webhook_id) DO NOTHING RETURNING 1)
SELECT 1 / (count(*) = 1)::int FROM c`
	updateModelChecked = `WITH u AS (` + updateModel + ` RETURNING 1)
SELECT 1 / (count(*) = 1)::int FROM u`
)

// sqlstateDivisionByZero is how a checked statement fails.
const sqlstateDivisionByZero = "22012"

// prefetched is what Prefetch read, kept up to date with the transaction's
// own writes, so that reads it covers need no round trip.
//
// Every model in models is locked by this transaction (FOR UPDATE in the
// prefetch, or because this transaction wrote it), so its row cannot move
// until the commit: a read of it from here is what the server would
// answer, and an update of it at its version cannot find it stale, so the
// update is sent with the COMMIT. A nil entry is a model id known not to
// exist.
type prefetched struct {
	models     map[string]*training.Model
	byTraining map[string]string // training id -> model id; "": no model has it
	notifyURL  map[string]string // model id (of a model in models) -> its own notify URL; none: ""
	// claimed: webhook id -> claimed (before, or by this transaction).
	// An id missing was not prefetched: ClaimWebhookID asks the server.
	claimed     map[string]bool
	deliveryIDs []int64 // taken ahead for AddDelivery, in order
}

var _ store.Prefetcher = (*tx)(nil)

// Prefetch reads, in one round trip (with BEGIN), the models keys names,
// locking them, whether their webhook ids are claimed, and ids for the
// deliveries the batch will add. Calling it again adds to what is known.
func (t *tx) Prefetch(ctx context.Context, keys store.BatchKeys) error {
	if keys.Empty() {
		return nil
	}
	if err := t.check(ctx); err != nil {
		return fmt.Errorf("prefetch: %w", err)
	}
	tids, mids, wids := textAll(keys.TrainingIDs), textAll(keys.ModelIDs), textAll(keys.WebhookIDs)
	br, err := t.send(ctx, t.takePending(),
		statement{sql: prefetchModels, args: []any{tids, mids}},
		statement{sql: prefetchNotifyURLs, args: []any{tids, mids}},
		statement{sql: prefetchClaims, args: []any{wids}},
		statement{sql: prefetchDeliveryIDs, args: []any{keys.Deliveries}})
	if err != nil {
		return fmt.Errorf("prefetch: %w", err)
	}
	defer br.Close()
	if t.pf == nil {
		t.pf = &prefetched{
			models:     map[string]*training.Model{},
			byTraining: map[string]string{},
			notifyURL:  map[string]string{},
			claimed:    map[string]bool{},
		}
	}
	pf := t.pf
	rows, err := br.Query()
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: lock models: %w", err))
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (training.Model, error) { return scanModel(r) })
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: lock models: %w", err))
	}
	// A key not found is known absent, unless this transaction already
	// knows better (a model it wrote).
	for _, id := range mids {
		if _, known := pf.models[id]; !known {
			pf.models[id] = nil
		}
	}
	for _, tid := range tids {
		if _, known := pf.byTraining[tid]; !known {
			pf.byTraining[tid] = ""
		}
	}
	for _, m := range ms {
		if cur := pf.models[m.ID]; cur != nil {
			continue // written by this transaction: already current
		}
		pf.store(m)
		t.saw(m)
	}
	rows, err = br.Query()
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: read notify URLs: %w", err))
	}
	var modelID, url string
	_, err = pgx.ForEachRow(rows, []any{&modelID, &url}, func() error {
		if _, known := pf.notifyURL[modelID]; !known {
			pf.notifyURL[modelID] = url
		}
		return nil
	})
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: read notify URLs: %w", err))
	}
	for _, m := range ms {
		if _, known := pf.notifyURL[m.ID]; !known {
			pf.notifyURL[m.ID] = ""
		}
	}
	rows, err = br.Query()
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: read claimed webhook ids: %w", err))
	}
	claimed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: read claimed webhook ids: %w", err))
	}
	for _, w := range wids {
		if _, known := pf.claimed[w]; !known {
			pf.claimed[w] = slices.Contains(claimed, w)
		}
	}
	rows, err = br.Query()
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: take delivery ids: %w", err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return t.failed(fmt.Errorf("prefetch: take delivery ids: %w", err))
	}
	pf.deliveryIDs = append(pf.deliveryIDs, ids...)
	return t.failed(br.Close())
}

func textAll(vs []string) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		if v != "" {
			out = append(out, text(v))
		}
	}
	return out
}

// store records m, as stored, as the current state of its row.
func (pf *prefetched) store(m training.Model) {
	if old := pf.models[m.ID]; old != nil && old.TrainingID != m.TrainingID && old.TrainingID != "" {
		// Not "" (no model has it): another transaction may be waiting
		// to take it. Let the server answer.
		delete(pf.byTraining, old.TrainingID)
	}
	c := cloneModel(m)
	pf.models[m.ID] = &c
	if m.TrainingID != "" {
		pf.byTraining[m.TrainingID] = m.ID
	}
}

// model returns the known state of model id: ok is false when the
// prefetch does not cover it; found is false when it is known not to exist.
func (pf *prefetched) model(id string) (m training.Model, found, ok bool) {
	if pf == nil {
		return training.Model{}, false, false
	}
	p, ok := pf.models[id]
	if !ok {
		return training.Model{}, false, false
	}
	if p == nil {
		return training.Model{}, false, true
	}
	return cloneModel(*p), true, true
}

func (pf *prefetched) modelByTrainingID(tid string) (m training.Model, found, ok bool) {
	if pf == nil {
		return training.Model{}, false, false
	}
	id, ok := pf.byTraining[tid]
	if !ok {
		return training.Model{}, false, false
	}
	if id == "" {
		return training.Model{}, false, true
	}
	return pf.model(id)
}

// locked returns the locked row of model id, or nil.
func (pf *prefetched) locked(id string) *training.Model {
	if pf == nil {
		return nil
	}
	return pf.models[id]
}

// cloneModel copies m's byte slices and pointed-to times, so that the
// caller cannot change what the cache holds.
func cloneModel(m training.Model) training.Model {
	m.Input, m.Output, m.Metadata = bytes.Clone(m.Input), bytes.Clone(m.Output), bytes.Clone(m.Metadata)
	for _, p := range []**time.Time{&m.StartedAt, &m.CompletedAt, &m.NextCheckAt, &m.NotFoundSince, &m.ArchivedAt} {
		if *p != nil {
			v := **p
			*p = &v
		}
	}
	return m
}

// asStored is m as a read of its row returns it once args (from modelArgs)
// are written: text made storable, times in microseconds, JSON as sent, no
// ETA (it is not stored).
func asStored(m training.Model, args []any) training.Model {
	s := func(i int) string { return args[i].(string) }
	j := func(i int) json.RawMessage {
		if b, ok := args[i].([]byte); ok {
			return rawJSON(bytes.Clone(b))
		}
		return nil
	}
	m.Name, m.TrainingID, m.Trainer, m.Destination = s(0), s(2), s(3), s(4)
	m.Input = j(5)
	m.Status, m.RemoteStatus, m.Output, m.Error = training.Status(s(6)), s(7), j(8), s(9)
	m.LogTail, m.Metadata, m.IdempotencyKey = s(13), j(15), s(17)
	m.RetryOf, m.WebURL, m.ID = s(27), s(28), s(29)
	m.Progress.ETASeconds = 0
	storedTimes(&m)
	return cloneModel(m)
}

// claimedWebhookID says whether webhook id w is claimed; ok is false when
// the prefetch does not cover it.
func (pf *prefetched) claimedWebhookID(w string) (claimed, ok bool) {
	if pf == nil {
		return false, false
	}
	claimed, ok = pf.claimed[w]
	return claimed, ok
}

// wrote records a model this transaction has just written (it holds the
// row's lock until the commit), with args its modelArgs.
func (t *tx) wrote(m training.Model, args []any) {
	if t.pf != nil {
		t.pf.store(asStored(m, args))
	}
}
