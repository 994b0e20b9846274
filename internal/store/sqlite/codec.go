package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Times are stored as unix nanoseconds, which int64 holds from 1677 to 2262.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// encoder turns Go values into SQL arguments and remembers the first value
// it could not store, so callers check once per row instead of per field.
type encoder struct{ err error }

func (e *encoder) time(field string, t time.Time) any {
	if t.IsZero() {
		return nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		if e.err == nil {
			e.err = fmt.Errorf("%s %s is outside the storable range 1678..2262", field, t.Format(time.RFC3339))
		}
		return nil
	}
	return t.UnixNano()
}

func (e *encoder) timePtr(field string, t *time.Time) any {
	if t == nil {
		return nil
	}
	return e.time(field, *t)
}

// jsonText passes JSON as TEXT: go-sqlite3 would bind a []byte as a BLOB,
// which SQLite's JSON functions read as its binary JSONB format.
func jsonText(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func decodeTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

func decodeTimePtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.Unix(0, n.Int64).UTC()
	return &t
}

func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	return json.RawMessage(b)
}

// modelColumns is the column list every model query selects, in the order
// scanModel reads.
const modelColumns = `id, name, training_id, trainer, destination, input, status, remote_status,
	output, error, progress_percent, progress_step, progress_total, log_tail, log_len, metadata,
	flagged, idempotency_key, created_at, started_at, completed_at, updated_at, next_check_at,
	check_attempts, not_found_since, not_found_checks, archived_at, retry_of, web_url, version`

type scanner interface{ Scan(dest ...any) error }

func scanModel(row scanner) (training.Model, error) {
	var (
		m                       training.Model
		input, output, metadata []byte
		created, started, done  sql.NullInt64
		updated, next           sql.NullInt64
		notFound, archived      sql.NullInt64
		status                  string
		flagged                 int64
	)
	err := row.Scan(&m.ID, &m.Name, &m.TrainingID, &m.Trainer, &m.Destination, &input, &status, &m.RemoteStatus,
		&output, &m.Error, &m.Progress.Percent, &m.Progress.Step, &m.Progress.Total, &m.LogTail, &m.LogLen, &metadata,
		&flagged, &m.IdempotencyKey, &created, &started, &done, &updated, &next,
		&m.CheckAttempts, &notFound, &m.NotFoundChecks, &archived, &m.RetryOf, &m.WebURL, &m.Version)
	if err != nil {
		return training.Model{}, err
	}
	if m.LogTail, err = unpackText(m.LogTail); err != nil {
		return training.Model{}, fmt.Errorf("log tail of model %s: %w", m.ID, err)
	}
	m.Status = training.Status(status)
	m.Input, m.Output, m.Metadata = rawJSON(input), rawJSON(output), rawJSON(metadata)
	m.Flagged = flagged != 0
	m.CreatedAt, m.UpdatedAt = decodeTime(created), decodeTime(updated)
	m.StartedAt, m.CompletedAt, m.NextCheckAt = decodeTimePtr(started), decodeTimePtr(done), decodeTimePtr(next)
	m.NotFoundSince, m.ArchivedAt = decodeTimePtr(notFound), decodeTimePtr(archived)
	return m, nil
}

// modelArgs are the values of every column but id and version, in the order
// of insertModelSQL and updateModelSQL.
func modelArgs(m *training.Model) ([]any, error) {
	var e encoder
	args := []any{
		m.Name, strings.ToLower(m.Name), m.TrainingID, m.Trainer, m.Destination, jsonText(m.Input),
		string(m.Status), m.RemoteStatus, jsonText(m.Output), m.Error,
		m.Progress.Percent, int64(m.Progress.Step), int64(m.Progress.Total), packText(m.LogTail), int64(m.LogLen),
		jsonText(m.Metadata), boolInt(m.Flagged), m.IdempotencyKey,
		e.time("created_at", m.CreatedAt), e.timePtr("started_at", m.StartedAt),
		e.timePtr("completed_at", m.CompletedAt), e.time("updated_at", m.UpdatedAt),
		e.timePtr("next_check_at", m.NextCheckAt), int64(m.CheckAttempts),
		e.timePtr("not_found_since", m.NotFoundSince), int64(m.NotFoundChecks),
		e.timePtr("archived_at", m.ArchivedAt), m.RetryOf, m.WebURL,
		m.ID, // last but one or last: see the SQL
	}
	return args, e.err
}

