package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// Test keys (not real secrets): REPLICATE.md's vectors.
const (
	key1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key2 = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

func keys(t *testing.T, s ...string) replicate.Keys {
	t.Helper()
	ks, err := replicate.ParseKeys(strings.Join(s, " "))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addEvent stores a model and one event of it for url, as the service
// would in the change's transaction.
func addEvent(t *testing.T, s store.Store, name, typ, url string) string {
	t.Helper()
	now := time.Now()
	m := training.Model{ID: training.NewID(now), Name: name, Status: training.Ready, Output: json.RawMessage(`{"version":"o/m:v1"}`), CreatedAt: now, UpdatedAt: now}
	body, _ := json.Marshal(m)
	ev := "evt_" + training.NewID(now)
	err := s.Write(t.Context(), func(tx store.Tx) error {
		if err := tx.InsertModel(t.Context(), &m); err != nil {
			return err
		}
		return tx.AddNotification(t.Context(), store.NewNotification{EventID: ev, ModelID: m.ID, Type: typ, Sequence: m.Version, At: now, Model: body, URLs: []string{url}})
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a loopback app endpoint answering with answer(n), n counting
// requests from 1.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := newUnstartedReceiver(t, answer)
	rc.Start()
	return rc
}

// newUnstartedReceiver is newReceiver before Start, for tests that set
// the server's hooks.
func newUnstartedReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, received{r.Header.Clone(), b, time.Now()})
		n := len(rc.reqs)
		rc.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func run(t *testing.T, o Options) *Sender {
	t.Helper()
	if o.Poll == 0 {
		o.Poll = 20 * time.Millisecond
	}
	if o.Backoff == nil {
		o.Backoff = func(int) time.Duration { return 50 * time.Millisecond }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("sender did not stop")
		}
	})
	return s
}

// waitStatus waits until the only notification of the event has status.
func waitStatus(t *testing.T, s store.Store, eventID, status string) (store.Notification, []store.NotificationAttempt) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ns, err := s.ListNotifications(t.Context(), store.NotificationFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.EventID == eventID && n.Status == status {
				n, as, err := s.GetNotification(t.Context(), n.ID)
				if err != nil {
					t.Fatal(err)
				}
				return n, as
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %s never became %s: %+v", eventID, status, ns)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Delivered once, signed by every key: a receiver holding either key
// (before or after a rotation) verifies it with the reference library.
func TestDeliveredSignedByEveryKey(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	ev := addEvent(t, st, "m1", "model.ready", rc.URL+"/hook")
	run(t, Options{Store: st, Keys: keys(t, key1, key2)})
	n, attempts := waitStatus(t, st, ev, store.NotifyDelivered)
	if n.Attempts != 1 || len(attempts) != 1 || attempts[0].StatusCode != 204 || n.DeliveredAt == nil {
		t.Fatalf("delivered row %+v, attempts %+v", n, attempts)
	}
	reqs := rc.got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	for _, k := range []string{key1, key2} {
		wh, err := standardwebhooks.NewWebhook(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("a receiver holding one key cannot verify: %v", err)
		}
	}
	if other, _ := standardwebhooks.NewWebhook("whsec_" + strings.Repeat("QUFB", 8)); other.Verify(r.body, r.header) == nil {
		t.Error("a receiver with another key verified it")
	}
	if r.header.Get("webhook-id") != ev || strings.Contains(ev, ".") || len(strings.Fields(r.header.Get("webhook-signature"))) != 2 {
		t.Errorf("headers %v, want webhook-id %s and two signatures", r.header, ev)
	}
	var p struct {
		Type      string
		Timestamp time.Time
		Data      struct {
			Model    training.Model
			Sequence int64
		}
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "model.ready" || p.Timestamp.IsZero() || p.Data.Sequence != 1 || p.Data.Model.Name != "m1" ||
		p.Data.Model.Status != training.Ready || string(p.Data.Model.Output) != `{"version":"o/m:v1"}` {
		t.Errorf("payload %s", r.body)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}
}

// A failure is retried with the same webhook-id and body, a new timestamp
// and signature; the attempt before is recorded with its error.
func TestRetriedWithTheSameID(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n < 3 {
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	ev := addEvent(t, st, "m1", "model.ready", rc.URL)
	run(t, Options{Store: st, Keys: keys(t, key1), Backoff: func(int) time.Duration { return 1100 * time.Millisecond }})
	n, attempts := waitStatus(t, st, ev, store.NotifyDelivered)
	reqs := rc.got()
	if len(reqs) != 3 || n.Attempts != 3 || len(attempts) != 3 {
		t.Fatalf("%d requests, row %+v, %d attempts; want 3", len(reqs), n, len(attempts))
	}
	if attempts[0].StatusCode != 500 || !strings.Contains(attempts[0].Error, "HTTP 500: database is down") {
		t.Errorf("first attempt %+v", attempts[0])
	}
	wh, _ := standardwebhooks.NewWebhook(key1)
	for i, r := range reqs {
		if r.header.Get("webhook-id") != ev || string(r.body) != string(reqs[0].body) {
			t.Errorf("request %d: id %s body %s; want %s and the first body", i, r.header.Get("webhook-id"), r.body, ev)
		}
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if reqs[0].header.Get("webhook-timestamp") == reqs[2].header.Get("webhook-timestamp") {
		t.Error("a retry carried the first attempt's timestamp; each attempt is signed at its own time")
	}
}

// Retry-After (seconds or an HTTP date) delays the retry beyond the backoff.
func TestRetryAfterHonoured(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	ev := addEvent(t, st, "m1", "model.ready", rc.URL)
	run(t, Options{Store: st, Keys: keys(t, key1)}) // backoff 50ms
	waitStatus(t, st, ev, store.NotifyDelivered)
	reqs := rc.got()
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 1900*time.Millisecond {
		t.Errorf("retried after %s despite Retry-After: 2", gap)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"7": 7 * time.Second, " 0 ": 0, "Thu, 01 Jan 2026 00:01:30 GMT": 90 * time.Second,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0, "99999999": maxRetryAfter,
	} {
		if got, ok := RetryAfter(v, now); !ok || got != want {
			t.Errorf("RetryAfter(%q) = %s, %v; want %s", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "soon"} {
		if _, ok := RetryAfter(v, now); ok {
			t.Errorf("RetryAfter(%q) accepted", v)
		}
	}
}

// 410 Gone: failed at once, not retried. A redirect is a failure and is
// not followed.
func TestGoneAndRedirect(t *testing.T) {
	st := openStore(t)
	gone := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) })
	target := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	redirect := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	})
	evGone := addEvent(t, st, "m1", "model.ready", gone.URL)
	evRedirect := addEvent(t, st, "m2", "model.ready", redirect.URL)
	run(t, Options{Store: st, Keys: keys(t, key1), Backoff: func(int) time.Duration { return time.Hour }})
	n, attempts := waitStatus(t, st, evGone, store.NotifyFailed)
	if n.Attempts != 1 || attempts[0].StatusCode != 410 {
		t.Errorf("410: %+v %+v", n, attempts)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ns, _ := st.ListNotifications(t.Context(), store.NotificationFilter{Limit: 10})
		var r store.Notification
		for _, x := range ns {
			if x.EventID == evRedirect {
				r = x
			}
		}
		if r.Attempts == 1 {
			if r.Status != store.NotifyPending || r.LastStatus != 307 || !strings.Contains(r.LastError, "redirects are not followed") {
				t.Errorf("redirected: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redirect never attempted: %+v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(target.got()) != 0 {
		t.Error("the redirect was followed")
	}
	if len(gone.got()) != 1 {
		t.Errorf("410 receiver got %d requests, want 1", len(gone.got()))
	}
}

// A receiver that never answers in time is retried until the window ends,
// then the notification is failed. A slow receiver does not hold up
// another's notifications.
func TestTimeoutRetryWindowAndIsolation(t *testing.T) {
	st := openStore(t)
	block := make(chan struct{})
	slow := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	defer close(block)
	fast := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	evSlow := addEvent(t, st, "slow", "model.ready", slow.URL)
	reg := metrics.New()
	run(t, Options{Store: st, Keys: keys(t, key1), Timeout: 300 * time.Millisecond, RetryFor: 1500 * time.Millisecond,
		Concurrency: 2, Metrics: reg})
	time.Sleep(50 * time.Millisecond) // the slow one is in flight
	evFast := addEvent(t, st, "fast", "model.ready", fast.URL)
	t0 := time.Now()
	waitStatus(t, st, evFast, store.NotifyDelivered)
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the fast receiver waited %s behind the slow one", d)
	}
	n, attempts := waitStatus(t, st, evSlow, store.NotifyFailed)
	if n.Attempts < 2 || len(attempts) != n.Attempts || !strings.Contains(attempts[0].Error, "no answer within 300ms") {
		t.Errorf("slow: %+v, %+v", n, attempts)
	}
	var b strings.Builder
	reg.WriteTo(&b)
	for _, want := range []string{`trainhook_notifications_total{outcome="delivered"} 1`, `trainhook_notifications_total{outcome="failed"} 1`,
		`trainhook_notification_attempts_total{result="timeout"}`, "trainhook_notification_lag_seconds_count 1"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, b.String())
		}
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 15 * time.Second, 3: 45 * time.Second, 6: 1215 * time.Second, 7: time.Hour, 40: time.Hour} {
		if got := Backoff(n, 0.5); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, want)
		}
	}
	if lo, hi := Backoff(1, 0), Backoff(1, 0.999999); lo != 4*time.Second || hi < 5990*time.Millisecond || hi > 6*time.Second {
		t.Errorf("jitter range %s..%s, want 4s..6s", lo, hi)
	}
}

// Sign against the Standard Webhooks specification's own example.
func TestSignSpecVector(t *testing.T) {
	k := keys(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	h := http.Header{}
	Sign(h, k, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if got, want := h.Get("webhook-signature"), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("signature %s, want the spec's %s", got, want)
	}
}

// Queue depth and the oldest pending event's age are exported as gauges.
func TestQueueGauges(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	addEvent(t, st, "a", "model.ready", rc.URL)
	addEvent(t, st, "b", "model.failed", rc.URL)
	reg := metrics.New()
	run(t, Options{Store: st, Keys: keys(t, key1), Metrics: reg, Backoff: func(int) time.Duration { return time.Hour }})
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.got()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("not attempted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var b strings.Builder
	reg.WriteTo(&b)
	if !strings.Contains(b.String(), "trainhook_notifications_pending 2\n") {
		t.Errorf("want 2 pending:\n%s", b.String())
	}
	var age float64
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "trainhook_notification_oldest_pending_seconds "); ok {
			_, _ = fmt.Sscan(v, &age)
		}
	}
	if age <= 0 || age > 60 {
		t.Errorf("oldest pending age %v s, want a few ms to seconds", age)
	}
}

func TestProbe(t *testing.T) {
	up := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {})
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL + "/hook"
	down.Close() // nothing listens there now
	bad := Probe(t.Context(), []string{up.URL + "/hook", downURL}, time.Second)
	if len(bad) != 1 || bad[downURL] == nil || !strings.Contains(bad[downURL].Error(), "cannot connect to 127.0.0.1:") {
		t.Errorf("Probe = %v, want only %s unreachable", bad, downURL)
	}
	if n := len(up.got()); n != 0 {
		t.Errorf("the probe sent %d requests; it must only connect", n)
	}
}

