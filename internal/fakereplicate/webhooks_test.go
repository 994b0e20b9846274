package fakereplicate_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
)

// verify checks a delivery's signature as trainhook will, at time now.
func verify(t *testing.T, s *sim, r received, now time.Time) replicate.Training {
	t.Helper()
	if err := (replicate.Keys{s.Key()}).Verify(r.header, r.body, now); err != nil {
		t.Fatalf("delivery does not verify: %v\nheaders %v", err, r.header)
	}
	tr, err := replicate.ParseTraining(r.body)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestWebhooksSignedAndFiltered(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 20 * time.Second})
	rc := newReceiver(t, nil)
	s.mustCreateModel(t, "d")
	hook := rc.URL + "/hooks/replicate?job=42"
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": hook, "webhook_events_filter": []string{"start", "completed"}})["id"].(string)

	s.Settle()
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("%d deliveries before the training started", n)
	}
	s.clock.Advance(3 * time.Second) // past the longest queue (15% of 20 s)
	s.Settle()
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d deliveries after start, want 1 (start)", len(got))
	}
	start := verify(t, s, got[0], s.clock.Now())
	if start.ID != id || start.Status != "processing" || start.StartedAt == nil {
		t.Errorf("start event: %s %s", start.ID, start.Status)
	}
	if start.Webhook != hook || strings.Join(start.WebhookEventsFilter, ",") != "start,completed" {
		t.Errorf("webhook fields not echoed: %q %v", start.Webhook, start.WebhookEventsFilter)
	}
	if strings.Contains(string(got[0].body), `"destination"`) {
		t.Error("webhook body has a destination field")
	}
	if got[0].header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", got[0].header.Get("Content-Type"))
	}

	s.clock.Advance(17 * time.Second)
	s.Settle()
	got = rc.requests()
	if len(got) != 2 {
		t.Fatalf("%d deliveries at the end, want 2 (start, completed)", len(got))
	}
	done := verify(t, s, got[1], s.clock.Now())
	if done.Status != "succeeded" || len(done.Output) == 0 {
		t.Errorf("completed event: status %s output %s", done.Status, done.Output)
	}
	if got[0].header.Get("webhook-id") == got[1].header.Get("webhook-id") {
		t.Error("two messages share a webhook-id")
	}
	// The webhook body is the training as GET shows it (timestamps aside).
	if g := s.call(t, "GET", "/v1/trainings/"+id, nil); !strings.Contains(string(g.body), `"logs":`) || !strings.Contains(string(got[1].body), `"logs":`) {
		t.Error("webhook body or GET lacks logs")
	}
	ds := s.Deliveries(id)
	if len(ds) != 2 || ds[0].Event != "start" || ds[1].Event != "completed" || !ds[1].OK() || ds[1].WillRetry {
		t.Errorf("delivery log: %+v", ds)
	}
}

func TestLogsWebhooksThrottled(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second})
	rc := newReceiver(t, nil)
	s.mustCreateModel(t, "d")
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"logs"}})["id"].(string)
	for range 30 {
		s.clock.Advance(500 * time.Millisecond)
		s.Settle()
	}
	got := rc.requests()
	if len(got) < 10 {
		t.Fatalf("%d logs deliveries over a 10 s training, want one every 500 ms while processing", len(got))
	}
	prevLogs := ""
	for i, r := range got {
		tr := verify(t, s, r, s.clock.Now())
		if tr.Status != "processing" {
			t.Errorf("delivery %d: status %s; only logs events were asked for", i, tr.Status)
		}
		if !strings.HasPrefix(tr.Logs, prevLogs) || len(tr.Logs) <= len(prevLogs) {
			t.Errorf("delivery %d: logs did not grow", i)
		}
		prevLogs = tr.Logs
	}
	ds := s.Deliveries(id)
	for i := 1; i < len(ds); i++ {
		if gap := ds[i].At.Sub(ds[i-1].At); gap < fakereplicate.MinLogsInterval {
			t.Errorf("logs deliveries %d and %d are %v apart, under 500 ms", i-1, i, gap)
		}
	}
}

