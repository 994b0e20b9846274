package postgres

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/store/storetest"
	"github.com/trainhook/trainhook/internal/training"
)

// openTest opens a store on a new database of the test server.
func openTest(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	url := pgtest.URL(t)
	s, err := Open(t.Context(), url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, url
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTest(t)
		return s
	})
}

func TestMigrationFiles(t *testing.T) {
	if migrationsErr != nil {
		t.Fatal(migrationsErr)
	}
	if len(migrations) == 0 || migrations[0].Name != "0001_init.sql" {
		t.Fatalf("embedded migrations = %v", migrations)
	}
	// The two stores' migrations stay in step: same numbers, same names.
	sqliteFiles, err := filepath.Glob("../sqlite/migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range sqliteFiles {
		want = append(want, filepath.Base(f))
	}
	var got []string
	for _, m := range migrations {
		got = append(got, m.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("PostgreSQL migrations %v, SQLite migrations %v: add the same numbered file to both", got, want)
	}
}

// The schema has the same tables and columns as SQLite's, so a record means
// the same in both stores.
func TestSchemaMatchesSQLite(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "schema.db")
	ls, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	ls.Close()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	columns := func(rows interface {
		Next() bool
		Scan(...any) error
		Err() error
		Close() error
	}, err error) map[string][]string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string][]string{}
		for rows.Next() {
			var table, column string
			if err := rows.Scan(&table, &column); err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], column)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := columns(db.QueryContext(ctx, `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> 'schema_migrations' ORDER BY m.name, p.cid`))
	s, _ := openTest(t)
	pgRows, err := s.pool.Query(ctx, `SELECT table_name::text, column_name::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name <> 'schema_migrations' ORDER BY table_name, ordinal_position`)
	got := columns(pgRowsAdapter{pgRows}, err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PostgreSQL tables and columns:\n%v\nSQLite's:\n%v", got, want)
	}
}

type pgRowsAdapter struct{ pgx.Rows }

func (r pgRowsAdapter) Close() error { r.Rows.Close(); return nil }

func TestReopenIsNoOpAndKeepsData(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	m := training.Model{ID: training.NewID(time.Now()), Name: "kept", Status: training.Pending, CreatedAt: time.Now()}
	if err := s.Write(ctx, func(tx store.Tx) error { return tx.InsertModel(ctx, &m) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for range 2 {
		s, err = Open(ctx, url)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		applied, latest, err := s.Migrated(ctx)
		if err != nil || applied != latest || latest != len(migrations) {
			t.Errorf("Migrated = %d, %d, %v", applied, latest, err)
		}
		var rows int
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&rows); err != nil || rows != latest {
			t.Errorf("schema_migrations has %d rows (%v), want %d: a migration ran twice", rows, err, latest)
		}
		if got, err := s.GetModel(ctx, m.ID); err != nil || got.Name != "kept" {
			t.Errorf("after reopening: %+v, %v", got, err)
		}
		s.Close()
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := t.Context()
	s, url := openTest(t)
	newer := len(migrations) + 1
	if _, err := s.pool.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", newer); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, url)
	if err == nil {
		s2.Close()
		t.Fatal("Open accepted a database migrated by a newer binary")
	}
	if !errors.Is(err, errNewerSchema) {
		t.Errorf("error %v is not errNewerSchema", err)
	}
	for _, want := range []string{"newer", "version", "127.0.0.1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), mustPassword(t, url)) {
		t.Errorf("error %q shows the password", err)
	}
}

func mustPassword(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil || cfg.Password == "" {
		t.Skip("the test server URL has no password")
	}
	return cfg.Password
}

func TestOpenErrorsHideThePassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, url := range []string{
		"postgres://u:s3cr3t-pw@127.0.0.1:1/db?connect_timeout=2",
		"postgres://u:s3cr3t-pw@127.0.0.1:1/db?sslmode=bogus",
		"postgres://u:s3cr3t-pw@[::1/db",
	} {
		s, err := Open(ctx, url)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Errorf("Open error shows the password: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "open PostgreSQL database") {
			t.Errorf("Open error %q does not say what failed", err)
		}
	}
}

// Several instances starting at once on a new database: the migrations run
// once, and every instance ends up ready.
func TestConcurrentOpen(t *testing.T) {
	url := pgtest.URL(t)
	var wg sync.WaitGroup
	stores := make([]*Store, 5)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Error(err)
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	var rows int
	if err := stores[0].pool.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&rows); err != nil || rows != len(migrations) {
		t.Errorf("schema_migrations has %d rows (%v), want %d", rows, err, len(migrations))
	}
}

