package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// The statements a write transaction runs, prepared once on the write
// connection. Each touches one row through an index, except ClaimDue's
// select and TakeHeld, which touch a few.
const (
	stmtBegin = iota
	stmtCommit
	stmtRollback
	stmtModelByID
	stmtModelByTrainingID
	stmtModelByIdempotencyKey
	stmtModelExists
	stmtInsertModel
	stmtUpdateModel
	stmtUpdateModelState
	stmtAddHistory
	stmtAddDelivery
	stmtClaimWebhookID
	stmtHold
	stmtTakeHeld
	stmtSelectDue
	stmtLease
	stmtSetting
	stmtInsertSetting
	stmtAddNotification
	numWriteStmts
)

// modelSetColumns lists the columns modelArgs gives values for, before id.
const modelSetColumns = `name = ?, name_fold = ?, training_id = ?, trainer = ?, destination = ?, input = ?,
	status = ?, remote_status = ?, output = ?, error = ?,
	progress_percent = ?, progress_step = ?, progress_total = ?, log_tail = ?, log_len = ?,
	metadata = ?, flagged = ?, idempotency_key = ?,
	created_at = ?, started_at = ?, completed_at = ?, updated_at = ?, next_check_at = ?, check_attempts = ?,
	not_found_since = ?, not_found_checks = ?, archived_at = ?, retry_of = ?, web_url = ?`

var writeSQL = [numWriteStmts]string{
	// IMMEDIATE takes the write lock at the start, where busy_timeout
	// applies, rather than at the first write, where a lock held by another
	// process (a backup, the sqlite3 shell) would fail the transaction at
	// once. There is no SELECT ... FOR UPDATE or SKIP LOCKED in SQLite, and
	// none is needed: this lock makes every Write exclusive, so a value a
	// Write reads cannot change before it writes.
	stmtBegin:     `BEGIN IMMEDIATE`,
	stmtCommit:    `COMMIT`,
	stmtRollback:  `ROLLBACK`,
	stmtModelByID: `SELECT ` + modelColumns + ` FROM models WHERE id = ?`,
	// "<> ''" lets SQLite use the partial unique indexes.
	stmtModelByTrainingID:     `SELECT ` + modelColumns + ` FROM models WHERE training_id = ? AND training_id <> ''`,
	stmtModelByIdempotencyKey: `SELECT ` + modelColumns + ` FROM models WHERE idempotency_key = ? AND idempotency_key <> ''`,
	stmtModelExists:           `SELECT 1 FROM models WHERE id = ?`,
	stmtInsertModel: `INSERT INTO models (name, name_fold, training_id, trainer, destination, input,
	status, remote_status, output, error,
	progress_percent, progress_step, progress_total, log_tail, log_len,
	metadata, flagged, idempotency_key,
	created_at, started_at, completed_at, updated_at, next_check_at, check_attempts,
	not_found_since, not_found_checks, archived_at, retry_of, web_url,
	id, version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
	// The conditional update: no row changes unless the version read is
	// still the stored one.
	stmtUpdateModel: `UPDATE models SET ` + modelSetColumns + `, version = version + 1
WHERE id = ? AND version = ?`,
	// The columns a report changes. Leaving the others out of SET spares
	// SQLite the indexes on training_id and idempotency_key and the
	// json_valid checks on input and metadata, which it otherwise redoes on
	// every update whatever the values.
	stmtUpdateModelState: `UPDATE models SET ` + modelStateColumns + `, version = version + 1
WHERE id = ? AND version = ?`,
	stmtAddHistory: `INSERT INTO history (model_id, from_status, to_status, remote_status, decision, source, source_ref, note, at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	stmtAddDelivery: `INSERT INTO deliveries (webhook_id, received_at, verified, reason, outcome, training_id, model_id, remote_status,
	timestamp, signature, replay_of, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	stmtClaimWebhookID: `INSERT INTO webhook_ids (webhook_id, at) VALUES (?, ?) ON CONFLICT (webhook_id) DO NOTHING`,
	stmtHold:           `INSERT INTO held (training_id, observation, at) VALUES (?, ?, ?)`,
	// RETURNING yields rows in no set order; TakeHeld sorts them by id.
	stmtTakeHeld: `DELETE FROM held WHERE training_id = ? RETURNING id, observation`,
	// The WHERE clause repeats the models_due index's own, so SQLite walks
	// that index in order and stops at the limit. There is no SKIP LOCKED
	// here as in PostgreSQL: the single write connection already makes
	// each claim exclusive, and the lease (next_check_at moved forward)
	// is what keeps the next claim from taking the same rows.
	stmtSelectDue: `SELECT ` + modelColumns + ` FROM models
WHERE next_check_at IS NOT NULL AND status <> 'Ready' AND status <> 'Failed' AND status <> 'Canceled'
  AND next_check_at <= ?
ORDER BY next_check_at, id LIMIT ?`,
	stmtLease:         `UPDATE models SET next_check_at = ?, version = version + 1 WHERE id = ?`,
	stmtSetting:       `SELECT value FROM settings WHERE name = ?`,
	stmtInsertSetting: `INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
	stmtAddNotification: `INSERT INTO notifications (event_id, model_id, type, sequence, url, model, status, created_at, retry_since, next_attempt_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?7)`,
}

// Write runs fn in one transaction on the write connection: BEGIN IMMEDIATE,
// commit if fn returns nil, roll back otherwise (and if fn panics). Calls
// wait for the connection in turn, in no set order, until ctx is done. With
// synchronous=FULL the commit has reached the disk when Write returns nil.
//
// The statements run with ctx's values but not its cancellation (see
// stmtCtx); a cancellation is noticed between statements and before the
// commit, and rolls the transaction back.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) (err error) {
	return s.write(ctx, false, fn)
}

