package app_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/config"
)

// records keeps the log records of one server.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// warnings returns the messages logged at warn level or above.
func (r *records) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.list {
		if rec.Level >= slog.LevelWarn {
			out = append(out, rec.Message)
		}
	}
	return out
}

// Without TRAINHOOK_API_TOKEN, a server reachable from other machines
// refuses to start and says how to fix it, unless the operator opts out
// with TRAINHOOK_INSECURE_OPEN_API=true, which then warns at start. On
// loopback, or with a token, it starts without a word.
func TestProtectedModeAtStartup(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		env     map[string]string
		refused bool
		warns   bool
	}{
		{"no token, all interfaces", map[string]string{"ADDR": ":0"}, true, false},
		{"no token, all interfaces by PORT", map[string]string{"PORT": "0"}, true, false},
		{"no token, 0.0.0.0", map[string]string{"ADDR": "0.0.0.0:0"}, true, false},
		{"no token, loopback", map[string]string{"ADDR": "127.0.0.1:0"}, false, false},
		{"no token, localhost", map[string]string{"ADDR": "localhost:0"}, false, false},
		{"no token, IPv6 loopback", map[string]string{"ADDR": "[::1]:0"}, false, false},
		{"token, all interfaces", map[string]string{"ADDR": ":0", "TRAINHOOK_API_TOKEN": "startup-token-0123456789abcdefghijk"}, false, false},
		{"no token, all interfaces, opted out", map[string]string{"ADDR": ":0", "TRAINHOOK_INSECURE_OPEN_API": "true"}, false, true},
		{"no token, loopback, opted out", map[string]string{"ADDR": "127.0.0.1:0", "TRAINHOOK_INSECURE_OPEN_API": "true"}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env["ADDR"] == "[::1]:0" {
				if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
					t.Skip("no IPv6 loopback here")
				} else {
					l.Close()
				}
			}
			vars := map[string]string{"DATABASE_URL": apptest.Database(t), "REPLICATE_WEBHOOK_SECRET": testSecret}
			for k, v := range c.env {
				vars[k] = v
			}
			cfg, err := config.Load(func(k string) string { return vars[k] })
			if err != nil {
				t.Fatal(err)
			}
			rec := &records{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a, err := app.Start(ctx, cfg, slog.New(rec))
			if c.refused {
				if err == nil {
					cancel()
					_ = a.Run(ctx)
					t.Fatal("started without a token on " + cfg.Addr)
				}
				for _, want := range []string{"TRAINHOOK_API_TOKEN is not set", "would listen on " + cfg.Addr, "anyone who can reach this port",
					"at least 32 characters", "trainhook token new", "ADDR=127.0.0.1:<port>", "TRAINHOOK_INSECURE_OPEN_API=true"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := a.Run(ctx); err != nil {
				t.Fatal(err)
			}
			var found string
			for _, w := range rec.warnings() {
				if strings.Contains(w, "TRAINHOOK_API_TOKEN is not set") {
					found = w
				}
			}
			switch {
			case c.warns && !strings.Contains(found, "TRAINHOOK_INSECURE_OPEN_API=true: starting anyway"):
				t.Fatalf("no warning about the open API; warnings: %q", rec.warnings())
			case !c.warns && found != "":
				t.Fatalf("warned %q", found)
			}
		})
	}
}