// modelStateColumns lists the columns modelStateArgs gives values for,
// before id: those a report changes (see stmtUpdateModelState).
const modelStateColumns = `status = ?, remote_status = ?, output = ?, error = ?,
	progress_percent = ?, progress_step = ?, progress_total = ?, log_tail = ?, log_len = ?,
	flagged = ?, started_at = ?, completed_at = ?, updated_at = ?, next_check_at = ?, check_attempts = ?,
	not_found_since = ?, not_found_checks = ?, archived_at = ?, web_url = ?`

// modelStateArgs are the values of modelStateColumns, then the id.
func modelStateArgs(m *training.Model) ([]any, error) {
	var e encoder
	args := []any{
		string(m.Status), m.RemoteStatus, jsonText(m.Output), m.Error,
		m.Progress.Percent, int64(m.Progress.Step), int64(m.Progress.Total), packText(m.LogTail), int64(m.LogLen),
		boolInt(m.Flagged), e.timePtr("started_at", m.StartedAt), e.timePtr("completed_at", m.CompletedAt),
		e.time("updated_at", m.UpdatedAt), e.timePtr("next_check_at", m.NextCheckAt), int64(m.CheckAttempts),
		e.timePtr("not_found_since", m.NotFoundSince), int64(m.NotFoundChecks), e.timePtr("archived_at", m.ArchivedAt), m.WebURL,
		m.ID,
	}
	return args, e.err
}

const deliveryColumns = `id, webhook_id, received_at, verified, reason, outcome, training_id, model_id, remote_status,
	timestamp, signature, replay_of, payload`

func scanDelivery(row scanner) (training.Delivery, error) {
	var (
		d        training.Delivery
		received sql.NullInt64
		verified int64
	)
	err := row.Scan(&d.ID, &d.WebhookID, &received, &verified, &d.Reason, &d.Outcome,
		&d.TrainingID, &d.ModelID, &d.RemoteStatus, &d.Timestamp, &d.Signature, &d.ReplayOf, &d.Payload)
	if err != nil {
		return training.Delivery{}, err
	}
	if d.Payload, err = unpack(d.Payload); err != nil {
		return training.Delivery{}, fmt.Errorf("payload of delivery %d: %w", d.ID, err)
	}
	d.ReceivedAt = decodeTime(received)
	d.Verified = verified != 0
	if len(d.Payload) == 0 {
		d.Payload = nil
	}
	return d, nil
}

const historyColumns = `id, model_id, from_status, to_status, remote_status, decision, source, source_ref, note, at`

func scanHistory(row scanner) (training.HistoryEntry, error) {
	var (
		h                          training.HistoryEntry
		from, to, decision, source string
		at                         sql.NullInt64
	)
	err := row.Scan(&h.ID, &h.ModelID, &from, &to, &h.RemoteStatus, &decision, &source, &h.SourceRef, &h.Note, &at)
	if err != nil {
		return training.HistoryEntry{}, err
	}
	h.From, h.To = training.Status(from), training.Status(to)
	h.Decision, h.Source = training.Decision(decision), training.Source(source)
	h.At = decodeTime(at)
	return h, nil
}

// Errors.

func sqliteCode(err error) sqlite3.ErrNoExtended {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode
	}
	return 0
}

func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrBusy
}

func isConstraint(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrConstraint
}

func isUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.ErrConstraintUnique || c == sqlite3.ErrConstraintPrimaryKey
}

// duplicateModel says which unique value of m is taken.
func duplicateModel(err error, m *training.Model) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "models.training_id"):
		return fmt.Errorf("%w: training id %q belongs to another model", store.ErrDuplicate, m.TrainingID)
	case strings.Contains(msg, "models.idempotency_key"):
		return fmt.Errorf("%w: idempotency key is taken", store.ErrDuplicate)
	case strings.Contains(msg, "models.id"):
		return fmt.Errorf("%w: model id %s exists", store.ErrDuplicate, m.ID)
	}
	return fmt.Errorf("%w: %v", store.ErrDuplicate, err)
}

// notFound turns sql.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// stmtCtx checks ctx, then returns it without its cancellation.
//
// go-sqlite3 runs every statement given a cancellable context on a new
// goroutine so it can interrupt it, which costs more than our single-row
// statements themselves. They finish in microseconds, so a cancellation is
// honoured between statements instead, and Write rolls back.
func stmtCtx(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ctx.Done() == nil {
		return ctx, nil
	}
	return context.WithoutCancel(ctx), nil
}
