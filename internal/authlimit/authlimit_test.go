package authlimit

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func req(addr string) *http.Request { return &http.Request{RemoteAddr: addr} }

func TestLimiterPerClient(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := New(3, time.Minute)
	l.now = func() time.Time { return now }
	a, b := req("192.0.2.1:1000"), req("192.0.2.2:1000")
	for i := range 3 {
		if _, blocked := l.Blocked(a); blocked {
			t.Fatalf("blocked after %d failures", i)
		}
		l.Failed(a)
		now = now.Add(10 * time.Second)
	}
	d, blocked := l.Blocked(req("192.0.2.1:2000")) // another port, same client
	if !blocked || d != 30*time.Second {
		t.Fatalf("after 3 failures: blocked %v for %v, want 30s", blocked, d)
	}
	if _, blocked := l.Blocked(b); blocked {
		t.Fatal("another address is blocked too")
	}
	now = now.Add(30 * time.Second) // the first failure is a minute old
	if _, blocked := l.Blocked(a); blocked {
		t.Fatal("still blocked once the oldest failure left the window")
	}
	l.Failed(a)
	if d, blocked := l.Blocked(a); !blocked || d != 10*time.Second {
		t.Fatalf("blocked %v for %v, want 10s (until the second failure is a minute old)", blocked, d)
	}
}

func TestClientGroupsIPv6By64(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1:80":                "192.0.2.1",
		"[::ffff:192.0.2.1]:80":       "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:80":   "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:9999": "2001:db8:1:2::/64",
		"[::1]:80":                    "::/64",
		"not an address":              "not an address",
	} {
		if got := Client(req(addr)); got != want {
			t.Errorf("Client(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := New(20, time.Minute)
	l.now = func() time.Time { return now }
	for i := range maxClients + 500 {
		l.Failed(req("10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + ":1"))
	}
	if n := len(l.clients); n > maxClients {
		t.Fatalf("%d clients tracked, want at most %d", n, maxClients)
	}
	for range 100 {
		l.Failed(req("192.0.2.9:1"))
	}
	if n := len(l.clients["192.0.2.9"]); n != 20 {
		t.Fatalf("%d failures kept for one client, want 20", n)
	}
}

func TestRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", time.Minute: "60"} {
		if got := RetryAfter(d); got != want {
			t.Errorf("RetryAfter(%v) = %s, want %s", d, got, want)
		}
	}
}
