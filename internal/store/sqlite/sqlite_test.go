package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/storetest"
	"github.com/trainhook/trainhook/internal/training"
)

// querier is what *sql.DB and *sql.Conn share.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func openTemp(t testing.TB, opts ...Option) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trainhook.db")
	s, err := Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t)
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
}

func TestReopenIsNoOpAndKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "trainhook.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	m := training.Model{ID: training.NewID(time.Now()), Name: "kept", Status: training.Pending, CreatedAt: time.Now()}
	if err := s.Write(ctx, func(tx store.Tx) error { return tx.InsertModel(ctx, &m) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s, err = Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		applied, latest, err := s.Migrated(ctx)
		if err != nil || applied != latest || latest != len(migrations) {
			t.Errorf("Migrated = %d, %d, %v", applied, latest, err)
		}
		var rows int
		if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&rows); err != nil || rows != latest {
			t.Errorf("schema_migrations has %d rows (%v), want %d: a migration ran twice", rows, err, latest)
		}
		if got, err := s.GetModel(ctx, m.ID); err != nil || got.Name != "kept" {
			t.Errorf("after reopening: %+v, %v", got, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := t.Context()
	s, path := openTemp(t)
	newer := len(migrations) + 1
	if _, err := s.wc.ExecContext(ctx, "INSERT INTO schema_migrations (version) VALUES (?)", newer); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // the file is held while open
		t.Fatal(err)
	}
	_, err := Open(ctx, path)
	if err == nil {
		t.Fatal("Open accepted a database migrated by a newer binary")
	}
	for _, want := range []string{path, "newer", "version"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpenErrorsNameTheFile(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "not-a-database.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not SQLite\n", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "file")
	if err := os.WriteFile(aFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "x.db"), "no such file or directory"},
		{"parent is a file", filepath.Join(aFile, "x.db"), "not a directory"},
		{"not a database", notDB, "not a database"},
		{"empty path", "", "file path is required"},
	} {
		s, err := Open(ctx, tc.path)
		if err == nil {
			s.Close()
			t.Errorf("%s: Open(%q) succeeded", tc.name, tc.path)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "open SQLite database at ") || !strings.Contains(msg, tc.path) || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q; want it to start with \"open SQLite database at\", name the path and say %q", tc.name, msg, tc.want)
		}
	}
}

func TestPathWithURICharacters(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "we?ird#dir%20x")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "db?mode=ro&x=1.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database is not at the path given: %v", err)
	}
}