func TestTerminalWebhookRetriedWithSameID(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second, WebhookRetryWindow: 64 * time.Second})
	rc := newReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	s.mustCreateModel(t, "d")
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"completed"}})["id"].(string)

	var times []time.Time
	for _, step := range []time.Duration{10 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, time.Minute} {
		s.clock.Advance(step)
		s.Settle()
		times = append(times, s.clock.Now())
	}
	got := rc.requests()
	if len(got) != 3 {
		t.Fatalf("%d attempts, want 3 (500, 500, 204)", len(got))
	}
	for i, r := range got {
		verify(t, s, r, times[i])
		if r.header.Get("webhook-id") != got[0].header.Get("webhook-id") {
			t.Errorf("attempt %d has webhook-id %s, want %s", i+1, r.header.Get("webhook-id"), got[0].header.Get("webhook-id"))
		}
		if string(r.body) != string(got[0].body) {
			t.Errorf("attempt %d has a different body", i+1)
		}
		if ts, _ := strconv.ParseInt(r.header.Get("webhook-timestamp"), 10, 64); ts != times[i].Unix() {
			t.Errorf("attempt %d timestamp %d, want %d (fresh per attempt)", i+1, ts, times[i].Unix())
		}
	}
	if got[0].header.Get("webhook-signature") == got[1].header.Get("webhook-signature") {
		t.Error("a retry reused the signature; it must be signed with its own timestamp")
	}
	ds := s.Deliveries(id)
	if len(ds) != 3 || ds[0].StatusCode != 500 || !ds[0].WillRetry || ds[2].StatusCode != 204 || ds[2].Attempt != 3 || ds[2].WillRetry {
		t.Errorf("delivery log: %+v", ds)
	}
}

func TestTerminalWebhookGivesUpAfterWindow(t *testing.T) {
	window := 64 * time.Second
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second, WebhookRetryWindow: window})
	rc := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	s.mustCreateModel(t, "d")
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"start", "completed"}})["id"].(string)
	for range 100 {
		s.clock.Advance(time.Second)
		s.Settle()
	}
	ds := s.Deliveries(id)
	if len(ds) != 7 || ds[0].Event != "start" || ds[0].WillRetry {
		t.Fatalf("want the start event once (never retried) and 6 attempts of completed; got %+v", ds)
	}
	first, last := ds[1], ds[6]
	if last.Attempt != 6 || last.WillRetry {
		t.Errorf("last attempt %+v", last)
	}
	if span := last.At.Sub(first.At); span < window/2 || span > window {
		t.Errorf("retries spanned %v, want about the window (%v)", span, window)
	}
}

func TestRedirectsNotFollowed(t *testing.T) {
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/final", http.StatusPermanentRedirect)
	})
	mux.HandleFunc("/final", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	target := httptest.NewServer(mux)
	defer target.Close()

	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second, WebhookRetryWindow: 32 * time.Second})
	s.mustCreateModel(t, "d")
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": target.URL + "/hook", "webhook_events_filter": []string{"completed"}})["id"].(string)
	for range 50 {
		s.clock.Advance(time.Second)
		s.Settle()
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
	ds := s.Deliveries(id)
	if len(ds) != 6 {
		t.Fatalf("%d attempts, want 6: a 308 is a failed attempt", len(ds))
	}
	for _, d := range ds {
		if d.StatusCode != http.StatusPermanentRedirect {
			t.Errorf("attempt %d: %d %s", d.Attempt, d.StatusCode, d.Error)
		}
	}
}

func TestWebhooksOnlyDialLoopback(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second})
	s.mustCreateModel(t, "d")
	// 192.0.2.1 is TEST-NET-1; the dialer's Control refuses it before the
	// socket connects, and a host name is refused before any DNS lookup.
	for _, hook := range []string{"http://192.0.2.1:9/hook", "http://hooks.example.invalid/hook"} {
		id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": hook, "webhook_events_filter": []string{"completed"}})["id"].(string)
		s.clock.Advance(10 * time.Second)
		s.Settle()
		ds := s.Deliveries(id)
		if len(ds) != 1 || ds[0].StatusCode != 0 || !strings.Contains(ds[0].Error, "only delivers webhooks to loopback") || !ds[0].WillRetry {
			t.Errorf("%s: %+v", hook, ds)
		}
	}
}

