package app_test

import (
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/fakereplicate"
)

// A scrape of /metrics answers, and the server keeps working afterwards.
// With REPLICATE_API_TOKEN set, a gauge reads a counter of the same
// registry while the scrape writes it: were the registry to hold its lock
// while calling gauge functions, the first scrape would deadlock and then
// block every counter, stopping the whole server.
func TestMetricsScrapeDoesNotHang(t *testing.T) {
	t.Parallel()
	_, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_metrics"})
	// A deadlocked registry also holds up shutdown: the harness then fails
	// the test after 30 s and leaves the server behind rather than hang.
	a := apptest.Start(t, apptest.Options{Env: map[string]string{
		"DATABASE_URL":       filepath.Join(t.TempDir(), "metrics.db"),
		"REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_metrics", "TRAINHOOK_WEBHOOKS": "off",
	}})
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
	a.Stop()
}