// The durability settings are what Open promises, on every connection.
func TestPragmas(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t, WithBusyTimeout(1234*time.Millisecond))
	pragma := func(db querier, name string) string {
		t.Helper()
		var v string
		if err := db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v); err != nil {
			t.Fatalf("PRAGMA %s: %v", name, err)
		}
		return v
	}
	for _, tc := range []struct {
		db         querier
		conn, name string
		want       string
	}{
		{s.wc, "write", "journal_mode", "wal"},
		{s.wc, "write", "synchronous", "2"}, // FULL
		{s.wc, "write", "foreign_keys", "1"},
		{s.wc, "write", "busy_timeout", "1234"},
		{s.wc, "write", "journal_size_limit", "-1"}, // the checkpointer truncates
		{s.wc, "write", "wal_autocheckpoint", "0"},  // the checkpointer does it
		{s.r, "read", "journal_mode", "wal"},
		{s.r, "read", "query_only", "1"},
		{s.r, "read", "busy_timeout", "1234"},
	} {
		if got := pragma(tc.db, tc.name); got != tc.want {
			t.Errorf("%s connection: PRAGMA %s = %s, want %s", tc.conn, tc.name, got, tc.want)
		}
	}
	if _, err := s.r.ExecContext(ctx, "DELETE FROM settings"); err == nil {
		t.Error("a read connection accepted a write")
	}
	// Every Write begins with BEGIN IMMEDIATE, so it holds the write lock
	// from the start: another connection cannot begin a write meanwhile.
	if err := s.Write(ctx, func(store.Tx) error {
		other, err := sql.Open("sqlite3", "file:"+s.path+"?_busy_timeout=0&_txlock=immediate")
		if err != nil {
			return err
		}
		defer other.Close()
		if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err == nil {
			t.Error("another connection took the write lock during an empty Write")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Processes starting at once on a new file: each either has the file to
// itself and migrates it, or is refused (ErrInUse) while another holds it;
// none fails otherwise, and the file ends up migrated.
func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trainhook.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(t.Context(), path)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	opened := 0
	for _, err := range errs {
		switch {
		case err == nil:
			opened++
		case !errors.Is(err, ErrInUse):
			t.Error(err)
		}
	}
	if opened == 0 {
		t.Fatal("no Open got the file")
	}
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if applied, latest, err := s.Migrated(t.Context()); err != nil || applied != latest {
		t.Fatalf("after concurrent opens: schema %d of %d, %v", applied, latest, err)
	}
}

// The queries that must stay fast on a large table use an index. This checks
// the plans, which do not depend on the machine; BenchmarkListModels100k
// measures the time.
func TestQueryPlans(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t)
	plan := func(db querier, q string, args ...any) string {
		t.Helper()
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatalf("EXPLAIN %s: %v", q, err)
		}
		defer rows.Close()
		var lines []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, detail)
		}
		return strings.Join(lines, "; ")
	}
	for _, tc := range []struct {
		name string
		db   querier
		q    string
		args []any
		want string // in the plan
	}{
		{"model by training id", s.wc, writeSQL[stmtModelByTrainingID], []any{"t"}, "INDEX models_training_id"},
		{"models by training id", s.r, modelsByTrainingIDSQL(3), []any{"a", "b", "c"}, "INDEX models_training_id"},
		{"model by key", s.wc, writeSQL[stmtModelByIdempotencyKey], []any{"k"}, "INDEX models_idempotency_key"},
		{"due", s.wc, writeSQL[stmtSelectDue], []any{1, 10}, "INDEX models_due"},
		{"take held", s.wc, writeSQL[stmtTakeHeld], []any{"t"}, "INDEX held_training"},
		{"history", s.r, readSQL[readHistory], []any{"m"}, "INDEX history_model"},
		{"list all", s.r, "SELECT id FROM models ORDER BY id DESC LIMIT 50", nil, "INDEX sqlite_autoindex_models_1"},
		{"list by status", s.r, "SELECT " + modelColumns + " FROM models WHERE status = ? AND id < ? ORDER BY id DESC LIMIT ?", []any{"Ready", "z", 50}, "INDEX models_status_id"},
		{"count", s.r, readSQL[readCountModels], nil, "INDEX models_status_id"},
		{"refused deliveries", s.r, "SELECT id FROM deliveries WHERE verified = 0 AND id < ? ORDER BY id DESC LIMIT 50", []any{9}, "INDEX deliveries_refused"},
		{"deliveries by outcome", s.r, "SELECT id FROM deliveries WHERE outcome = ? ORDER BY id DESC LIMIT 50", []any{"x"}, "INDEX deliveries_outcome"},
		{"deliveries by model", s.r, "SELECT id FROM deliveries WHERE model_id = ? ORDER BY id DESC LIMIT 50", []any{"m"}, "INDEX deliveries_model"},
		{"failed notifications", s.r, listNotificationsFrom("failed") + " AND status = ? ORDER BY id DESC LIMIT 50", []any{"failed"}, "INDEX notifications_failed"},
		{"delivered notifications", s.r, listNotificationsFrom("delivered") + " AND status = ? AND id < ? ORDER BY id DESC LIMIT 50", []any{"delivered", 9}, "SEARCH notifications USING INTEGER PRIMARY KEY"},
	} {
		p := plan(tc.db, tc.q, tc.args...)
		if !strings.Contains(p, tc.want) || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s: plan %q; want %q and no sort", tc.name, p, tc.want)
		}
	}
	// Pending notifications, as many as the backlog, are sorted after the
	// due index finds them, not found by a walk of every notification.
	if p := plan(s.r, listNotificationsFrom("pending")+" AND model_id = ? ORDER BY id DESC LIMIT 50", "m"); !strings.Contains(p, "INDEX notifications_due") {
		t.Errorf("pending notifications: plan %q; want notifications_due", p)
	}
}

