package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/replicate"
)

// notify new-secret, notify listen and notifications, as a user runs them:
// the binary's own receiver gets a server's notifications and verifies them.
func TestNotifyCommands(t *testing.T) {
	code, out, _ := runCLI(t, cleanEnv(), "notify", "new-secret")
	key, err := replicate.ParseKey(strings.TrimSpace(out))
	if code != 0 || err != nil {
		t.Fatalf("new-secret: exit %d, %q: %v", code, out, err)
	}
	if _, out2, _ := runCLI(t, cleanEnv(), "notify", "new-secret"); strings.TrimSpace(out2) == strings.TrimSpace(out) {
		t.Error("new-secret printed the same key twice")
	}
	notifySecret := key.Secret()

	listenAddr := apptest.FreeAddr(t)
	listener := startCLI(t, cleanEnv(), "notify", "listen", "--addr", listenAddr, "--secret", notifySecret)
	apptest.WaitFor(t, "notify listen is up", 15*time.Second, func() bool { return strings.Contains(listener.stderr.String(), "Listening on") })

	addr := apptest.FreeAddr(t)
	srv := serveAt(t, addr, "DATABASE_URL="+filepath.Join(t.TempDir(), "n.db"), "REPLICATE_WEBHOOK_SECRET="+secret,
		"TRAINHOOK_NOTIFY_URL=http://"+listenAddr+"/", "TRAINHOOK_NOTIFY_SECRET="+notifySecret)
	c, err := apiclient.New(srv.url, "")
	if err != nil {
		t.Fatal(err)
	}
	const tid = "r7k2m9x4c1rm80cq3ftw6n8eaa"
	reg, err := c.Register(t.Context(), apiclient.RegisterRequest{Name: "cli notify", TrainingID: tid})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"id":%q,"status":"succeeded","output":{"version":"acme/x:abc123","weights":"https://example.com/w.tar"},"logs":"done","completed_at":"2025-03-04T10:36:47.551207Z"}`, tid))
	k, _ := replicate.ParseKey(secret)
	req, _ := http.NewRequest("POST", srv.url+"/api/webhooks/replicate/completed", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	k.SignRequest(req.Header, "msg_cli", time.Now(), body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("deliver: %v %v", resp, err)
	}
	resp.Body.Close()

	apptest.WaitFor(t, "notify listen prints model.ready", 15*time.Second, func() bool { return strings.Contains(listener.stdout.String(), `"type":"model.ready"`) })
	var ev struct {
		WebhookID string `json:"webhook_id"`
		Data      struct {
			Model    struct{ ID string }
			Sequence int
		}
	}
	if err := json.Unmarshal([]byte(strings.SplitN(listener.stdout.String(), "\n", 2)[0]), &ev); err != nil || ev.Data.Model.ID != reg.Model.ID || ev.Data.Sequence < 1 {
		t.Fatalf("listen printed %q (%v)", listener.stdout.String(), err)
	}

	env := cleanEnv("TRAINHOOK_URL=" + srv.url)
	apptest.WaitFor(t, "the notification is delivered", 15*time.Second, func() bool {
		_, out, _ := runCLI(t, env, "notifications", "--status", "delivered", "--model", reg.Model.ID)
		return strings.Contains(out, "model.ready")
	})
	ns, err := c.Notifications(t.Context(), apiclient.NotificationOptions{ModelID: reg.Model.ID})
	if err != nil || len(ns) != 1 {
		t.Fatalf("notifications: %v %v", ns, err)
	}
	id := fmt.Sprint(ns[0].ID)
	code, out, errOut := runCLI(t, env, "notifications", "show", id)
	if code != 0 {
		t.Fatalf("show: %d %s %s", code, out, errOut)
	}
	mustContain(t, "notifications show", out, ev.WebhookID, "delivered after 1 attempt(s)", "HTTP 204")
	code, out, _ = runCLI(t, env, "notifications", "resend", id)
	if code != 0 || !strings.Contains(out, "will be sent again") {
		t.Fatalf("resend: %d %s", code, out)
	}
	apptest.WaitFor(t, "the resent notification is printed", 15*time.Second, func() bool { return strings.Count(listener.stdout.String(), ev.WebhookID) == 2 })

	// The receiver refuses what it cannot verify.
	forged, _ := http.NewRequest("POST", "http://"+listenAddr+"/", strings.NewReader(`{"type":"model.ready"}`))
	forged.Header.Set("webhook-id", "evt_forged")
	forged.Header.Set("webhook-timestamp", fmt.Sprint(time.Now().Unix()))
	forged.Header.Set("webhook-signature", "v1,AAAA")
	if resp, err := http.DefaultClient.Do(forged); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged request: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}

	// Bad input: a clear message, exit 2, nothing sent.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"notifications", "resend", "abc"}, "not a notification id"},
		{[]string{"notifications", "--status", "lost"}, "pending, delivered or failed"},
		{[]string{"notify", "listen", "--secret", "nope"}, "whsec_"},
		{[]string{"notify", "bogus"}, "Usage: trainhook notify"},
	} {
		code, _, errOut := runCLI(t, env, tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	if code, _, errOut := runCLI(t, env, "notifications", "show", "999999"); code != exitFailed || !strings.Contains(errOut, "no notification with id 999999") {
		t.Errorf("show unknown: %d %q", code, errOut)
	}
}