// More due notifications than request slots are all sent without waiting
// for the poll: each finished request makes room for the next at once.
// With the poll an hour away, a sender that waited for it would stall
// after its first batch.
func TestFreedSlotSendsTheNext(t *testing.T) {
	st := openStore(t)
	rc := newReceiver(t, func(int, http.ResponseWriter, *http.Request) {})
	const n = 12
	var events []string
	for i := range n {
		events = append(events, addEvent(t, st, fmt.Sprintf("m%d", i), "model.ready", rc.URL))
	}
	run(t, Options{Store: st, Keys: keys(t, key1), Concurrency: 2, Poll: time.Hour})
	for _, ev := range events {
		waitStatus(t, st, ev, store.NotifyDelivered)
	}
	if got := len(rc.got()); got != n {
		t.Errorf("receiver got %d requests, want %d", got, n)
	}
}

// Requests in flight to one receiver reuse their connections: about as many
// are opened as there are request slots, however many notifications go.
// (A slot freed an instant before its connection is back in the idle pool
// may dial one more; Go's default of 2 idle connections per host closes and
// redials them all the time: dozens here.)
func TestConnectionsReused(t *testing.T) {
	st := openStore(t)
	rc := newUnstartedReceiver(t, func(int, http.ResponseWriter, *http.Request) {})
	var opened atomic.Int64
	rc.Config.ConnState = func(_ net.Conn, cs http.ConnState) {
		if cs == http.StateNew {
			opened.Add(1)
		}
	}
	rc.Start()
	const n, slots = 60, 6
	var events []string
	for i := range n {
		events = append(events, addEvent(t, st, fmt.Sprintf("m%d", i), "model.ready", rc.URL))
	}
	run(t, Options{Store: st, Keys: keys(t, key1), Concurrency: slots})
	for _, ev := range events {
		waitStatus(t, st, ev, store.NotifyDelivered)
	}
	if got := opened.Load(); got > 2*slots {
		t.Errorf("the receiver saw %d connections for %d notifications with %d slots; want at most %d (idle connections are being closed)", got, n, slots, 2*slots)
	}
}

