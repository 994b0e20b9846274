package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/replicate"
)

// The Notifications page in a browser: a notification the app refused is
// shown failed with the reason; Resend sends it again with the same
// webhook-id and the page shows it delivered.
func TestNotificationsPageInABrowser(t *testing.T) {
	requireChromium(t)
	const replicateSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var mu sync.Mutex
	var ids []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get("webhook-id"))
		n := len(ids)
		mu.Unlock()
		if n == 1 {
			http.Error(w, "endpoint retired", http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	vars := map[string]string{
		"DATABASE_URL": filepath.Join(t.TempDir(), "trainhook.db"), "ADDR": "127.0.0.1:0",
		"REPLICATE_WEBHOOK_SECRET": replicateSecret,
		"TRAINHOOK_NOTIFY_URL":     rcv.URL + "/api/trainhook", "TRAINHOOK_NOTIFY_SECRET": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
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
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("trainhook did not stop within 30s")
		}
	})

	c, _ := apiclient.New(a.URL, "")
	const tid = "r7k2m9x4c1rm80cq3ftw6n8ebb"
	reg, err := c.Register(t.Context(), apiclient.RegisterRequest{Name: "browser notify", TrainingID: tid})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"id":%q,"status":"succeeded","output":{"version":"acme/x:abc"},"completed_at":"2025-03-04T10:36:47Z"}`, tid))
	key, _ := replicate.ParseKey(replicateSecret)
	req, _ := http.NewRequest("POST", a.URL+"/api/webhooks/replicate/completed", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	key.SignRequest(req.Header, "msg_browser_notify", time.Now(), body)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("deliver: %v %v", resp, err)
	}

	b := startBrowser(t)
	b.do(chromedp.Navigate(a.URL + "/notifications"))
	// Not live: reload until the sender has settled it.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.eval(`document.querySelector('[data-status]')?.dataset.status || ''`), "failed") {
		if time.Now().After(deadline) {
			b.screenshot("notifications-not-failed")
			t.Fatal("the refused notification never showed as failed")
		}
		time.Sleep(200 * time.Millisecond)
		b.do(chromedp.Navigate(a.URL + "/notifications")) // waits for the load, unlike a click
	}
	if got := b.eval(`document.querySelector('tr[data-notification-id] .reason').textContent`); !strings.Contains(got, "HTTP 410: endpoint retired") {
		t.Errorf("reason shown: %q", got)
	}
	if got := b.eval(`document.querySelector('tr[data-notification-id] a[href^="/models/"]').textContent`); got != reg.Model.ID {
		t.Errorf("model link %q, want %s", got, reg.Model.ID)
	}
	b.screenshot("notifications-failed")

	b.do(chromedp.Click(chromedp.CSS(`button[aria-label^="Resend notification"]`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if got := b.eval(`document.querySelector('p.notice').textContent`); !strings.Contains(got, "will be sent again, with the same webhook-id") {
		t.Errorf("notice after resend: %q", got)
	}
	deadline = time.Now().Add(15 * time.Second)
	for b.eval(`document.querySelector('[data-status]')?.dataset.status || ''`) != "delivered" {
		if time.Now().After(deadline) {
			b.screenshot("notifications-not-delivered")
			t.Fatal("the resent notification never showed as delivered")
		}
		time.Sleep(200 * time.Millisecond)
		b.do(chromedp.Navigate(a.URL + "/notifications")) // waits for the load, unlike a click
	}
	b.screenshot("notifications-delivered")
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Errorf("webhook-ids sent %v, want the same one twice", ids)
	}
	for _, m := range b.messages() {
		if strings.Contains(m.Text, "Content Security Policy") || m.IsException() || m.Type == chromedp.ConsoleError {
			t.Errorf("browser console: %s (%s)", m, m.URL)
		}
	}
}