// The defaults apply unless the URL sets its own.
func TestRuntimeParams(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	show := func(s *Store, name string) string {
		t.Helper()
		var v string
		if err := s.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, want := range map[string]string{"statement_timeout": "30s", "lock_timeout": "10s",
		"idle_in_transaction_session_timeout": "1min", "application_name": "trainhook"} {
		if got := show(s, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	s2, err := Open(ctx, url+sep+"statement_timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := show(s2, "statement_timeout"); got != "5s" {
		t.Errorf("statement_timeout from the URL: %s, want 5s", got)
	}
}

// The queries that must stay fast on a large table can use their index.
// (With enable_seqscan off, so the plan does not depend on the table's size.)
func TestQueryPlans(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off; SET enable_bitmapscan = off"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "RESET enable_seqscan; RESET enable_bitmapscan")
	now := time.Now()
	for _, tc := range []struct {
		name, q string
		args    []any
		want    string
		sorts   bool // sorts only the rows found (ClaimDue, TakeHeld), after the limit
	}{
		{"model by training id", selectModelByTrainingID, []any{"t"}, "models_training_id", false},
		{"model by key", selectModelByIdempotencyKey, []any{"k"}, "models_idempotency_key", false},
		{"due", claimDueSQL, []any{now, now, 10}, "models_due", true},
		{"take held", takeHeld, []any{"t"}, "held_training", true},
		{"history", "SELECT " + historyColumns + " FROM history WHERE model_id = $1 ORDER BY id", []any{"m"}, "history_model", false},
		{"list all", "SELECT id FROM models ORDER BY id DESC LIMIT 50", nil, "models_pkey", false},
		{"list by status", "SELECT id FROM models WHERE status = $1 AND id < $2 ORDER BY id DESC LIMIT 50", []any{"Ready", "z"}, "models_status_id", false},
		{"refused deliveries", "SELECT id FROM deliveries WHERE NOT verified AND id < $1 ORDER BY id DESC LIMIT 50", []any{9}, "deliveries_refused", false},
		{"deliveries by outcome", "SELECT id FROM deliveries WHERE outcome = $1 ORDER BY id DESC LIMIT 50", []any{"x"}, "deliveries_outcome", false},
		{"deliveries by model", "SELECT id FROM deliveries WHERE model_id = $1 ORDER BY id DESC LIMIT 50", []any{"m"}, "deliveries_model", false},
		{"models by training id", "SELECT id FROM models WHERE training_id <> '' AND training_id = ANY($1)", []any{[]string{"a", "b"}}, "models_training_id", false},
		// Before ANALYZE has seen a backlog, the claim must still walk the
		// due rows in order rather than sort every pending one.
		{"claim notifications", claimNotifications, []any{now, now, 10, "lease"}, "notifications_due", false},
		{"failed notifications", "SELECT id FROM notifications WHERE status = $1 ORDER BY id DESC LIMIT 50", []any{"failed"}, "notifications_failed", false},
	} {
		rows, err := conn.Query(ctx, "EXPLAIN "+tc.q, tc.args...)
		if err != nil {
			t.Fatalf("%s: EXPLAIN: %v", tc.name, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, tc.want) || !tc.sorts && strings.Contains(plan, "Sort") {
			t.Errorf("%s: plan\n%s\nwant %s and no sort", tc.name, plan, tc.want)
		}
	}
}

// PostgreSQL keeps microseconds; the service's clock has nanoseconds. After
// InsertModel and UpdateModel the caller's model has the times as stored,
// so what the service returns and publishes equals what it reads later.
func TestCallerHoldsWhatIsStored(t *testing.T) {
	s, _ := openTest(t)
	ns := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	later := ns.Add(time.Minute + 999)
	m := training.Model{ID: training.NewID(ns), Name: "ns", Status: training.Training, CreatedAt: ns, UpdatedAt: ns, NextCheckAt: &later}
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error { return tx.InsertModel(ctx, &m) })
	check := func(what string) {
		t.Helper()
		got, err := s.GetModel(t.Context(), m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.CreatedAt != m.CreatedAt || got.UpdatedAt != m.UpdatedAt || *got.NextCheckAt != *m.NextCheckAt || got.StartedAt != nil {
			t.Errorf("%s: caller holds %v %v %v, stored %v %v %v", what, m.CreatedAt, m.UpdatedAt, *m.NextCheckAt, got.CreatedAt, got.UpdatedAt, *got.NextCheckAt)
		}
	}
	check("after InsertModel")
	m.UpdatedAt = later
	m.NextCheckAt = &ns
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateModel(ctx, &m) })
	check("after UpdateModel")
}