// writeUnsynced is Write for bookkeeping whose loss in a power failure costs
// only a repeat, such as a notification's lease or outcome (a lost outcome
// means the notification is sent again, with the same webhook-id, which
// at-least-once delivery allows). Its commit skips the fsync
// (synchronous=NORMAL): the WAL keeps it consistent, and the next durable
// commit's fsync makes it durable too. Without this, each of those small
// transactions would hold the write lock through a flush of its own, and
// webhook intake, which waits for that lock, would slow to the pace of
// the notifications.
func (s *Store) writeUnsynced(ctx context.Context, fn func(store.Tx) error) error {
	return s.write(ctx, true, fn)
}

func (s *Store) write(ctx context.Context, unsynced bool, fn func(store.Tx) error) (err error) {
	select {
	case s.writeLock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for the write connection: %w", ctx.Err())
	}
	defer func() { <-s.writeLock }()
	if s.closed {
		return fmt.Errorf("write to SQLite database at %s: store is closed", s.path)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	bg := context.WithoutCancel(ctx)
	if unsynced != s.unsynced {
		// A durable Write after an unsynced one restores FULL first, and
		// fails rather than commit without the flush if it cannot.
		if err := s.setSynchronous(bg, unsynced); err != nil {
			return fmt.Errorf("begin write transaction: %w", err)
		}
	}
	if _, err := s.wstmts[stmtBegin].ExecContext(bg); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	t := &tx{s: s}
	committed := false
	defer func() {
		t.ended.Store(true)
		if !committed {
			// Also after a failed COMMIT, which can leave the transaction
			// open. An error here means there was no transaction left.
			_, _ = s.wstmts[stmtRollback].ExecContext(bg)
		}
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
	if _, err := s.wstmts[stmtCommit].ExecContext(bg); err != nil {
		return fmt.Errorf("commit write transaction: %w", err)
	}
	committed = true
	select {
	case s.ckKick <- struct{}{}:
	default: // a checkpoint is due already
	}
	return nil
}

// setSynchronous switches the write connection between synchronous=FULL
// (durable commits) and NORMAL (commits without a flush); it runs between
// transactions, under the write lock.
//
// Not a prepared statement: SQLite applies this pragma when the statement
// is prepared, not when it runs.
func (s *Store) setSynchronous(ctx context.Context, unsynced bool) error {
	mode := "FULL"
	if unsynced {
		mode = "NORMAL"
	}
	if _, err := s.wc.ExecContext(ctx, "PRAGMA synchronous = "+mode); err != nil {
		return fmt.Errorf("set synchronous=%s on the write connection: %w", mode, err)
	}
	s.unsynced = unsynced
	return nil
}

// tx is a store.Tx: the statements prepared on the write connection, used
// while Write holds it.
type tx struct {
	s     *Store
	ended atomic.Bool            // set when its Write returns: the connection is no longer its own
	lost  error                  // set when SQLite rolled the transaction back by itself
	read  map[string]fixedFields // models read in this transaction, by id
}

// fixedFields are the columns of a model that reports do not change, as
// read at version. If an update at that version leaves them as they are,
// UpdateModel writes only the others (stmtUpdateModelState): the version
// check makes that the same update.
type fixedFields struct {
	version                                         int64
	name, trainingID, trainer, destination, idemKey string
	retryOf                                         string
	input, metadata                                 []byte
	created                                         time.Time
}

func fixedOf(m *training.Model) fixedFields {
	return fixedFields{version: m.Version, name: m.Name, trainingID: m.TrainingID, trainer: m.Trainer,
		destination: m.Destination, idemKey: m.IdempotencyKey, input: m.Input, metadata: m.Metadata, created: m.CreatedAt,
		retryOf: m.RetryOf}
}

func (f fixedFields) same(g fixedFields) bool {
	return f.version == g.version && f.name == g.name && f.trainingID == g.trainingID && f.trainer == g.trainer &&
		f.destination == g.destination && f.idemKey == g.idemKey && bytes.Equal(f.input, g.input) &&
		bytes.Equal(f.metadata, g.metadata) && f.created.Equal(g.created) && f.retryOf == g.retryOf
}

var _ store.Tx = (*tx)(nil)

var errTxEnded = errors.New("transaction has ended (a store.Tx is valid only inside its Write)")

// stmt returns statement i, or an error if the transaction has ended:
// the connection may then be running someone else's transaction, or none.
func (t *tx) stmt(i int) (*sql.Stmt, error) {
	if t.ended.Load() {
		return nil, errTxEnded
	}
	return t.s.wstmts[i], nil
}

// failed passes on err from a statement, noting whether SQLite rolled the
// whole transaction back. It does that after some errors (SQLITE_FULL,
// SQLITE_IOERR, SQLITE_NOMEM, SQLITE_BUSY), and then the connection is in
// autocommit mode: a statement fn runs next would commit on its own, outside
// the transaction. Once lost, every later statement fails instead, and so
// does Write. A constraint error only undoes its own statement.
func (t *tx) failed(err error) error {
	if err == nil || errors.Is(err, sql.ErrNoRows) || isConstraint(err) {
		return err
	}
	if !t.s.inTransaction() {
		t.lost = fmt.Errorf("SQLite rolled the transaction back after: %w", err)
	}
	return err
}

// begin is what every Tx method does first: check the transaction and ctx,
// and pick the statement.
func (t *tx) begin(ctx context.Context, i int) (context.Context, *sql.Stmt, error) {
	if t.lost != nil {
		return nil, nil, t.lost
	}
	st, err := t.stmt(i)
	if err != nil {
		return nil, nil, err
	}
	ctx, err = stmtCtx(ctx)
	if err != nil {
		return nil, nil, err
	}
	return ctx, st, nil
}

func (t *tx) modelBy(ctx context.Context, i int, key string) (training.Model, error) {
	ctx, st, err := t.begin(ctx, i)
	if err != nil {
		return training.Model{}, err
	}
	m, err := scanModel(st.QueryRowContext(ctx, key))
	if err == nil {
		if t.read == nil {
			t.read = make(map[string]fixedFields)
		}
		t.read[m.ID] = fixedOf(&m)
	}
	return m, t.failed(err)
}

func (t *tx) ModelByID(ctx context.Context, id string) (training.Model, error) {
	m, err := t.modelBy(ctx, stmtModelByID, id)
	if err != nil {
		return training.Model{}, fmt.Errorf("read model %s: %w", id, notFound(err))
	}
	return m, nil
}

func (t *tx) ModelByTrainingID(ctx context.Context, trainingID string) (training.Model, error) {
	if trainingID == "" {
		return training.Model{}, fmt.Errorf("read model by training id: empty training id: %w", store.ErrNotFound)
	}
	m, err := t.modelBy(ctx, stmtModelByTrainingID, trainingID)
	if err != nil {
		return training.Model{}, fmt.Errorf("read model by training id %s: %w", trainingID, notFound(err))
	}
	return m, nil
}

func (t *tx) ModelByIdempotencyKey(ctx context.Context, key string) (training.Model, error) {
	if key == "" {
		return training.Model{}, fmt.Errorf("read model by idempotency key: empty key: %w", store.ErrNotFound)
	}
	m, err := t.modelBy(ctx, stmtModelByIdempotencyKey, key)
	if err != nil {
		// The key is the client's; it stays out of messages and logs.
		return training.Model{}, fmt.Errorf("read model by idempotency key: %w", notFound(err))
	}
	return m, nil
}

func (t *tx) InsertModel(ctx context.Context, m *training.Model) error {
	if m.ID == "" {
		return errors.New("insert model: empty id")
	}
	ctx, st, err := t.begin(ctx, stmtInsertModel)
	if err != nil {
		return fmt.Errorf("insert model %s: %w", m.ID, err)
	}
	args, err := modelArgs(m)
	if err != nil {
		return fmt.Errorf("insert model %s: %w", m.ID, err)
	}
	if _, err := st.ExecContext(ctx, args...); err != nil {
		err = t.failed(err)
		if isUnique(err) {
			err = duplicateModel(err, m)
		}
		return fmt.Errorf("insert model %s: %w", m.ID, err)
	}
	m.Version = 1
	return nil
}

func (t *tx) UpdateModel(ctx context.Context, m *training.Model) error {
	fixed := fixedOf(m)
	stmt, argsOf := stmtUpdateModel, modelArgs
	if read, ok := t.read[m.ID]; ok && read.same(fixed) {
		stmt, argsOf = stmtUpdateModelState, modelStateArgs
	}
	ctx, st, err := t.begin(ctx, stmt)
	if err != nil {
		return fmt.Errorf("update model %s: %w", m.ID, err)
	}
	args, err := argsOf(m)
	if err != nil {
		return fmt.Errorf("update model %s: %w", m.ID, err)
	}
	res, err := st.ExecContext(ctx, append(args, m.Version)...)
	if err != nil {
		err = t.failed(err)
		if isUnique(err) {
			err = duplicateModel(err, m)
		}
		return fmt.Errorf("update model %s: %w", m.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update model %s: %w", m.ID, err)
	}
	if n == 0 {
		var one int
		err := t.failed(t.s.wstmts[stmtModelExists].QueryRowContext(ctx, m.ID).Scan(&one))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("update model %s: %w", m.ID, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("update model %s: %w", m.ID, err)
		}
		return fmt.Errorf("update model %s at version %d: %w", m.ID, m.Version, store.ErrStale)
	}
	m.Version++
	if t.read != nil {
		fixed.version = m.Version
		t.read[m.ID] = fixed
	}
	return nil
}

func (t *tx) AddHistory(ctx context.Context, h training.HistoryEntry) error {
	ctx, st, err := t.begin(ctx, stmtAddHistory)
	if err != nil {
		return fmt.Errorf("add history for model %s: %w", h.ModelID, err)
	}
	var e encoder
	at := e.time("at", h.At)
	if e.err != nil {
		return fmt.Errorf("add history for model %s: %w", h.ModelID, e.err)
	}
	_, err = st.ExecContext(ctx, h.ModelID, string(h.From), string(h.To), h.RemoteStatus,
		string(h.Decision), string(h.Source), h.SourceRef, h.Note, at)
	if err != nil {
		err = t.failed(err)
		if sqliteCode(err) == sqlite3.ErrConstraintForeignKey {
			err = fmt.Errorf("no such model: %w", store.ErrNotFound)
		}
		return fmt.Errorf("add history for model %s: %w", h.ModelID, err)
	}
	return nil
}

func (t *tx) AddDelivery(ctx context.Context, d training.Delivery) (int64, error) {
	ctx, st, err := t.begin(ctx, stmtAddDelivery)
	if err != nil {
		return 0, fmt.Errorf("add delivery %s: %w", d.WebhookID, err)
	}
	var e encoder
	received := e.time("received_at", d.ReceivedAt)
	if e.err != nil {
		return 0, fmt.Errorf("add delivery %s: %w", d.WebhookID, e.err)
	}
	res, err := st.ExecContext(ctx, d.WebhookID, received, boolInt(d.Verified), d.Reason,
		d.Outcome, d.TrainingID, d.ModelID, d.RemoteStatus, d.Timestamp, d.Signature, d.ReplayOf, pack(d.Payload))
	if err != nil {
		return 0, fmt.Errorf("add delivery %s: %w", d.WebhookID, t.failed(err))
	}
	id, err := res.LastInsertId()
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
	ctx, st, err := t.begin(ctx, stmtClaimWebhookID)
	if err != nil {
		return false, fmt.Errorf("claim webhook id %s: %w", webhookID, err)
	}
	var e encoder
	atArg := e.time("at", at)
	if e.err != nil {
		return false, fmt.Errorf("claim webhook id %s: %w", webhookID, e.err)
	}
	res, err := st.ExecContext(ctx, webhookID, atArg)
	if err != nil {
		return false, fmt.Errorf("claim webhook id %s: %w", webhookID, t.failed(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim webhook id %s: %w", webhookID, err)
	}
	return n == 1, nil
}

func (t *tx) HoldObservation(ctx context.Context, obs training.Observation) error {
	if obs.TrainingID == "" {
		return errors.New("hold observation: empty training id")
	}
	ctx, st, err := t.begin(ctx, stmtHold)
	if err != nil {
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
	if _, err := st.ExecContext(ctx, obs.TrainingID, doc, at); err != nil {
		return fmt.Errorf("hold observation for training %s: %w", obs.TrainingID, t.failed(err))
	}
	return nil
}

func (t *tx) TakeHeld(ctx context.Context, trainingID string) ([]training.Observation, error) {
	if trainingID == "" {
		return nil, nil
	}
	obs, err := t.takeHeld(ctx, trainingID)
	if err != nil {
		err = t.failed(err)
		return nil, fmt.Errorf("take held observations for training %s: %w", trainingID, err)
	}
	return obs, nil
}

func (t *tx) takeHeld(ctx context.Context, trainingID string) ([]training.Observation, error) {
	ctx, st, err := t.begin(ctx, stmtTakeHeld)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, trainingID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type held struct {
		id  int64
		doc string
	}
	var hs []held
	for rows.Next() {
		var h held
		if err := rows.Scan(&h.id, &h.doc); err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, nil
	}
	slices.SortFunc(hs, func(a, b held) int { return cmp.Compare(a.id, b.id) })
	out := make([]training.Observation, len(hs))
	for i, h := range hs {
		if out[i], err = store.DecodeObservation([]byte(h.doc)); err != nil {
			return nil, fmt.Errorf("decode held observation %d: %w", h.id, err)
		}
	}
	return out, nil
}

func (t *tx) ClaimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]training.Model, error) {
	if limit <= 0 {
		return nil, nil
	}
	ms, err := t.claimDue(ctx, now, leaseUntil, limit)
	if err != nil {
		err = t.failed(err)
		return nil, fmt.Errorf("claim due models: %w", err)
	}
	return ms, nil
}

func (t *tx) claimDue(ctx context.Context, now, leaseUntil time.Time, limit int) ([]training.Model, error) {
	ctx, st, err := t.begin(ctx, stmtSelectDue)
	if err != nil {
		return nil, err
	}
	var e encoder
	nowArg, leaseArg := e.time("now", now), e.time("lease", leaseUntil)
	if e.err != nil {
		return nil, e.err
	}
	if nowArg == nil || leaseArg == nil {
		return nil, errors.New("now and lease must be set")
	}
	rows, err := st.QueryContext(ctx, nowArg, limit)
	if err != nil {
		return nil, err
	}
	var ms []training.Model
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		ms = append(ms, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// One single-row update per claimed model: SQLite's UPDATE ... RETURNING
	// gives rows in no set order, and the caller wants oldest first. The
	// lease is a write, so it moves the version like any other.
	lease := time.Unix(0, leaseArg.(int64)).UTC()
	for i := range ms {
		if _, err := t.s.wstmts[stmtLease].ExecContext(ctx, leaseArg, ms[i].ID); err != nil {
			return nil, fmt.Errorf("lease model %s: %w", ms[i].ID, err)
		}
		l := lease
		ms[i].NextCheckAt = &l
		ms[i].Version++
	}
	return ms, nil
}

func (t *tx) Setting(ctx context.Context, name string) (string, error) {
	ctx, st, err := t.begin(ctx, stmtSetting)
	if err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, err)
	}
	var v string
	if err := st.QueryRowContext(ctx, name).Scan(&v); err != nil {
		return "", fmt.Errorf("read setting %s: %w", name, notFound(t.failed(err)))
	}
	return v, nil
}

func (t *tx) PutSettingIfAbsent(ctx context.Context, name, value string) (string, error) {
	ctx, st, err := t.begin(ctx, stmtInsertSetting)
	if err != nil {
		return "", fmt.Errorf("put setting %s: %w", name, err)
	}
	if _, err := st.ExecContext(ctx, name, value); err != nil {
		return "", fmt.Errorf("put setting %s: %w", name, t.failed(err))
	}
	var v string
	if err := t.s.wstmts[stmtSetting].QueryRowContext(ctx, name).Scan(&v); err != nil {
		return "", fmt.Errorf("put setting %s: read back: %w", name, t.failed(err))
	}
	return v, nil
}
