package app_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/trainhook/trainhook/internal/app"
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

// Without TRAINHOOK_API_TOKEN, a server reachable from other machines says
// so at start-up, and how to fix it; on loopback or with a token it does not.
func TestOpenAPIWarnedAtStartup(t *testing.T) {
	for _, c := range []struct {
		name  string
		env   map[string]string
		warns bool
	}{
		{"no token, all interfaces", map[string]string{"ADDR": ":0"}, true},
		{"no token, all interfaces by PORT", map[string]string{"PORT": "0"}, true},
		{"no token, 0.0.0.0", map[string]string{"ADDR": "0.0.0.0:0"}, true},
		{"no token, loopback", map[string]string{"ADDR": "127.0.0.1:0"}, false},
		{"no token, localhost", map[string]string{"ADDR": "localhost:0"}, false},
		{"token, all interfaces", map[string]string{"ADDR": ":0", "TRAINHOOK_API_TOKEN": "startup-token-0123456789"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			vars := map[string]string{"DATABASE_URL": testDatabase(t), "REPLICATE_WEBHOOK_SECRET": testSecret}
			for k, v := range c.env {
				vars[k] = v
			}
			cfg, err := config.Load(func(k string) string { return vars[k] })
			if err != nil {
				t.Fatal(err)
			}
			rec := &records{}
			ctx, cancel := context.WithCancel(context.Background())
			a, err := app.Start(ctx, cfg, slog.New(rec))
			if err != nil {
				cancel()
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
			case c.warns && found == "":
				t.Fatalf("no warning about the open API; warnings: %q", rec.warnings())
			case c.warns:
				for _, want := range []string{"listens on " + cfg.Addr, "anyone who can reach this port", "Set TRAINHOOK_API_TOKEN", "ADDR=127.0.0.1:<port>"} {
					if !strings.Contains(found, want) {
						t.Errorf("warning %q lacks %q", found, want)
					}
				}
			case found != "":
				t.Fatalf("warned %q", found)
			}
		})
	}
}
