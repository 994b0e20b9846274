package app_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
)

// StartOn serves on the listener it is handed, so the port a test chose
// for APP_URL is never free for anything else to take; and a start that
// fails closes that listener.
func TestStartOnServesTheGivenListener(t *testing.T) {
	t.Parallel()
	ln := apptest.Listen(t)
	srv := apptest.Start(t, apptest.Options{Listener: ln})
	if srv.URL != apptest.URL(ln) {
		t.Fatalf("the server's URL is %s, want the listener's %s", srv.URL, apptest.URL(ln))
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(apptest.URL(ln) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz on the handed listener: %d", resp.StatusCode)
	}

	// A database path under a regular file cannot be opened.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	failing := apptest.Listen(t)
	cfg := apptest.Config(t, map[string]string{"DATABASE_URL": filepath.Join(file, "trainhook.db"), "ADDR": failing.Addr().String()})
	if _, err := app.StartOn(context.Background(), cfg, apptest.Logger(t), failing); err == nil {
		t.Fatal("started on a database path under a regular file")
	}
	// Open, Accept would wait: the deadline bounds it.
	_ = failing.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := failing.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after a failed start, Accept on the handed listener: %v; want it closed", err)
	}
}
