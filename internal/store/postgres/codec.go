package postgres

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// The storable range of times is SQLite's (unix nanoseconds in an int64), so
// that both stores accept the same values and a database can move between
// them. PostgreSQL itself keeps microseconds from 4713 BC.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// encoder turns Go values into statement arguments and remembers the first
// value it could not store, so callers check once per row instead of per
// field. Every check happens here, before anything is sent: PostgreSQL
// aborts the whole transaction on a failed statement, and a batch of
// deliveries shares one transaction, so one bad value must never reach the
// server.
type encoder struct{ err error }

func (e *encoder) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

func (e *encoder) time(field string, t time.Time) any {
	if t.IsZero() {
		return nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		e.fail(fmt.Errorf("%s %s is outside the storable range 1678..2262", field, t.Format(time.RFC3339)))
		return nil
	}
	return t
}

func (e *encoder) timePtr(field string, t *time.Time) any {
	if t == nil {
		return nil
	}
	return e.time(field, *t)
}

// json passes a JSON value, or NULL for none. PostgreSQL's json type checks
// the syntax, so invalid JSON is refused here rather than by the server (in
// SQLite a CHECK constraint refuses it without spoiling the transaction).
func (e *encoder) json(field string, b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	if !json.Valid(b) {
		e.fail(fmt.Errorf("%s is not valid JSON", field))
		return nil
	}
	if !utf8.Valid(b) {
		// Only string contents can hold such bytes, so the result is valid JSON.
		b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	return []byte(b)
}

// text makes s storable in a PostgreSQL text value, which must be UTF-8
// without NUL bytes (SQLite takes any bytes). Such strings come only from
// outside (a header, a log line); rather than abort the transaction, each
// invalid byte and each NUL becomes U+FFFD. Every text argument, lookups
// included, goes through it: a lookup with the same bad key then finds the
// row stored under the replaced key.
func text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// storedTime is t as PostgreSQL keeps it: microseconds, in UTC.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Microsecond).UTC()
}

func storedTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := storedTime(*t)
	return &u
}

// storedTimes sets m's times to what was stored. The service keeps using
// the model it wrote (it returns it from the API, publishes it), and its
// clock has nanoseconds: without this, a model read back later would
// differ from the one the caller was given (the SQLite store keeps
// nanoseconds, so there they agree anyway).
func storedTimes(m *training.Model) {
	m.CreatedAt, m.UpdatedAt = storedTime(m.CreatedAt), storedTime(m.UpdatedAt)
	m.StartedAt, m.CompletedAt, m.NextCheckAt = storedTimePtr(m.StartedAt), storedTimePtr(m.CompletedAt), storedTimePtr(m.NextCheckAt)
	m.NotFoundSince, m.ArchivedAt = storedTimePtr(m.NotFoundSince), storedTimePtr(m.ArchivedAt)
}

func decodeTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

func decodeTimePtr(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
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

// prefixed returns a column list with each name qualified by table alias p.
func prefixed(p, columns string) string {
	fields := strings.Split(columns, ",")
	for i, f := range fields {
		fields[i] = p + "." + strings.TrimSpace(f)
	}
	return strings.Join(fields, ", ")
}

func scanModel(row pgx.Row) (training.Model, error) {
	var (
		m                       training.Model
		input, output, metadata []byte
		created, started, done  pgtype.Timestamptz
		updated, next           pgtype.Timestamptz
		notFound, archived      pgtype.Timestamptz
		notFoundChecks          int64
		status                  string
		step, total, logLen     int64
		attempts                int64
	)
	err := row.Scan(&m.ID, &m.Name, &m.TrainingID, &m.Trainer, &m.Destination, &input, &status, &m.RemoteStatus,
		&output, &m.Error, &m.Progress.Percent, &step, &total, &m.LogTail, &logLen, &metadata,
		&m.Flagged, &m.IdempotencyKey, &created, &started, &done, &updated, &next,
		&attempts, &notFound, &notFoundChecks, &archived, &m.RetryOf, &m.WebURL, &m.Version)
	if err != nil {
		return training.Model{}, err
	}
	m.Status = training.Status(status)
	m.Progress.Step, m.Progress.Total, m.LogLen, m.CheckAttempts = int(step), int(total), int(logLen), int(attempts)
	m.Input, m.Output, m.Metadata = rawJSON(input), rawJSON(output), rawJSON(metadata)
	m.CreatedAt, m.UpdatedAt = decodeTime(created), decodeTime(updated)
	m.StartedAt, m.CompletedAt, m.NextCheckAt = decodeTimePtr(started), decodeTimePtr(done), decodeTimePtr(next)
	m.NotFoundSince, m.ArchivedAt, m.NotFoundChecks = decodeTimePtr(notFound), decodeTimePtr(archived), int(notFoundChecks)
	return m, nil
}

// modelArgs are the values of every column but version, in the order of
// insertModelSQL and updateModelSQL: $1..$29, then id as $30.
func modelArgs(m *training.Model) ([]any, error) {
	var e encoder
	args := []any{
		text(m.Name), text(strings.ToLower(m.Name)), text(m.TrainingID), text(m.Trainer), text(m.Destination),
		e.json("input", m.Input),
		text(string(m.Status)), text(m.RemoteStatus), e.json("output", m.Output), text(m.Error),
		m.Progress.Percent, int64(m.Progress.Step), int64(m.Progress.Total), text(m.LogTail), int64(m.LogLen),
		e.json("metadata", m.Metadata), m.Flagged, text(m.IdempotencyKey),
		e.time("created_at", m.CreatedAt), e.timePtr("started_at", m.StartedAt),
		e.timePtr("completed_at", m.CompletedAt), e.time("updated_at", m.UpdatedAt),
		e.timePtr("next_check_at", m.NextCheckAt), int64(m.CheckAttempts),
		e.timePtr("not_found_since", m.NotFoundSince), int64(m.NotFoundChecks),
		e.timePtr("archived_at", m.ArchivedAt), text(m.RetryOf), text(m.WebURL),
		text(m.ID),
	}
	return args, e.err
}

const deliveryColumns = `id, webhook_id, received_at, verified, reason, outcome, training_id, model_id, remote_status,
	timestamp, signature, replay_of, payload`

func scanDelivery(row pgx.Row) (training.Delivery, error) {
	var (
		d        training.Delivery
		received pgtype.Timestamptz
	)
	err := row.Scan(&d.ID, &d.WebhookID, &received, &d.Verified, &d.Reason, &d.Outcome,
		&d.TrainingID, &d.ModelID, &d.RemoteStatus, &d.Timestamp, &d.Signature, &d.ReplayOf, &d.Payload)
	if err != nil {
		return training.Delivery{}, err
	}
	d.ReceivedAt = decodeTime(received)
	if len(d.Payload) == 0 {
		d.Payload = nil
	}
	return d, nil
}

const historyColumns = `id, model_id, from_status, to_status, remote_status, decision, source, source_ref, note, at`

func scanHistory(row pgx.Row) (training.HistoryEntry, error) {
	var (
		h                          training.HistoryEntry
		from, to, decision, source string
		at                         pgtype.Timestamptz
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

// notFound turns pgx.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
