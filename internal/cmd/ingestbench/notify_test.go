package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/replicate"
)

// notifyServer starts a real trainhook that notifies addr, signed with a
// fresh key, and returns it with the key.
func notifyServer(t *testing.T) (*apptest.Server, string, replicate.Keys) {
	t.Helper()
	addr := apptest.FreeAddr(t)
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i*7 + 3)
	}
	secret := replicate.NewKey(raw).Secret()
	srv := apptest.Start(t, apptest.Options{Env: map[string]string{
		"TRAINHOOK_WEBHOOKS": "off", "REPLICATE_BASE_URL": "http://127.0.0.1:9/v1",
		"TRAINHOOK_NOTIFY_URL": "http://" + addr + "/", "TRAINHOOK_NOTIFY_SECRET": secret,
	}})
	keys, err := replicate.ParseKeys(secret)
	if err != nil {
		t.Fatal(err)
	}
	return srv, addr, keys
}

func TestRunWithNotifications(t *testing.T) {
	srv, addr, keys := notifyServer(t)
	benchKeys, _ := replicate.ParseKeys(apptest.Secret)
	o := Options{URL: srv.URL, Key: benchKeys[0], N: 60, Concurrency: 8, PayloadBytes: 1024, DurationMax: time.Minute,
		NotifyAddr: addr, NotifyKeys: keys}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	n := res.Notify
	if n == nil || !res.Passed() {
		t.Fatalf("not passed: %+v, notify %+v", res, n)
	}
	if n.Notified != 60 || n.Received < 60 || n.FailedVerification != 0 || n.Addr != addr {
		t.Errorf("notify counts: %+v", n)
	}
	if n.Lag.P50 <= 0 || n.Lag.P50 > n.Lag.P99 || n.Lag.P99 > n.Lag.Max || n.Lag.Max > 60000 {
		t.Errorf("lag: %+v", n.Lag)
	}
}

// With the wrong key every notification fails verification: the run does
// not pass, and says why.
func TestRunWithNotificationsWrongSecret(t *testing.T) {
	srv, addr, _ := notifyServer(t)
	benchKeys, _ := replicate.ParseKeys(apptest.Secret)
	other, _ := replicate.ParseKeys(replicate.NewKey(make([]byte, 32)).Secret())
	o := Options{URL: srv.URL, Key: benchKeys[0], N: 5, Concurrency: 2, PayloadBytes: 512, DurationMax: 4 * time.Second,
		NotifyAddr: addr, NotifyKeys: other}
	res, err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "waiting for notifications") || res.Passed() {
		t.Fatalf("err %v, passed %v", err, res.Passed())
	}
	if res.Notify == nil || res.Notify.Notified != 0 || res.Notify.FailedVerification == 0 || res.Verify.Ready != 5 {
		t.Errorf("notify %+v, verify %+v", res.Notify, res.Verify)
	}
}

func TestNotifyReceiverRefusesOtherHosts(t *testing.T) {
	keys, _ := replicate.ParseKeys(testSecret)
	for _, addr := range []string{"10.0.0.1:8091", "example.com:80", "nonsense"} {
		if _, err := startNotifyReceiver(addr, keys); err == nil {
			t.Errorf("%s accepted", addr)
		}
	}
	if _, err := startNotifyReceiver("127.0.0.1:0", nil); err == nil {
		t.Error("no key accepted")
	}
}
