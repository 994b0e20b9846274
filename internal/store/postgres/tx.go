package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// The statements a write transaction runs. pgx prepares each on a connection
// the first time it runs there and keeps it (its statement cache); Write
// then sends them with binary arguments, several per round trip where it
// can (see tx.roundTrip).
const (
	selectModelByID = `SELECT ` + modelColumns + ` FROM models WHERE id = $1`
	// "<> ''" lets the planner use the partial unique indexes.
	selectModelByTrainingID     = `SELECT ` + modelColumns + ` FROM models WHERE training_id = $1 AND training_id <> ''`
	selectModelByIdempotencyKey = `SELECT ` + modelColumns + ` FROM models WHERE idempotency_key = $1 AND idempotency_key <> ''`

	// ON CONFLICT DO NOTHING, with no conflict target, covers every unique
	// index (id, training id, key): a duplicate inserts no row instead of
	// failing the statement, and InsertModel then looks for the reason. If
	// another transaction is inserting the same value, the insert waits
	// for it to end, then does nothing if it committed.
	insertModel = `INSERT INTO models (name, name_fold, training_id, trainer, destination, input,
	status, remote_status, output, error,
	progress_percent, progress_step, progress_total, log_tail, log_len,
	metadata, flagged, idempotency_key,
	created_at, started_at, completed_at, updated_at, next_check_at, check_attempts,
	not_found_since, not_found_checks, archived_at, retry_of, web_url,
	id, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24,
	$25, $26, $27, $28, $29, $30, 1)
ON CONFLICT DO NOTHING`
	whyNotInserted = `SELECT
	EXISTS (SELECT 1 FROM models WHERE id = $1),
	EXISTS (SELECT 1 FROM models WHERE training_id = $2 AND training_id <> ''),
	EXISTS (SELECT 1 FROM models WHERE idempotency_key = $3 AND idempotency_key <> '')`

	modelSet = `name = $1, name_fold = $2, training_id = $3, trainer = $4, destination = $5, input = $6,
	status = $7, remote_status = $8, output = $9, error = $10,
	progress_percent = $11, progress_step = $12, progress_total = $13, log_tail = $14, log_len = $15,
	metadata = $16, flagged = $17, idempotency_key = $18,
	created_at = $19, started_at = $20, completed_at = $21, updated_at = $22, next_check_at = $23, check_attempts = $24,
	not_found_since = $25, not_found_checks = $26, archived_at = $27, retry_of = $28, web_url = $29,
	version = version + 1`
	// The conditional update: no row changes unless the version read is
	// still the stored one. Under READ COMMITTED, an update that waited for
	// another transaction's row lock re-checks the WHERE clause against the
	// row that transaction committed, so of two racing writers one wins and
	// the other sees no row: ErrStale.
	updateModel = `UPDATE models SET ` + modelSet + ` WHERE id = $30 AND version = $31`
	// updateModelGuarded is the update for a model whose training id or key
	// may be changing: it leaves the row alone, rather than fail on the
	// unique index, when another model holds either value. It runs after
	// uniqueLocks in the same round trip, so its snapshot is taken once any
	// other writer of those values has committed.
	updateModelGuarded = updateModel + `
	AND NOT EXISTS (SELECT 1 FROM models o WHERE o.training_id = $3 AND o.training_id <> '' AND o.id <> $30)
	AND NOT EXISTS (SELECT 1 FROM models o WHERE o.idempotency_key = $18 AND o.idempotency_key <> '' AND o.id <> $30)`
	whyNotUpdated = `SELECT version,
	EXISTS (SELECT 1 FROM models o WHERE o.training_id = $2 AND o.training_id <> '' AND o.id <> $1),
	EXISTS (SELECT 1 FROM models o WHERE o.idempotency_key = $3 AND o.idempotency_key <> '' AND o.id <> $1)
FROM models WHERE id = $1`
	// uniqueLocks takes transaction-scoped advisory locks on the training id
	// and key a write sets, in key order. Every insert or update that may
	// set one of those values takes them first, so two transactions setting
	// the same value queue instead of one failing on the unique index.
	uniqueLocks = `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k`

	// A missing model inserts no row (rather than failing on the foreign
	// key): ErrNotFound, and the transaction goes on.
	insertHistory = `INSERT INTO history (model_id, from_status, to_status, remote_status, decision, source, source_ref, note, at)
SELECT id, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, $9::timestamptz FROM models WHERE id = $1`
	insertDelivery = `INSERT INTO deliveries (webhook_id, received_at, verified, reason, outcome, training_id, model_id, remote_status,
	timestamp, signature, replay_of, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING id`
	// Two instances receiving the same delivery: the second insert waits for
	// the first transaction, then inserts nothing if it committed (a
	// duplicate) or claims the id if it rolled back.
	claimWebhookID = `INSERT INTO webhook_ids (webhook_id, at) VALUES ($1, $2) ON CONFLICT (webhook_id) DO NOTHING`
	insertHeld     = `INSERT INTO held (training_id, observation, at) VALUES ($1, $2, $3)`
	takeHeld       = `WITH taken AS (DELETE FROM held WHERE training_id = $1 RETURNING id, observation)
SELECT observation FROM taken ORDER BY id`

	// claimDue differs from SQLite's on purpose. SQLite has one writer, so
	// its select-then-update cannot race; here several instances claim at
	// once. FOR UPDATE SKIP LOCKED locks the due rows it returns and passes
	// over rows another transaction has locked (another instance claiming
	// them, or a webhook updating one), so concurrent claims never wait for
	// each other and never get the same model; the lease (next_check_at
	// moved to leaseUntil, in the same statement) then keeps them from
	// being due until it runs out, which is how a dead instance's models
	// come back. A row another claim leased and committed meanwhile is
	// re-checked against the WHERE clause and is no longer due.
	// The WHERE clause repeats the models_due index's own, so the planner
	// walks that index in order and stops at the limit; RETURNING carries
	// the old next_check_at so the result comes back oldest first.
	claimDue = `WITH due AS (
	SELECT id, next_check_at AS due_at FROM models
	WHERE next_check_at IS NOT NULL AND status NOT IN ('Ready', 'Failed', 'Canceled')
	  AND next_check_at <= $1
	ORDER BY next_check_at, id
	LIMIT $3
	FOR UPDATE SKIP LOCKED
), leased AS (
	UPDATE models m SET next_check_at = $2, version = m.version + 1
	FROM due WHERE m.id = due.id
	RETURNING due.due_at, ` + "\n\t" + `%s
)
SELECT ` + modelColumns + ` FROM leased ORDER BY due_at, id`

	selectSetting    = `SELECT value FROM settings WHERE name = $1`
	insertSettingNew = `INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`
)

