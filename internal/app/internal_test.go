package app

// Tests that read the App's unexported fields. Every other test of this
// package is in package app_test and starts servers with apptest.

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/pgtest"
)

// freshDatabase is apptest.Database for this package's internal tests,
// which cannot import apptest (it imports this package): a SQLite file, or
// with TRAINHOOK_TEST_APP_DB=postgres a new database on the test PostgreSQL
// server (.ci/run runs this package both ways).
func freshDatabase(t *testing.T, file string) string {
	t.Helper()
	if os.Getenv("TRAINHOOK_TEST_APP_DB") == "postgres" {
		return pgtest.URL(t)
	}
	return filepath.Join(t.TempDir(), file)
}

// TRAINHOOK_READ_TIMEOUT and TRAINHOOK_WRITE_TIMEOUT reach the HTTP server
// (the slow-loris test shows the read timeout at work).
func TestHTTPTimeoutsFromConfig(t *testing.T) {
	vars := map[string]string{"DATABASE_URL": freshDatabase(t, "timeouts.db"), "ADDR": "127.0.0.1:0",
		"TRAINHOOK_READ_TIMEOUT": "7s", "TRAINHOOK_WRITE_TIMEOUT": "90s"}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := Start(ctx, cfg, slog.New(slog.DiscardHandler))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if a.http.ReadTimeout != 7*time.Second || a.http.WriteTimeout != 90*time.Second {
		t.Errorf("server timeouts: read %s, write %s; want 7s and 1m30s", a.http.ReadTimeout, a.http.WriteTimeout)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
