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

// The Notifications page in a browser, live: with the page open and never
// reloaded, a notification the app refused appears failed with the reason,
// and once resent (through the API) it turns delivered; the Resend button
// sends it again with the same webhook-id.
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

	// The page is open before anything is sent, and never reloaded: the
	// row appears, turns failed, and after a resend turns delivered live.
	b := startBrowser(t)
	b.do(chromedp.Navigate(a.URL + "/notifications"))
	b.eval(`window.stayedOpen = true, "set"`)
	liveStatus := func(want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for b.eval(`document.querySelector('tr[data-notification-id] [data-status]')?.dataset.status || ''`) != want {
			if time.Now().After(deadline) {
				b.screenshot("notifications-not-" + want)
				t.Fatalf("the notification never showed as %s without a reload", want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if b.eval(`String(window.stayedOpen === true)`) != "true" {
			t.Fatal("the page was reloaded; it should have changed live")
		}
	}

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

	liveStatus("failed")
	if got := b.eval(`document.querySelector('tr[data-notification-id] .reason').textContent`); !strings.Contains(got, "HTTP 410: endpoint retired") {
		t.Errorf("reason shown: %q", got)
	}
	if got := b.eval(`document.querySelector('tr[data-notification-id] a[href^="/models/"]').textContent`); got != reg.Model.ID {
		t.Errorf("model link %q, want %s", got, reg.Model.ID)
	}
	b.screenshot("notifications-failed")

	// Resent elsewhere (the API), the open page follows.
	ns, err := c.Notifications(t.Context(), apiclient.NotificationOptions{})
	if err != nil || len(ns) != 1 {
		t.Fatalf("notifications: %v %v", ns, err)
	}
	if _, err := c.ResendNotification(t.Context(), ns[0].ID); err != nil {
		t.Fatal(err)
	}
	liveStatus("delivered")
	if got := b.eval(`document.querySelector('tr[data-notification-id] [data-status]').parentElement.textContent`); !strings.Contains(got, "2 attempt(s)") {
		t.Errorf("status cell after the resend: %q", got)
	}
	b.screenshot("notifications-delivered")

	// The Resend button (a form, no script needed) sends it once more.
	b.do(chromedp.Click(chromedp.CSS(`button[aria-label^="Resend notification"]`)), chromedp.WaitVisible(chromedp.CSS(`p.notice`)))
	if got := b.eval(`document.querySelector('p.notice').textContent`); !strings.Contains(got, "will be sent again, with the same webhook-id") {
		t.Errorf("notice after resend: %q", got)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(b.eval(`document.querySelector('tr[data-notification-id] [data-status]').parentElement.textContent`), "3 attempt(s)") {
		if time.Now().After(deadline) {
			b.screenshot("notifications-not-resent")
			t.Fatal("the notification resent with the button never showed its third attempt")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("webhook-ids sent %v, want the same one three times", ids)
	}
	for _, m := range b.messages() {
		if strings.Contains(m.Text, "Content Security Policy") || m.IsException() || m.Type == chromedp.ConsoleError {
			t.Errorf("browser console: %s (%s)", m, m.URL)
		}
	}
}