var claimDueSQL = fmt.Sprintf(claimDue, prefixed("m", modelColumns))

// commitTimeout bounds the commit, which runs even if the caller's context
// ends meanwhile: a commit cut short leaves the caller not knowing whether
// it happened.
const commitTimeout = 30 * time.Second

const (
	beginSQL    = `BEGIN ISOLATION LEVEL READ COMMITTED`
	commitSQL   = `COMMIT`
	rollbackSQL = `ROLLBACK`
)

// Write runs fn in one READ COMMITTED transaction and commits if fn returns
// nil; it rolls back otherwise, and if fn panics. When it returns nil, the
// commit is durable (as durable as the server's synchronous_commit says).
//
// Round trips are what a Write costs: on one machine each is worth several
// statements' work on the server. So Write saves them where the result is
// known in advance. BEGIN goes with the first statement rather than on
// its own; statements that can fail only if the server fails (AddHistory
// for a model this transaction has read, HoldObservation) wait and go with
// the next statement or the COMMIT, in order; after Prefetch (see the
// package comment) nearly every write of a delivery waits that way, and a
// batch takes two round trips. An error from a statement that waited
// fails the Write (a server error aborts the transaction anyway).
//
// The statements run with ctx: a cancellation interrupts a statement that
// waits (for a row lock, say), and the transaction is rolled back. A
// cancellation that comes after fn returns but before the commit also
// rolls back, as in the SQLite store.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("begin write transaction on %s: %w", s.desc, err)
	}
	t := &tx{s: s, conn: conn}
	committed := false
	defer func() {
		t.ended.Store(true)
		if !committed && t.began {
			// Also after a failed COMMIT. If the connection is broken, or
			// the rollback fails, Release closes the connection rather
			// than return it to the pool.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, rollbackSQL)
			cancel()
		}
		conn.Release()
	}()
	err = fn(t)
	if t.lost != nil {
		if err == nil || !errors.Is(err, t.lost) {
			err = errors.Join(err, t.lost)
		}
		return err
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up and will treat this Write as failed, so
		// nothing of it may stay.
		return fmt.Errorf("commit write transaction: %w", err)
	}
	if !t.began && len(t.pending) == 0 {
		committed = true // nothing was written
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	br, err := t.roundTrip(cctx, nil, commitSQL)
	if err == nil {
		var tag pgconn.CommandTag
		tag, err = br.Exec()
		if err == nil && tag.String() != "COMMIT" {
			err = fmt.Errorf("the server answered %s", tag) // ROLLBACK: the transaction had failed
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("commit write transaction on %s: %w", s.desc, err)
	}
	committed = true
	return nil
}

// tx is a store.Tx: one transaction on a connection taken from the pool for
// the length of its Write.
type tx struct {
	s       *Store
	conn    *pgxpool.Conn
	began   bool        // BEGIN has been sent
	pending []statement // sent with the next round trip
	ended   atomic.Bool // set when its Write returns
	lost    error       // set when a statement failed: PostgreSQL aborted the transaction

	// seen records, for models this transaction has read or written, the
	// version and unique values it saw. An update that keeps both values
	// at the version seen cannot conflict on the unique indexes, and needs
	// no advisory locks: the usual case, a report that changes only status
	// and progress. A model seen exists (models are never deleted), so
	// AddHistory for it need not wait for the answer.
	seen map[string]uniqueValues

	// pf is what Prefetch read, or nil: see prefetched.
	pf *prefetched
}

type statement struct {
	what string // for the error message, if it fails
	sql  string
	args []any
	// conflict, for a checked statement (one that fails unless it changes
	// exactly one row), says what another transaction did if it fails.
	conflict string
	// kind, if not rowAlone, lets merge send it with others of its kind
	// as one statement.
	kind rowKind
}

type uniqueValues struct {
	version         int64
	trainingID, key string
}

var _ store.Tx = (*tx)(nil)

var errTxEnded = errors.New("transaction has ended (a store.Tx is valid only inside its Write)")

// check is what every Tx method does first.
func (t *tx) check(ctx context.Context) error {
	if t.ended.Load() {
		return errTxEnded
	}
	if t.lost != nil {
		return t.lost
	}
	return ctx.Err()
}

// failed passes on err from a statement. Any error but "no rows" means
// PostgreSQL has aborted the transaction (or the connection is gone): every
// later statement would fail with "current transaction is aborted", so they
// fail at once with the first error, and so does Write.
func (t *tx) failed(err error) error {
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if t.lost == nil {
		t.lost = fmt.Errorf("PostgreSQL aborted the transaction after: %w", err)
	}
	return err
}

// later queues a statement to go with the next round trip.
func (t *tx) later(what, sql string, args ...any) {
	t.pending = append(t.pending, statement{what: what, sql: sql, args: args})
}

// takePending returns the pending statements and empties the queue.
func (t *tx) takePending() []statement {
	p := t.pending
	t.pending = nil
	return p
}

// roundTrip sends, in one round trip: BEGIN if the transaction has not
// begun, the pending statements, then before (statements whose results
// only matter if they fail), then last. It reads the results up to last
// and returns the batch positioned at last's; the caller reads it and
// closes the batch. An error here has been recorded with failed.
func (t *tx) roundTrip(ctx context.Context, before []statement, last string, args ...any) (pgx.BatchResults, error) {
	return t.send(ctx, append(t.takePending(), before...), statement{sql: last, args: args})
}

// send sends BEGIN if the transaction has not begun, lead, then tail, in
// one round trip (one pgx.Batch: the server runs them in order and, after
// a statement fails, skips the rest). It reads lead's results and returns
// the batch positioned at tail's; the caller reads those and closes it.
// A checked statement in lead that failed its check fails with ErrRetry.
// An error here has been recorded with failed.
func (t *tx) send(ctx context.Context, lead []statement, tail ...statement) (pgx.BatchResults, error) {
	var b pgx.Batch
	lead = merge(lead)
	if !t.began {
		lead = append([]statement{{what: "begin write transaction", sql: beginSQL}}, lead...)
	}
	for _, q := range [][]statement{lead, tail} {
		for _, st := range q {
			b.Queue(st.sql, st.args...)
		}
	}
	t.began = true // from here on a ROLLBACK is due, whatever happens
	t.s.roundTrips.Add(1)
	br := t.conn.SendBatch(ctx, &b)
	for _, st := range lead {
		if _, err := br.Exec(); err != nil {
			br.Close()
			var pe *pgconn.PgError
			if st.conflict != "" && errors.As(err, &pe) && pe.Code == sqlstateDivisionByZero {
				err = fmt.Errorf("%s: %w", st.conflict, store.ErrRetry)
			}
			return nil, t.failed(fmt.Errorf("%s: %w", st.what, err))
		}
	}
	return br, nil
}

// exec runs one statement (after any pending ones) for its command tag.
func (t *tx) exec(ctx context.Context, before []statement, sql string, args ...any) (pgconn.CommandTag, error) {
	br, err := t.roundTrip(ctx, before, sql, args...)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, t.failed(err)
}

// queryRow runs one statement (after any pending ones) and scans its row.
func (t *tx) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	br, err := t.roundTrip(ctx, nil, sql, args...)
	if err != nil {
		return errRow{err}
	}
	return batchRow{t: t, br: br, row: br.QueryRow()}
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type batchRow struct {
	t   *tx
	br  pgx.BatchResults
	row pgx.Row
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return r.t.failed(err)
}

// query runs one statement (after any pending ones) and collects its rows.
func query[T any](ctx context.Context, t *tx, scan func(pgx.CollectableRow) (T, error), sql string, args ...any) ([]T, error) {
	br, err := t.roundTrip(ctx, nil, sql, args...)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	var out []T
	if err == nil {
		out, err = pgx.CollectRows(rows, scan)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return out, t.failed(err)
}

func (t *tx) saw(m training.Model) {
	if t.seen == nil {
		t.seen = make(map[string]uniqueValues)
	}
	// As stored: a value read back equals one written through text.
	t.seen[text(m.ID)] = uniqueValues{version: m.Version, trainingID: text(m.TrainingID), key: text(m.IdempotencyKey)}
}

func (t *tx) modelBy(ctx context.Context, query, key string) (training.Model, error) {
	if err := t.check(ctx); err != nil {
		return training.Model{}, err
	}
	m, err := scanModel(t.queryRow(ctx, query, text(key)))
	if err != nil {
		return training.Model{}, err
	}
	t.saw(m)
	return m, nil
}

func (t *tx) ModelByID(ctx context.Context, id string) (training.Model, error) {
	if m, found, ok := t.pf.model(text(id)); ok {
		if err := t.check(ctx); err != nil {
			return training.Model{}, fmt.Errorf("read model %s: %w", id, err)
		}
		if !found {
			return training.Model{}, fmt.Errorf("read model %s: %w", id, store.ErrNotFound)
		}
		return m, nil
	}
	m, err := t.modelBy(ctx, selectModelByID, id)
	if err != nil {
		return training.Model{}, fmt.Errorf("read model %s: %w", id, notFound(err))
	}
	return m, nil
}

func (t *tx) ModelByTrainingID(ctx context.Context, trainingID string) (training.Model, error) {
	if trainingID == "" {
		return training.Model{}, fmt.Errorf("read model by training id: empty training id: %w", store.ErrNotFound)
	}
	if m, found, ok := t.pf.modelByTrainingID(text(trainingID)); ok {
		if err := t.check(ctx); err != nil {
			return training.Model{}, fmt.Errorf("read model by training id %s: %w", trainingID, err)
		}
		if !found {
			return training.Model{}, fmt.Errorf("read model by training id %s: %w", trainingID, store.ErrNotFound)
		}
		return m, nil
	}
	m, err := t.modelBy(ctx, selectModelByTrainingID, trainingID)
	if err != nil {
		return training.Model{}, fmt.Errorf("read model by training id %s: %w", trainingID, notFound(err))
	}
	return m, nil
}

func (t *tx) ModelByIdempotencyKey(ctx context.Context, key string) (training.Model, error) {
	if key == "" {
		return training.Model{}, fmt.Errorf("read model by idempotency key: empty key: %w", store.ErrNotFound)
	}
	m, err := t.modelBy(ctx, selectModelByIdempotencyKey, key)
	if err != nil {
		// The key is the client's; it stays out of messages and logs.
		return training.Model{}, fmt.Errorf("read model by idempotency key: %w", notFound(err))
	}
	return m, nil
}

// lockKeys returns the advisory lock keys for the unique values m sets,
// sorted, so that two transactions taking the same two keys take them in
// the same order.
func lockKeys(m *training.Model) []int64 {
	var keys []int64
	add := func(kind, v string) {
		if v == "" {
			return
		}
		h := fnv.New64a()
		h.Write([]byte("trainhook/" + kind + "/" + v))
		keys = append(keys, int64(h.Sum64()))
	}
	add("training_id", text(m.TrainingID))
	add("idempotency_key", text(m.IdempotencyKey))
	slices.Sort(keys)
	return keys
}

// execLocked runs the statement, preceded by uniqueLocks for keys if there
// are any, in one round trip, and returns the rows it changed.
func (t *tx) execLocked(ctx context.Context, what string, keys []int64, query string, args ...any) (int64, error) {
	var before []statement
	if len(keys) > 0 {
		before = []statement{{what: what + ": lock unique values", sql: uniqueLocks, args: []any{keys}}}
	}
	tag, err := t.exec(ctx, before, query, args...)
	return tag.RowsAffected(), err
}

func (t *tx) InsertModel(ctx context.Context, m *training.Model) error {
	if m.ID == "" {
		return errors.New("insert model: empty id")
	}
	if err := t.check(ctx); err != nil {
		return fmt.Errorf("insert model %s: %w", m.ID, err)
	}
	args, err := modelArgs(m)
	if err != nil {
		return fmt.Errorf("insert model %s: %w", m.ID, err)
	}
	n, err := t.execLocked(ctx, "insert model "+m.ID, lockKeys(m), insertModel, args...)
	if err != nil {
		return fmt.Errorf("insert model %s: %w", m.ID, err)
	}
	if n == 0 {
		var idTaken, trainingTaken, keyTaken bool
		err := t.queryRow(ctx, whyNotInserted, text(m.ID), text(m.TrainingID), text(m.IdempotencyKey)).
			Scan(&idTaken, &trainingTaken, &keyTaken)
		if err != nil {
			return fmt.Errorf("insert model %s: %w", m.ID, err)
		}
		return fmt.Errorf("insert model %s: %w", m.ID, duplicate(m, idTaken, trainingTaken, keyTaken))
	}
	m.Version = 1
	storedTimes(m)
	t.saw(*m)
	t.wrote(*m, args)
	return nil
}

// duplicate says which unique value of m is taken.
func duplicate(m *training.Model, idTaken, trainingTaken, keyTaken bool) error {
	switch {
	case trainingTaken:
		return fmt.Errorf("%w: training id %q belongs to another model", store.ErrDuplicate, m.TrainingID)
	case keyTaken:
		return fmt.Errorf("%w: idempotency key is taken", store.ErrDuplicate)
	case idTaken:
		return fmt.Errorf("%w: model id %s exists", store.ErrDuplicate, m.ID)
	}
	return store.ErrDuplicate
}

func (t *tx) UpdateModel(ctx context.Context, m *training.Model) error {
	if err := t.check(ctx); err != nil {
		return fmt.Errorf("update model %s: %w", m.ID, err)
	}
	args, err := modelArgs(m)
	if err != nil {
		return fmt.Errorf("update model %s: %w", m.ID, err)
	}
	args = append(args, m.Version)
	if locked := t.pf.locked(text(m.ID)); locked != nil {
		// This transaction holds the row's lock, so it knows the version:
		// no other writer can have moved it.
		if locked.Version != m.Version {
			return fmt.Errorf("update model %s at version %d: %w", m.ID, m.Version, store.ErrStale)
		}
		if locked.TrainingID == text(m.TrainingID) && locked.IdempotencyKey == text(m.IdempotencyKey) {
			// Nothing can make it fail but the server: it goes with the
			// next round trip, checked there all the same.
			t.pending = append(t.pending, statement{what: "update model " + m.ID, sql: updateModelChecked, args: args,
				conflict: fmt.Sprintf("model %s changed under this transaction's lock", m.ID)})
			m.Version++
			storedTimes(m)
			t.saw(*m)
			t.wrote(*m, args)
			return nil
		}
	}
	query, keys := updateModel, []int64(nil)
	if seen, ok := t.seen[text(m.ID)]; !ok || seen.version != m.Version ||
		seen.trainingID != text(m.TrainingID) || seen.key != text(m.IdempotencyKey) {
		if keys = lockKeys(m); len(keys) > 0 {
			query = updateModelGuarded
		}
	}
	n, err := t.execLocked(ctx, "update model "+m.ID, keys, query, args...)
	if err != nil {
		return fmt.Errorf("update model %s: %w", m.ID, err)
	}
	if n == 0 {
		var (
			version                 int64
			trainingTaken, keyTaken bool
		)
		err := t.queryRow(ctx, whyNotUpdated, text(m.ID), text(m.TrainingID), text(m.IdempotencyKey)).
			Scan(&version, &trainingTaken, &keyTaken)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("update model %s: %w", m.ID, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("update model %s: %w", m.ID, err)
		case version == m.Version && (trainingTaken || keyTaken):
			return fmt.Errorf("update model %s: %w", m.ID, duplicate(m, false, trainingTaken, keyTaken))
		}
		return fmt.Errorf("update model %s at version %d: %w", m.ID, m.Version, store.ErrStale)
	}
	m.Version++
	storedTimes(m)
	t.saw(*m)
	t.wrote(*m, args)
	return nil
}

func (t *tx) AddHistory(ctx context.Context, h training.HistoryEntry) error {
	if err := t.check(ctx); err != nil {
		return fmt.Errorf("add history for model %s: %w", h.ModelID, err)
	}
	var e encoder
	at := e.time("at", h.At)
	if e.err != nil {
		return fmt.Errorf("add history for model %s: %w", h.ModelID, e.err)
	}
	args := []any{text(h.ModelID), text(string(h.From)), text(string(h.To)), text(h.RemoteStatus),
		text(string(h.Decision)), text(string(h.Source)), text(h.SourceRef), text(h.Note), at}
	if _, exists := t.seen[text(h.ModelID)]; exists {
		t.pending = append(t.pending, statement{what: "add history for model " + h.ModelID, sql: insertHistory, args: args, kind: rowHistory})
		return nil
	}
	tag, err := t.exec(ctx, nil, insertHistory, args...)
	if err != nil {
		return fmt.Errorf("add history for model %s: %w", h.ModelID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("add history for model %s: no such model: %w", h.ModelID, store.ErrNotFound)
	}
	return nil
}

func (t *tx) AddDelivery(ctx context.Context, d training.Delivery) (int64, error) {
	if err := t.check(ctx); err != nil {
		return 0, fmt.Errorf("add delivery %s: %w", d.WebhookID, err)
	}
	var e encoder
	received := e.time("received_at", d.ReceivedAt)
	if e.err != nil {
		return 0, fmt.Errorf("add delivery %s: %w", d.WebhookID, e.err)
	}
	if t.pf != nil && len(t.pf.deliveryIDs) > 0 {
		// Its id was taken ahead; the row waits for the next round trip
		// (it can fail only if the server does).
		id := t.pf.deliveryIDs[0]
		t.pf.deliveryIDs = t.pf.deliveryIDs[1:]
		t.pending = append(t.pending, statement{what: "add delivery " + d.WebhookID, sql: insertDeliveryWithID, kind: rowDelivery,
			args: []any{text(d.WebhookID), received, d.Verified, text(d.Reason), text(d.Outcome), text(d.TrainingID), text(d.ModelID),
				text(d.RemoteStatus), text(d.Timestamp), text(d.Signature), d.ReplayOf, d.Payload, id}})
		return id, nil
	}
	var id int64
	err := t.queryRow(ctx, insertDelivery, text(d.WebhookID), received, d.Verified, text(d.Reason),
		text(d.Outcome), text(d.TrainingID), text(d.ModelID), text(d.RemoteStatus), text(d.Timestamp), text(d.Signature),
		d.ReplayOf, d.Payload).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add delivery %s: %w", d.WebhookID, err)
	}
	return id, nil
}

func (t *tx) ClaimWebhookID(ctx context.Context, webhookID string, at time.Time) (bool, error) {
	if webhookID == "" {
		// Claiming "" would make every later delivery without an id a
		// duplicate of the first.
		return false, errors.New("claim webhook id: empty id")
	}
	if err := t.check(ctx); err != nil {
		return false, fmt.Errorf("claim webhook id %s: %w", webhookID, err)
	}
	var e encoder
	atArg := e.time("at", at)
	if e.err != nil {
		return false, fmt.Errorf("claim webhook id %s: %w", webhookID, e.err)
	}
	if claimed, ok := t.pf.claimedWebhookID(text(webhookID)); ok {
		if claimed {
			return false, nil
		}
		// Unclaimed when prefetched: the claim goes with the next round
		// trip, and this transaction counts it claimed from now on. If
		// another transaction claims it meanwhile, the checked insert
		// fails the Write with ErrRetry: a duplicate is never applied.
		t.pending = append(t.pending, statement{what: "claim webhook id " + webhookID, sql: claimWebhookIDChecked,
			args: []any{text(webhookID), atArg}, kind: rowClaim, conflict: fmt.Sprintf("webhook id %s was claimed by another transaction meanwhile", webhookID)})
		t.pf.claimed[text(webhookID)] = true
		return true, nil
	}
	tag, err := t.exec(ctx, nil, claimWebhookID, text(webhookID), atArg)
	if err != nil {
		return false, fmt.Errorf("claim webhook id %s: %w", webhookID, err)
	}
	if t.pf != nil {
		t.pf.claimed[text(webhookID)] = true // by this transaction, or before
	}
	return tag.RowsAffected() == 1, nil
}

func (t *tx) HoldObservation(ctx context.Context, obs training.Observation) error {
	if obs.TrainingID == "" {
		return errors.New("hold observation: empty training id")
	}
	if err := t.check(ctx); err != nil {
		return fmt.Errorf("hold observation for training %s: %w", obs.TrainingID, err)
	}
	var e encoder
	at := e.time("at", obs.At)
	if e.err != nil {
		return fmt.Errorf("hold observation for training %s: %w", obs.TrainingID, e.err)
	}
	doc, err := store.EncodeObservation(obs)
	if err != nil {
		return fmt.Errorf("hold observation for training %s: encode: %w", obs.TrainingID, err)
	}
	// Nothing in the held table can refuse the row: it waits for the next
	// round trip, and TakeHeld, which comes after it, sees it.
	t.later("hold observation for training "+obs.TrainingID, insertHeld, text(obs.TrainingID), doc, at)
	return nil
}

func (t *tx) TakeHeld(ctx context.Context, trainingID string) ([]training.Observation, error) {
	if trainingID == "" {
		return nil, nil
	}
	if err := t.check(ctx); err != nil {
		return nil, fmt.Errorf("take held observations for training %s: %w", trainingID, err)
	}
	docs, err := query(ctx, t, pgx.RowTo[[]byte], takeHeld, text(trainingID))
	if err != nil {
		return nil, fmt.Errorf("take held observations for training %s: %w", trainingID, err)
	}
	if len(docs) == 0 {
		return nil, nil
	}
	out := make([]training.Observation, len(docs))
	for i, doc := range docs {
		if out[i], err = store.DecodeObservation(doc); err != nil {
			return nil, fmt.Errorf("take held observations for training %s: decode: %w", trainingID, err)
		}
	}
	return out, nil
}

func (t *tx) ClaimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]training.Model, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := t.check(ctx); err != nil {
		return nil, fmt.Errorf("claim due models: %w", err)
	}
	var e encoder
	nowArg, leaseArg := e.time("now", now), e.time("lease", leaseUntil)
	if e.err != nil {
		return nil, fmt.Errorf("claim due models: %w", e.err)
	}
	if nowArg == nil || leaseArg == nil {
		return nil, errors.New("claim due models: now and lease must be set")
	}
	ms, err := query(ctx, t, func(r pgx.CollectableRow) (training.Model, error) { return scanModel(r) },
		claimDueSQL, nowArg, leaseArg, limit)
	if err != nil {
		return nil, fmt.Errorf("claim due models: %w", err)
	}
	for _, m := range ms {
		t.saw(m)
		if t.pf != nil {
			t.pf.store(m) // locked by the claim's update
		}
	}
	return ms, nil
}

func (t *tx) Setting(ctx context.Context, name string) (string, error) {
	if err := t.check(ctx); err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	var v string
	if err := t.queryRow(ctx, selectSetting, text(name)).Scan(&v); err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, notFound(err))
	}
	return v, nil
}

// PutSettingIfAbsent inserts, then reads back in a second statement of the
// same round trip: the read's snapshot is taken after the insert, so it
// sees a value another transaction committed while the insert waited.
func (t *tx) PutSettingIfAbsent(ctx context.Context, name, value string) (string, error) {
	if err := t.check(ctx); err != nil {
		return "", fmt.Errorf("put setting %s: %w", name, err)
	}
	t.later("put setting "+name, insertSettingNew, text(name), text(value))
	var v string
	err := t.queryRow(ctx, selectSetting, text(name)).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("put setting %s: %w", name, err)
	}
	return v, nil
}
