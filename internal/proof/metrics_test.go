package proof

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
)

// A scrape of /metrics answers, and the server keeps working afterwards.
// With REPLICATE_API_TOKEN set, a gauge reads a counter of the same
// registry while the scrape writes it: were the registry to hold its lock
// while calling gauge functions, the first scrape would deadlock and then
// block every counter, stopping the whole server.
func TestMetricsScrapeDoesNotHang(t *testing.T) {
	sim, err := fakereplicate.New(fakereplicate.Options{Token: "r8_metrics"})
	if err != nil {
		t.Fatal(err)
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	vars := map[string]string{
		"DATABASE_URL": filepath.Join(t.TempDir(), "metrics.db"), "ADDR": "127.0.0.1:0",
		"REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_metrics", "TRAINHOOK_WEBHOOKS": "off",
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/metrics", "/api/status"} {
		resp, err := client.Get(a.URL + path)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		// A deadlocked registry also holds up shutdown; leave the server
		// behind rather than hang the test binary.
		t.Error("the server did not stop within 30 s")
	}
}