// While intake saturates the writer the sender keeps one request in flight,
// unless the backlog has grown older than YieldFor; otherwise it uses every
// slot.
func TestYieldsToBusyIntake(t *testing.T) {
	for _, tc := range []struct {
		name     string
		busy     bool
		yieldFor time.Duration
		held     bool // nothing is sent while intake stays busy
	}{
		{"intake busy", true, time.Hour, true},
		{"intake busy, backlog older than YieldFor", true, time.Millisecond, false},
		{"intake idle", false, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			var mu sync.Mutex
			inFlight, maxInFlight, received := 0, 0, 0
			rc := newReceiver(t, func(int, http.ResponseWriter, *http.Request) {
				mu.Lock()
				inFlight++
				received++
				maxInFlight = max(maxInFlight, inFlight)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				inFlight--
				mu.Unlock()
			})
			var events []string
			for i := range 12 {
				events = append(events, addEvent(t, st, fmt.Sprintf("m%d", i), "model.ready", rc.URL))
			}
			time.Sleep(5 * time.Millisecond) // the backlog is older than the shortest YieldFor
			var busy atomic.Bool
			busy.Store(tc.busy)
			s := run(t, Options{Store: st, Keys: keys(t, key1), Concurrency: 4, YieldFor: tc.yieldFor,
				Poll: 50 * time.Millisecond, Busy: busy.Load})
			if tc.held {
				time.Sleep(300 * time.Millisecond)
				mu.Lock()
				n := received
				mu.Unlock()
				if n != 0 {
					t.Errorf("%d requests sent while intake was busy and the backlog young; want none", n)
				}
				if yields := s.yields.Value(); yields == 0 {
					t.Error("no yield counted while intake was busy")
				}
				busy.Store(false) // the burst has passed
			}
			for _, ev := range events {
				waitStatus(t, st, ev, store.NotifyDelivered)
			}
			mu.Lock()
			got := maxInFlight
			mu.Unlock()
			if got < 2 {
				t.Errorf("at most %d requests were in flight at once; want the sender's full concurrency once it may send", got)
			}
			if yields := s.yields.Value(); (yields > 0) != tc.held {
				t.Errorf("yields counted %d", yields)
			}
		})
	}
}
