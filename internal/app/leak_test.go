package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// A server started, used (trainings started and finished by webhook and by
// poll, deliveries, API calls, a live event stream) and stopped leaves no
// goroutine behind: not the HTTP server's, the poller's, the writer's, the
// broker's, the database's (database/sql's opener, the store's checkpoint
// loop), nor the Replicate client's connections. Nothing is ignored but the
// goroutines that were running before the test began.
func TestNoGoroutineLeftAfterStop(t *testing.T) {
	for _, mode := range []string{"on", "off"} {
		t.Run("webhooks "+mode, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_leak", Duration: 800 * time.Millisecond, WebhookRetryWindow: time.Second})
			ln := apptest.Listen(t)
			srv := apptest.Start(t, apptest.Options{Listener: ln, Log: slog.New(slog.DiscardHandler), Env: map[string]string{
				"APP_URL": apptest.URL(ln), "TRAINHOOK_WEBHOOKS": mode, "REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_leak",
				"REPLICATE_WEBHOOK_SECRET": sim.Key().Secret(), "TRAINHOOK_POLL_INTERVAL": "100ms", "TRAINHOOK_RECONCILE_AFTER": "1s",
			}})

			exercise(t, srv.App)

			srv.Stop()
			sim.Close()
			goleak.VerifyNone(t, before)
		})
	}
}

// When Run returns, the Replicate client's keep-alive connections are
// closed too, not left to the peer or to the transport's 90 s idle timeout
// (each would keep a connection and two goroutines alive in a process that
// starts and stops Apps: tests, the demo). Found by this test; fixed by
// closing them at the end of Run.
func TestReplicateConnectionsClosedOnStop(t *testing.T) {
	_, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_leak", Duration: time.Hour})
	simGoroutines := goleak.IgnoreCurrent()
	srv := apptest.Start(t, apptest.Options{Log: slog.New(slog.DiscardHandler), Env: map[string]string{
		"TRAINHOOK_WEBHOOKS": "off", "REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_leak",
	}})
	a, ctx := srv.App, t.Context()
	if _, _, err := a.Service.Start(ctx, service.StartRequest{
		Trainer: fakereplicate.FluxTrainer, Destination: fakereplicate.DefaultUsername + "/leak", Input: json.RawMessage(`{}`),
	}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// The simulator is still up: whatever is left now is the app's.
	if err := goleak.Find(simGoroutines); err != nil {
		t.Errorf("goroutines left after Run returned:\n%v", err)
	}
}

// exercise uses every part of a running server that starts goroutines.
func exercise(t *testing.T, a *app.App) {
	t.Helper()
	ctx := context.Background()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	// A live event stream, open while trainings change.
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	req, _ := http.NewRequestWithContext(sctx, "GET", a.URL+"/api/events", nil)
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()

	var ids []string
	for i := 0; i < 3; i++ {
		m, _, err := a.Service.Start(ctx, service.StartRequest{
			Trainer: fakereplicate.FluxTrainer, Destination: fmt.Sprintf("%s/leak-%d", fakereplicate.DefaultUsername, i),
			Input: json.RawMessage(`{"steps":100}`),
		})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		ids = append(ids, m.ID)
	}
	if _, err := a.Service.Cancel(ctx, ids[2]); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			m, err := a.Store.GetModel(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if m.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("model %s is still %s", id, m.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Not /metrics nor /api/status: with a Replicate token they deadlock the
	// metrics registry (TestMetricsScrapeDoesNotHang).
	for _, path := range []string{"/healthz", "/readyz", "/api/models", "/api/models/" + ids[0], "/"} {
		resp, err := client.Get(a.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := client.Post(a.URL+"/api/webhooks/replicate/completed", "application/json", strings.NewReader(`{}`))
	if err == nil {
		resp.Body.Close()
	}
	stopStream()
	<-streamDone
	if m, _ := a.Store.GetModel(ctx, ids[0]); m.Status != training.Ready {
		t.Errorf("model %s is %s", ids[0], m.Status)
	}
}