// A large table, as after a year of use: listing stays fast whatever the filter.
func TestListModels100k(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 models")
	}
	ctx := t.Context()
	s, _ := openTemp(t)
	ids := fillModels(t, s, 100_000)
	for _, f := range []store.ModelFilter{
		{Limit: 50},
		{Limit: 50, Before: ids[50_000]},
		{Limit: 50, Status: training.Failed},
		{Limit: 50, Status: training.Failed, Before: ids[50_000]},
		{Limit: 50, Query: "model 4242"},
		{Limit: 50, Query: "no such name"}, // the worst case: reads every row
	} {
		start := time.Now()
		got, err := s.ListModels(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("%+v: %d models in %v", f, len(got), took)
		// Generous, for slow CI machines under -race; typical figures are in
		// BenchmarkListModels100k.
		if took > 5*time.Second {
			t.Errorf("%+v took %v", f, took)
		}
	}
	counts, err := s.CountModels(ctx)
	if err != nil || counts[training.Failed] != 100_000/len(training.Statuses) {
		t.Errorf("CountModels = %v, %v", counts, err)
	}
}

// fillModels inserts n models in batches, returning their ids oldest first.
func fillModels(t testing.TB, s *Store, n int) []string {
	t.Helper()
	ctx := context.Background()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]string, n)
	for lo := 0; lo < n; lo += 5000 {
		err := s.Write(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+5000, n); i++ {
				now := start.Add(time.Duration(i) * time.Second)
				m := training.Model{
					ID:         training.NewID(now),
					Name:       "model " + strconv.Itoa(i),
					TrainingID: "tr-" + strconv.Itoa(i),
					Status:     training.Statuses[i%len(training.Statuses)],
					Input:      []byte(`{"steps":1000}`),
					CreatedAt:  now,
					UpdatedAt:  now,
				}
				if !m.Status.Terminal() {
					next := now.Add(time.Minute)
					m.NextCheckAt = &next
				}
				if err := tx.InsertModel(ctx, &m); err != nil {
					return err
				}
				ids[i] = m.ID
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// withWALLimit sets the WAL size, in frames, past which the checkpointer
// holds the writer back to complete a checkpoint.
func withWALLimit(frames int) Option {
	return func(o *options) { o.walLimitFrames = frames }
}

// withWALTrim sets the WAL file size past which, and the pause in writes
// after which, the checkpointer truncates the WAL.
func withWALTrim(keep int64, idle time.Duration) Option {
	return func(o *options) { o.walKeepBytes, o.walIdle = keep, idle }
}

// writeDeliveries commits n transactions of 32 deliveries with a 4 KB
// payload each, back to back: about 40 pages a commit.
func writeDeliveries(t *testing.T, s *Store, first, n int) {
	t.Helper()
	payload := webhookBody()
	for i := first; i < first+n; i++ {
		err := s.Write(t.Context(), func(tx store.Tx) error {
			for j := range 32 {
				if _, err := tx.AddDelivery(t.Context(), training.Delivery{WebhookID: strconv.Itoa(i*32 + j), Verified: true, Payload: payload}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Under writes without a pause, the checkpointer still bounds the WAL: past
// the limit it completes a checkpoint while the writer waits, and the WAL
// starts again from its beginning.
func TestCheckpointerBoundsWAL(t *testing.T) {
	s, path := openTemp(t, withWALLimit(2048)) // 8 MiB
	// 300 commits of ~40 pages each: 48 MB of WAL without checkpoints.
	writeDeliveries(t, s, 0, 300)
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 24<<20 {
		t.Errorf("WAL is %d MB after 300 commits with a limit of 8 MiB: the checkpointer does not bound it", fi.Size()>>20)
	}
	if s.ckCompleted.Load() == 0 {
		t.Error("no checkpoint completed under the write lock")
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Error(err)
	}
}

// Below the limit the writer never waits for a checkpoint, and once writes
// pause the checkpointer copies the whole WAL, so the next commit starts it
// again from its beginning: the WAL stays small without holding anyone up.
func TestWALStartsAgainAfterAPause(t *testing.T) {
	s, _ := openTemp(t)
	writeDeliveries(t, s, 0, 100) // ~4,000 frames
	deadline := time.Now().Add(10 * time.Second)
	for {
		logFrames, done, err := s.checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		if logFrames >= 3000 && done == logFrames {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL of %d frames, %d in the database file: the burst did not reach 3,000 frames or was never copied", logFrames, done)
		}
		time.Sleep(10 * time.Millisecond)
	}
	writeDeliveries(t, s, 100, 1)
	logFrames, _, err := s.checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if logFrames > 200 {
		t.Errorf("WAL has %d frames after one more commit: it did not start again from its beginning", logFrames)
	}
	if n := s.ckCompleted.Load(); n != 0 {
		t.Errorf("%d checkpoints held the writer back below the limit", n)
	}
}

// A WAL file that grew large is truncated by the checkpointer once writes
// pause, not by the writer's next commit, and not while writes go on.
func TestWALTruncatedOncePaused(t *testing.T) {
	s, path := openTemp(t, withWALTrim(1<<20, 300*time.Millisecond))
	// Commits closer together than the pause: no truncation meanwhile.
	for i := range 20 {
		writeDeliveries(t, s, i*5, 5)
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.ckTruncated.Load(); n != 0 {
		t.Errorf("the WAL was truncated %d times while writes went on", n)
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 2<<20 {
		t.Fatalf("WAL is only %d bytes after 100 commits: the test writes too little to need a truncation", fi.Size())
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.ckTruncated.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("WAL of %d bytes not truncated 10 s after the writes paused", fi.Size())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err = os.Stat(path + "-wal"); err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 0 {
		t.Errorf("WAL is %d bytes after the truncation, want 0", fi.Size())
	}
	// Nothing was lost, and writing goes on.
	writeDeliveries(t, s, 100, 1)
	var n int
	if err := s.r.QueryRowContext(t.Context(), "SELECT count(*) FROM deliveries").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 101*32 {
		t.Errorf("%d deliveries after the truncation, want %d", n, 101*32)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Error(err)
	}
}

// When SQLite rolls a whole transaction back by itself (here: the file may
// not grow, SQLITE_FULL), fn may carry on, but nothing it does afterwards
// may commit on its own, and Write fails.
func TestTransactionLostToSQLite(t *testing.T) {
	ctx := t.Context()
	s, _ := openTemp(t)
	var pages int
	if err := s.wc.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.wc.ExecContext(ctx, "PRAGMA max_page_count = "+strconv.Itoa(pages+20)); err != nil {
		t.Fatal(err)
	}
	before := training.Model{ID: training.NewID(time.Now()), Name: "before", Status: training.Pending}
	after := training.Model{ID: training.NewID(time.Now().Add(time.Second)), Name: "after", Status: training.Pending}
	var full error
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.InsertModel(ctx, &before); err != nil {
			return err
		}
		for i := 0; full == nil && i < 1000; i++ {
			_, full = tx.AddDelivery(ctx, training.Delivery{WebhookID: strconv.Itoa(i), Payload: make([]byte, 8000)})
		}
		_ = tx.InsertModel(ctx, &after) // a careless fn ignores errors
		return nil
	})
	if full == nil {
		t.Fatal("the file never filled up")
	}
	t.Logf("fill error: %v; Write: %v", full, err)
	_, errBefore := s.GetModel(ctx, before.ID)
	_, errAfter := s.GetModel(ctx, after.ID)
	if (errBefore == nil) != (errAfter == nil) {
		t.Errorf("half a transaction committed: model before the error: %v; after: %v", errBefore, errAfter)
	}
	if errBefore != nil && err == nil {
		t.Error("Write returned nil but did not commit")
	}
	// The store recovers once there is room.
	if _, err := s.wc.ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		m := training.Model{ID: training.NewID(time.Now().Add(2 * time.Second)), Name: "later", Status: training.Pending}
		return tx.InsertModel(ctx, &m)
	}); err != nil {
		t.Errorf("Write after the disk-full error: %v", err)
	}
}

// A file written by the release before the outbox lost its unused indexes:
// opening it rebuilds the table and keeps every row, attempt and id.
func TestUpgradeKeepsNotifications(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "trainhook.db")
	old, err := sql.Open("sqlite3", "file:"+path+"?_foreign_keys=on&_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	const before = 5 // the schema version before the rebuild
	if migrations[before].Name != "0006_notifications_lean.sql" {
		t.Fatalf("migration %d is %s", before+1, migrations[before].Name)
	}
	stmts := []string{`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT '')`}
	for _, m := range migrations[:before] {
		stmts = append(stmts, m.SQL, fmt.Sprintf("INSERT INTO schema_migrations (version) VALUES (%d)", m.Version))
	}
	stmts = append(stmts,
		`INSERT INTO models (id, name, name_fold, status, version) VALUES ('m1', 'one', 'one', 'Ready', 3)`,
		`INSERT INTO notifications (event_id, model_id, type, sequence, url, model, status, created_at, retry_since, next_attempt_at)
		 VALUES ('evt_a', 'm1', 'model.training', 2, 'http://127.0.0.1:1/a', '{}', 'delivered', 1, 1, NULL),
		        ('evt_b', 'm1', 'model.ready', 3, 'http://127.0.0.1:1/a', '{}', 'failed', 2, 2, NULL),
		        ('evt_c', 'm1', 'model.ready', 3, 'http://127.0.0.1:1/b', '{}', 'pending', 2, 2, 5)`,
		`INSERT INTO notification_attempts (notification_id, at, status_code) VALUES (1, 10, 200), (2, 11, 500), (2, 12, 500)`,
		// A row deleted after it was written: its id must not come back.
		`INSERT INTO notifications (event_id, model_id, type, sequence, url, model, status, created_at, retry_since)
		 VALUES ('evt_d', 'm1', 'model.ready', 3, 'http://127.0.0.1:1/c', '{}', 'delivered', 3, 3)`,
		`DELETE FROM notifications WHERE id = 4`,
	)
	for _, q := range stmts {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open the older file: %v", err)
	}
	defer s.Close()
	if applied, latest, err := s.Migrated(ctx); err != nil || applied != latest {
		t.Fatalf("Migrated = %d, %d, %v", applied, latest, err)
	}
	var ids []string
	for _, st := range []string{"", "pending", "delivered", "failed"} {
		ns, err := s.ListNotifications(ctx, store.NotificationFilter{Status: st, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range ns {
			got = append(got, fmt.Sprintf("%d:%s:%s", n.ID, n.EventID, n.Status))
		}
		ids = append(ids, st+"="+strings.Join(got, ","))
	}
	want := "=3:evt_c:pending,2:evt_b:failed,1:evt_a:delivered pending=3:evt_c:pending delivered=1:evt_a:delivered failed=2:evt_b:failed"
	if got := strings.Join(ids, " "); got != want {
		t.Errorf("after the upgrade:\n got %s\nwant %s", got, want)
	}
	if _, as, err := s.GetNotification(ctx, 2); err != nil || len(as) != 2 || as[1].StatusCode != 500 {
		t.Errorf("attempts of notification 2 after the upgrade: %+v, %v", as, err)
	}
	var bad int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM pragma_foreign_key_check").Scan(&bad); err != nil || bad != 0 {
		t.Errorf("foreign key check after the upgrade: %d violations, %v", bad, err)
	}
	var idx string
	if err := s.r.QueryRowContext(ctx, `SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_schema
		WHERE type = 'index' AND tbl_name = 'notifications' ORDER BY name)`).Scan(&idx); err != nil ||
		idx != "notifications_due notifications_failed notifications_model_seq" {
		t.Errorf("indexes of notifications after the upgrade: %q, %v", idx, err)
	}
	// The next row continues after the deleted one, as AUTOINCREMENT promises.
	err = s.Write(ctx, func(tx store.Tx) error {
		return tx.AddNotification(ctx, store.NewNotification{EventID: "evt_e", ModelID: "m1", Type: "model.ready",
			Sequence: 4, At: time.Unix(0, 4), Model: []byte(`{}`), URLs: []string{"http://127.0.0.1:1/a"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if ns, err := s.ListNotifications(ctx, store.NotificationFilter{Limit: 1}); err != nil || len(ns) != 1 || ns[0].ID != 5 {
		t.Errorf("first notification after the upgrade: %+v, %v; want id 5", ns, err)
	}
}

// A rebuild that would leave a row pointing nowhere is rolled back, and the
// connection has its foreign keys on again either way.
func TestRebuildMigrationChecksForeignKeys(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	bad := store.Migration{Version: len(migrations) + 1, Name: "dangling.sql",
		SQL: rebuildMarker + "\nINSERT INTO notification_attempts (notification_id, at) VALUES (12345, 1);"}
	err := s.apply(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "row 1 of notification_attempts refers to a missing row of notifications") {
		t.Errorf("apply a dangling rebuild = %v; want the row it found", err)
	}
	var n, fk int
	if err := s.wc.QueryRowContext(ctx, "SELECT count(*) FROM notification_attempts").Scan(&n); err != nil || n != 0 {
		t.Errorf("attempts after the failed migration: %d, %v; want it rolled back", n, err)
	}
	if err := s.wc.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys after the failed migration = %d, %v; want 1", fk, err)
	}
	if applied, _, err := s.Migrated(ctx); err != nil || applied != len(migrations) {
		t.Errorf("schema version after the failed migration = %d, %v", applied, err)
	}
}
