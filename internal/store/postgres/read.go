package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Reads run on the pool, each statement in its own implicit transaction:
// MVCC gives it the last committed state, and it never waits for a writer.

// MaxLimit is the most rows one ListModels or ListDeliveries call returns.
const MaxLimit = 1000

func clampLimit(n int) int {
	return min(max(n, 1), MaxLimit)
}

// GetModel reads one model.
func (s *Store) GetModel(ctx context.Context, id string) (training.Model, error) {
	m, err := scanModel(s.pool.QueryRow(ctx, selectModelByID, text(id)))
	if err != nil {
		return training.Model{}, fmt.Errorf("get model %s: %w", id, notFound(err))
	}
	return m, nil
}

// ModelsByTrainingID looks the ids up in one statement.
func (s *Store) ModelsByTrainingID(ctx context.Context, ids []string) ([]training.Model, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+modelColumns+` FROM models WHERE training_id <> '' AND training_id = ANY($1)`, textAll(ids))
	if err != nil {
		return nil, fmt.Errorf("look up models of %d training ids on %s: %w", len(ids), s.desc, err)
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
		return nil, fmt.Errorf("look up models by training id on %s: %w", s.desc, err)
	}
	return ms, nil
}

// args builds a statement's argument list and numbers its placeholders.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// ListModels returns models newest first, by keyset on id. With a status,
// models_status_id gives rows in id order within it; without one, the
// primary key does.
//
// A name query matches name_fold, the name lower-cased by Go when it was
// written, with LIKE and the query lower-cased the same way, rather than
// ILIKE on the name: ILIKE folds case by the database's locale (in a "C"
// database 'Ü' ILIKE 'ü' is false), and this way both stores fold alike
// whatever the server's settings. LIKE's wildcards in the query are
// escaped. No index helps a substring, but the scan runs in id order and
// stops at the limit; it never sorts.
func (s *Store) ListModels(ctx context.Context, f store.ModelFilter) ([]training.Model, error) {
	var (
		q     strings.Builder
		a     = make(args, 0, 4)
		where = " WHERE"
	)
	q.WriteString("SELECT " + modelColumns + " FROM models")
	if f.Status != "" {
		q.WriteString(where + " status = " + a.add(text(string(f.Status))))
		where = " AND"
	}
	if !f.Archived {
		q.WriteString(where + " archived_at IS NULL")
		where = " AND"
	}
	if f.Before != "" {
		q.WriteString(where + " id < " + a.add(text(f.Before)))
		where = " AND"
	}
	if f.Query != "" {
		q.WriteString(where + " name_fold LIKE " + a.add("%"+escapeLike(text(strings.ToLower(f.Query)))+"%") + ` ESCAPE E'\\'`)
	}
	q.WriteString(" ORDER BY id DESC LIMIT " + a.add(clampLimit(f.Limit)))
	rows, err := s.pool.Query(ctx, q.String(), a...)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (training.Model, error) { return scanModel(r) })
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return ms, nil
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
	rows, err := s.pool.Query(ctx, `SELECT `+historyColumns+` FROM history WHERE model_id = $1 ORDER BY id`, text(modelID))
	if err != nil {
		return nil, fmt.Errorf("read history of model %s: %w", modelID, err)
	}
	hs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (training.HistoryEntry, error) { return scanHistory(r) })
	if err != nil {
		return nil, fmt.Errorf("read history of model %s: %w", modelID, err)
	}
	return hs, nil
}

// ListDeliveries returns deliveries newest first, payloads included.
func (s *Store) ListDeliveries(ctx context.Context, f store.DeliveryFilter) ([]training.Delivery, error) {
	var (
		q     strings.Builder
		a     = make(args, 0, 4)
		where = " WHERE"
	)
	q.WriteString("SELECT " + deliveryColumns + " FROM deliveries")
	if f.Verified != nil {
		// A literal, not a parameter: only "NOT verified" written out lets
		// the planner use the partial index deliveries_refused.
		if *f.Verified {
			q.WriteString(where + " verified")
		} else {
			q.WriteString(where + " NOT verified")
		}
		where = " AND"
	}
	if f.Outcome != "" {
		q.WriteString(where + " outcome = " + a.add(text(f.Outcome)))
		where = " AND"
	}
	if f.ModelID != "" {
		q.WriteString(where + " model_id = " + a.add(text(f.ModelID)))
		where = " AND"
	}
	if f.Before > 0 {
		q.WriteString(where + " id < " + a.add(f.Before))
	}
	q.WriteString(" ORDER BY id DESC LIMIT " + a.add(clampLimit(f.Limit)))
	rows, err := s.pool.Query(ctx, q.String(), a...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (training.Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return ds, nil
}

// GetDelivery reads one delivery with its payload.
func (s *Store) GetDelivery(ctx context.Context, id int64) (training.Delivery, error) {
	d, err := scanDelivery(s.pool.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM deliveries WHERE id = $1`, id))
	if err != nil {
		return training.Delivery{}, fmt.Errorf("get delivery %d: %w", id, notFound(err))
	}
	return d, nil
}

// CountModels counts models by status. Every known status is in the map,
// with 0 when no model has it.
func (s *Store) CountModels(ctx context.Context) (map[training.Status]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT status, count(*) FROM models GROUP BY status`)
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
			n  int64
		)
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count models: %w", err)
		}
		counts[training.Status(st)] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count models: %w", err)
	}
	return counts, nil
}
