package main

import (
	"context"
	"fmt"
	"github.com/trainhook/trainhook/internal/apptest"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
)

// longToken is an API token as an operator exposing the server sets it:
// long enough for any minimum a server open to the network asks for.
const longToken = "ship-test-api-token-0123456789abcdef"

// The values release.sh stamps reach `trainhook version`.
func TestVersionPrintsStampedBuildInfo(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "trainhook")
	ldflags := "-X main.version=v9.8.7 -X main.commit=0123abcd -X main.date=2026-01-02T03:04:05Z"
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"trainhook v9.8.7", "commit 0123abcd", "built 2026-01-02T03:04:05Z"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("version printed %q, want it to contain %q", out, want)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	addr := apptest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	// The API token is required for the API, never for /readyz.
	serveAt(t, addr, "DATABASE_URL="+filepath.Join(t.TempDir(), "h.db"), "TRAINHOOK_API_TOKEN="+longToken)

	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			t.Errorf("healthcheck asked for %s, want /readyz", r.URL.Path)
		}
		http.Error(w, `{"status":"unavailable"}`, http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	closed := apptest.FreeAddr(t) // nothing listens there any more

	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"ADDR", []string{"ADDR=" + addr}, nil, 0, `ready: {"status":"ready"}`},
		{"PORT wins over ADDR, on loopback", []string{"PORT=" + port, "ADDR=" + closed}, nil, 0, "ready"},
		{"ADDR on all interfaces", []string{"ADDR=:" + port}, nil, 0, "ready"},
		{"--url", nil, []string{"--url", "http://" + addr + "/"}, 0, "ready"},
		{"nothing listens", []string{"ADDR=" + closed}, nil, 1, "not ready"},
		{"not ready", nil, []string{"--url", notReady.URL}, 1, "503 Service Unavailable"},
		{"bad PORT", []string{"PORT=http"}, nil, 1, `PORT="http": want a port number`},
		{"bad ADDR", []string{"ADDR=localhost"}, nil, 1, `ADDR="localhost": want host:port`},
		{"argument", nil, []string{"now"}, 2, `unexpected argument "now"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"ADDR=", "PORT="}, c.env...), append([]string{"healthcheck", "--timeout", "3s"}, c.args...)...)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, c.code, out, errOut, c.want)
			}
		})
	}
}

// A backup taken while the server registers models is a database another
// server starts on, with the models registered before the backup began.
func TestBackupWhileServingRestores(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "live.db")
	srv := serveAt(t, apptest.FreeAddr(t), "DATABASE_URL="+db, "TRAINHOOK_API_TOKEN="+longToken)
	client, err := apiclient.New(srv.url, longToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	register := func(i int) string {
		r, err := client.Register(ctx, apiclient.RegisterRequest{Name: fmt.Sprintf("model %d", i), TrainingID: fmt.Sprintf("train-backup-%d", i)})
		if err != nil {
			t.Errorf("register %d: %v", i, err)
		}
		return r.Model.ID
	}
	var before []string
	for i := range 20 {
		before = append(before, register(i))
	}

	// Writes go on during the backup.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 20; ; i++ {
			select {
			case <-stop:
				return
			default:
				register(i)
			}
		}
	}()
	copyPath := filepath.Join(dir, "backups", "copy.db")
	if err := os.MkdirAll(filepath.Dir(copyPath), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, []string{"DATABASE_URL=" + db}, "backup", copyPath)
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "backed up") {
		t.Fatalf("backup: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(copyPath + ".partial"); !os.IsNotExist(err) {
		t.Errorf("the partial copy was left behind: %v", err)
	}

	// Restore: a server on the copy alone serves the models.
	restored := serveAt(t, apptest.FreeAddr(t), "DATABASE_URL="+copyPath, "TRAINHOOK_API_TOKEN="+longToken)
	rc, err := apiclient.New(restored.url, longToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range before {
		if m, err := rc.Model(ctx, id); err != nil || m.Model.ID != id {
			t.Fatalf("model %s on the restored copy: %+v, %v", id, m.Model, err)
		}
	}

	// Bad input is refused and changes nothing.
	info, _ := os.Stat(copyPath)
	for _, c := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"existing file", []string{"DATABASE_URL=" + db}, []string{copyPath}, 1, "already exists"},
		{"no path", []string{"DATABASE_URL=" + db}, nil, 2, "name the file to write"},
		{"two paths", []string{"DATABASE_URL=" + db}, []string{"a.db", "b.db"}, 2, "name the file to write"},
		{"onto itself", []string{"DATABASE_URL=" + db}, []string{db}, 1, "already exists"},
		{"no database", []string{"DATABASE_URL=" + filepath.Join(dir, "missing.db")}, []string{filepath.Join(dir, "x.db")}, 1, "must name the server's SQLite file"},
		{"postgres", []string{"DATABASE_URL=postgres://u@127.0.0.1:1/db"}, []string{filepath.Join(dir, "y.db")}, 2, "pg_dump"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.env, append([]string{"backup"}, c.args...)...)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, c.code, out, errOut, c.want)
			}
		})
	}
	if after, err := os.Stat(copyPath); err != nil || !after.ModTime().Equal(info.ModTime()) || after.Size() != info.Size() {
		t.Errorf("a refused backup changed the existing copy: %v", err)
	}
	for _, p := range []string{"x.db", "y.db"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("a refused backup created %s", p)
		}
	}
}
