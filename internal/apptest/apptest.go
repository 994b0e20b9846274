// Package apptest starts whole trainhook servers for tests, in-process, as
// serve starts them: the Replicate simulator, a loopback listener, the
// configuration from environment variables, app.StartOn and Run, and the
// one wait loop tests poll with. Every helper registers its own cleanup, so
// a test only says what it needs:
//
//	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_x"})
//	ln := apptest.Listen(t)
//	srv := apptest.Start(t, apptest.Options{Listener: ln, Env: map[string]string{
//		"APP_URL": apptest.URL(ln), "REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_x",
//	}})
//	apptest.WaitFor(t, "the model is Ready", 10*time.Second, func() bool { ... })
package apptest

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/replicate"
)

// Secret is the webhook signing secret a server started here accepts
// unless Env sets REPLICATE_WEBHOOK_SECRET.
const Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// Key is Secret parsed, to sign deliveries with.
var Key = mustKey(Secret)

func mustKey(s string) replicate.Key {
	k, err := replicate.ParseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

// EnvDB names the variable that selects the database of servers started
// here: "postgres" gives each a new database on the test PostgreSQL server
// (pgtest); anything else a SQLite file in the test's temporary directory.
const EnvDB = "TRAINHOOK_TEST_APP_DB"

// Database returns a fresh, empty database for one server, as a
// DATABASE_URL value: a SQLite file, or with TRAINHOOK_TEST_APP_DB=postgres
// a new database on the test PostgreSQL server, dropped at cleanup.
func Database(t testing.TB) string {
	t.Helper()
	if os.Getenv(EnvDB) == "postgres" {
		return pgtest.URL(t)
	}
	return filepath.Join(t.TempDir(), "trainhook.db")
}

// Listen opens a listener on a free loopback port. Hand it to Start, which
// then owns it; one Start does not take is closed at cleanup.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// URL is the base URL of a listener from Listen, for APP_URL.
func URL(ln net.Listener) string { return "http://" + ln.Addr().String() }

// FreeAddr returns a loopback address whose port was free a moment ago. Use
// it only for a server in another process (the trainhook binary), which
// must listen itself; in-process servers take a Listener instead.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Sim starts the Replicate simulator with o on a loopback port and returns
// it with its base URL (for REPLICATE_BASE_URL); it is closed at cleanup.
func Sim(t testing.TB, o fakereplicate.Options) (*fakereplicate.Server, string) {
	t.Helper()
	sim, err := fakereplicate.New(o)
	if err != nil {
		t.Fatalf("create the simulator: %v", err)
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start the simulator: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim, simURL
}

// Logger discards, or with go test -v writes each record to t.Log.
func Logger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(&testWriter{t: t}, nil))
}

type testWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Options are what a test may set of a server Start starts.
type Options struct {
	// Env is the configuration, as environment variables, over the
	// defaults: DATABASE_URL from Database, REPLICATE_WEBHOOK_SECRET
	// Secret, TRAINHOOK_LOG_FORMAT text, and ADDR the listener's address.
	Env map[string]string
	// Listener is where the server listens; nil: a new one from Listen.
	Listener net.Listener
	// Log is the server's logger; nil: Logger(t).
	Log *slog.Logger
}

// Server is a trainhook running in-process until the test ends.
type Server struct {
	// App is the running server: its Store, Service, Broker, Metrics.
	App *app.App
	// URL is its base URL, e.g. http://127.0.0.1:41234.
	URL string
	// Env is the configuration it was started with, defaults included.
	Env map[string]string

	t    testing.TB
	stop context.CancelFunc
	done chan error
	once sync.Once
}

// Config loads a configuration from env alone (no defaults added), for a
// test that calls app.Start or app.StartOn itself; the test fails on a
// configuration error.
func Config(t testing.TB, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("configuration: %v", err)
	}
	return cfg
}

// Start starts a server with o and runs it until the test ends (or Stop).
// A configuration or start error fails the test.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Listener == nil {
		o.Listener = Listen(t)
	}
	if o.Log == nil {
		o.Log = Logger(t)
	}
	env := map[string]string{
		"REPLICATE_WEBHOOK_SECRET": Secret,
		"TRAINHOOK_LOG_FORMAT":     "text",
		"ADDR":                     o.Listener.Addr().String(),
	}
	for k, v := range o.Env {
		env[k] = v
	}
	if _, ok := env["DATABASE_URL"]; !ok {
		env["DATABASE_URL"] = Database(t)
	}
	cfg := Config(t, env)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.StartOn(ctx, cfg, o.Log, o.Listener)
	if err != nil {
		cancel()
		t.Fatalf("start trainhook: %v", err)
	}
	s := &Server{App: a, URL: a.URL, Env: env, t: t, stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down and waits up to 30 s for Run to return; an
// error from Run, or no return, fails the test. It runs at cleanup too;
// calling it again does nothing.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.stop()
		select {
		case err := <-s.done:
			if err != nil {
				s.t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			s.t.Error("trainhook did not stop within 30 s")
		}
	})
}

// WaitFor calls cond every 20 ms until it returns true, and fails the test
// (naming what it waited for) when timeout passes first.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