func TestDropAndDuplicateFaults(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second, Faults: fakereplicate.Faults{DropWebhooks: 1}})
	rc := newReceiver(t, nil)
	s.mustCreateModel(t, "d")
	dropped := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"start", "completed"}})["id"].(string)
	s.clock.Advance(10 * time.Second)
	s.Settle()
	if n := len(rc.requests()); n != 0 {
		t.Errorf("%d requests with drop_webhooks 1", n)
	}
	if ds := s.Deliveries(dropped); len(ds) != 2 || !ds[0].Dropped || !ds[1].Dropped || s.Stats().WebhooksDropped != 2 {
		t.Errorf("dropped deliveries: %+v", ds)
	}

	if err := s.SetFaults(fakereplicate.Faults{DupWebhooks: 1}); err != nil {
		t.Fatal(err)
	}
	s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"completed"}})
	s.clock.Advance(10 * time.Second)
	s.Settle()
	s.clock.Advance(time.Second) // the copy follows within 250 ms
	s.Settle()
	got := rc.requests()
	if len(got) != 2 || got[0].header.Get("webhook-id") != got[1].header.Get("webhook-id") || string(got[0].body) != string(got[1].body) {
		t.Fatalf("duplicates: %d requests", len(got))
	}
	verify(t, s, got[0], s.clock.Now())
	verify(t, s, got[1], s.clock.Now())
}

func TestDelayedAndReorderedWebhooks(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second, Faults: fakereplicate.Faults{DelayWebhooks: 5 * time.Second}})
	rc := newReceiver(t, nil)
	s.mustCreateModel(t, "d")
	s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"completed"}})
	s.clock.Advance(10 * time.Second)
	s.Settle()
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("%d deliveries before the 5 s delay passed", n)
	}
	s.clock.Advance(5 * time.Second)
	s.Settle()
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("%d deliveries after the delay, want 1", n)
	}

	// Reordered: every message is still delivered, and verifies.
	if err := s.SetFaults(fakereplicate.Faults{ReorderWebhooks: true}); err != nil {
		t.Fatal(err)
	}
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL})["id"].(string)
	for range 30 {
		s.clock.Advance(500 * time.Millisecond)
		s.Settle()
	}
	ds := s.Deliveries(id)
	events := map[string]int{}
	for _, d := range ds {
		if !d.OK() {
			t.Errorf("delivery %+v failed", d)
		}
		events[d.Event]++
	}
	// No filter: start, logs and completed (a training has no output before it ends).
	if events["start"] != 1 || events["completed"] != 1 || events["logs"] < 5 {
		t.Errorf("events sent without a filter: %v", events)
	}
	for _, r := range rc.requests()[1:] {
		verify(t, s, r, s.clock.Now())
	}
}

func TestCancelSendsCompleted(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: time.Hour})
	rc := newReceiver(t, nil)
	s.mustCreateModel(t, "d")
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"completed"}})["id"].(string)
	s.call(t, "POST", "/v1/trainings/"+id+"/cancel", nil)
	s.Settle()
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("%d deliveries after cancel", len(got))
	}
	if tr := verify(t, s, got[0], s.clock.Now()); tr.Status != "canceled" {
		t.Errorf("status %s", tr.Status)
	}
	// The scheduled end sends nothing more.
	s.clock.Advance(2 * time.Hour)
	s.Settle()
	if n := len(rc.requests()); n != 1 {
		t.Errorf("%d deliveries after the scheduled end", n)
	}
}

func TestOutputFilterOnly(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second})
	rc := newReceiver(t, nil)
	s.mustCreateModel(t, "d")
	ok := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"output"}})["id"].(string)
	failed := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"output"}})["id"].(string)
	if err := s.Complete(failed, "failed", ""); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(10 * time.Second)
	s.Settle()
	if ds := s.Deliveries(ok); len(ds) != 1 || ds[0].Event != "output" || ds[0].TrainingStatus != "succeeded" {
		t.Errorf("succeeded training with filter [output]: %+v", ds)
	}
	if ds := s.Deliveries(failed); len(ds) != 0 {
		t.Errorf("failed training with filter [output]: %+v", ds)
	}
}

// On the real clock, with a short run, the whole path works end to end.
func TestRealClockLifecycle(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 300 * time.Millisecond, Clock: fakereplicate.SystemClock()})
	rc := newReceiver(t, nil)
	s.mustCreateModel(t, "d")
	s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": rc.URL, "webhook_events_filter": []string{"start", "completed"}})
	waitFor(t, "start and completed webhooks", func() bool { return len(rc.requests()) == 2 })
	got := rc.requests()
	if tr := verify(t, s, got[1], time.Now()); tr.Status != "succeeded" {
		t.Errorf("status %s", tr.Status)
	}
}
