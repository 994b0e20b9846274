package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Reads run on the read pool, each statement in its own implicit
// transaction: it sees the last commit and never waits for the writer.

const (
	readModel = iota
	readHistory
	readDelivery
	readCountModels
	numReadStmts
)

var readSQL = [numReadStmts]string{
	readModel:       `SELECT ` + modelColumns + ` FROM models WHERE id = ?`,
	readHistory:     `SELECT ` + historyColumns + ` FROM history WHERE model_id = ? ORDER BY id`,
	readDelivery:    `SELECT ` + deliveryColumns + ` FROM deliveries WHERE id = ?`,
	readCountModels: `SELECT status, count(*) FROM models GROUP BY status`,
}

// MaxLimit is the most rows one ListModels or ListDeliveries call returns.
const MaxLimit = 1000

func clampLimit(n int) int {
	return min(max(n, 1), MaxLimit)
}

// GetModel reads one model.
func (s *Store) GetModel(ctx context.Context, id string) (training.Model, error) {
	m, err := scanModel(s.rstmts[readModel].QueryRowContext(ctx, id))
	if err != nil {
		return training.Model{}, fmt.Errorf("get model %s: %w", id, notFound(err))
	}
	return m, nil
}

// ListModels returns models newest first. Each filter shape has its index:
// with a status, models_status_id gives rows in id order within it; without
// one, the primary key does. A name query is a substring match on the
// lower-cased name, so it reads rows in that order until it has enough; no
// index helps a substring, but it never sorts.
func (s *Store) ListModels(ctx context.Context, f store.ModelFilter) ([]training.Model, error) {
	var (
		q     strings.Builder
		args  = make([]any, 0, 4)
		where = " WHERE"
	)
	q.WriteString("SELECT " + modelColumns + " FROM models")
	if f.Status != "" {
		q.WriteString(where + " status = ?")
		args = append(args, string(f.Status))
		where = " AND"
	}
	if !f.Archived {
		q.WriteString(where + " archived_at IS NULL")
		where = " AND"
	}
	if f.Before != "" {
		q.WriteString(where + " id < ?")
		args = append(args, f.Before)
		where = " AND"
	}
	if f.Query != "" {
		q.WriteString(where + ` name_fold LIKE ? ESCAPE '\'`)
		args = append(args, "%"+escapeLike(strings.ToLower(f.Query))+"%")
	}
	q.WriteString(" ORDER BY id DESC LIMIT ?")
	args = append(args, clampLimit(f.Limit))
	rows, err := s.r.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	defer rows.Close()
	ms := make([]training.Model, 0, min(clampLimit(f.Limit), 64))
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return ms, nil
}

// ModelsByTrainingID looks each id up in models_training_id ("<> ”" lets
// SQLite use the partial index).
func (s *Store) ModelsByTrainingID(ctx context.Context, ids []string) ([]training.Model, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.r.QueryContext(ctx, modelsByTrainingIDSQL(len(ids)), args...)
	if err != nil {
		return nil, fmt.Errorf("look up models of %d training ids: %w", len(ids), err)
	}
	defer rows.Close()
	var ms []training.Model
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return nil, fmt.Errorf("look up models by training id: %w", err)
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up models by training id: %w", err)
	}
	return ms, nil
}

func modelsByTrainingIDSQL(n int) string {
	return "SELECT " + modelColumns + " FROM models WHERE training_id <> '' AND training_id IN (?" + strings.Repeat(", ?", n-1) + ")"
}

// escapeLike makes s match itself literally in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	if !strings.ContainsAny(s, `\%_`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// History returns a model's history in the order it was written.
func (s *Store) History(ctx context.Context, modelID string) ([]training.HistoryEntry, error) {
	rows, err := s.rstmts[readHistory].QueryContext(ctx, modelID)
	if err != nil {
		return nil, fmt.Errorf("read history of model %s: %w", modelID, err)
	}
	defer rows.Close()
	var hs []training.HistoryEntry
	for rows.Next() {
		h, err := scanHistory(rows)
		if err != nil {
			return nil, fmt.Errorf("read history of model %s: %w", modelID, err)
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read history of model %s: %w", modelID, err)
	}
	return hs, nil
}

// ListDeliveries returns deliveries newest first, payloads included.
func (s *Store) ListDeliveries(ctx context.Context, f store.DeliveryFilter) ([]training.Delivery, error) {
	var (
		q     strings.Builder
		args  = make([]any, 0, 4)
		where = " WHERE"
	)
	q.WriteString("SELECT " + deliveryColumns + " FROM deliveries")
	if f.Verified != nil {
		// A literal, not a parameter: only "verified = 0" written out lets
		// SQLite use the partial index deliveries_refused.
		if *f.Verified {
			q.WriteString(where + " verified = 1")
		} else {
			q.WriteString(where + " verified = 0")
		}
		where = " AND"
	}
	if f.Outcome != "" {
		q.WriteString(where + " outcome = ?")
		args = append(args, f.Outcome)
		where = " AND"
	}
	if f.ModelID != "" {
		q.WriteString(where + " model_id = ?")
		args = append(args, f.ModelID)
		where = " AND"
	}
	if f.Before > 0 {
		q.WriteString(where + " id < ?")
		args = append(args, f.Before)
	}
	q.WriteString(" ORDER BY id DESC LIMIT ?")
	args = append(args, clampLimit(f.Limit))
	rows, err := s.r.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	ds := make([]training.Delivery, 0, min(clampLimit(f.Limit), 64))
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("list deliveries: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return ds, nil
}

// GetDelivery reads one delivery with its payload.
func (s *Store) GetDelivery(ctx context.Context, id int64) (training.Delivery, error) {
	d, err := scanDelivery(s.rstmts[readDelivery].QueryRowContext(ctx, id))
	if err != nil {
		return training.Delivery{}, fmt.Errorf("get delivery %d: %w", id, notFound(err))
	}
	return d, nil
}

// CountModels counts models by status. Every known status is in the map,
// with 0 when no model has it. The count reads the models_status_id index,
// not the table.
func (s *Store) CountModels(ctx context.Context) (map[training.Status]int, error) {
	rows, err := s.rstmts[readCountModels].QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("count models: %w", err)
	}
	defer rows.Close()
	counts := make(map[training.Status]int, len(training.Statuses))
	for _, st := range training.Statuses {
		counts[st] = 0
	}
	for rows.Next() {
		var (
			st string
			n  int
		)
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count models: %w", err)
		}
		counts[training.Status(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count models: %w", err)
	}
	return counts, nil
}
