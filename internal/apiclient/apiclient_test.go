package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// fakeServer is a hand-written stand-in for trainhook's API: one model whose
// state the test moves, served by GET /api/models/{id} and, optionally,
// pushed on GET /api/events.
type fakeServer struct {
	t      *testing.T
	mu     sync.Mutex
	model  training.Model
	events chan training.Model // nil: no /api/events (404, as an older server)
	gets   atomic.Int32
	fail   atomic.Int32 // answer this many GETs with 503 first
	srv    *httptest.Server
}

func newFakeServer(t *testing.T, withEvents bool) *fakeServer {
	f := &fakeServer{t: t, model: training.Model{ID: "m1", Name: "portrait", Status: training.Training, CreatedAt: time.Now(), UpdatedAt: time.Now()}}
	if withEvents {
		f.events = make(chan training.Model, 16)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/models/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.gets.Add(1)
		if f.fail.Load() > 0 {
			f.fail.Add(-1)
			writeTestJSON(w, 503, map[string]string{"error": "the database is busy"})
			return
		}
		if r.PathValue("id") != "m1" {
			writeTestJSON(w, 404, map[string]string{"error": `no model with id "` + r.PathValue("id") + `"`})
			return
		}
		f.mu.Lock()
		m := f.model
		f.mu.Unlock()
		writeTestJSON(w, 200, ModelDetail{Model: m, History: []training.HistoryEntry{{ModelID: "m1", To: m.Status}}})
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		if f.events == nil {
			writeTestJSON(w, 404, map[string]string{"error": "no such API endpoint"})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "retry: 2000\n\n: heartbeat\n\n")
		w.(http.Flusher).Flush()
		n := 0
		for {
			select {
			case <-r.Context().Done():
				return
			case m := <-f.events:
				n++
				data, _ := json.Marshal(m)
				// Another model's event first: Watch must ignore it.
				fmt.Fprintf(w, "id: %d\nevent: model\ndata: {\"id\":\"other\",\"status\":\"Ready\",\"updated_at\":%q}\n\n", 1000+n, time.Now().Format(time.RFC3339Nano))
				fmt.Fprintf(w, "id: %d\nevent: model\ndata: %s\n\n", n, data)
				w.(http.Flusher).Flush()
			}
		}
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// set changes the model, as a committed transition would.
func (f *fakeServer) set(change func(m *training.Model)) training.Model {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.model)
	f.model.UpdatedAt = time.Now()
	return f.model
}

func writeTestJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func client(t *testing.T, url string) *Client {
	t.Helper()
	c, err := New(url, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// With an event stream, Watch follows the pushed changes and reads the
// model only at the start and the end.
func TestWatchFollowsEvents(t *testing.T) {
	f := newFakeServer(t, true)
	var seen []string
	done := make(chan struct{})
	var final ModelDetail
	var err error
	go func() {
		defer close(done)
		final, err = client(t, f.srv.URL).Watch(context.Background(), "m1", WatchOptions{PollInterval: time.Hour}, func(m training.Model) {
			seen = append(seen, fmt.Sprintf("%s %.0f", m.Status, m.Progress.Percent))
		})
	}()
	waitFor(t, func() bool { return f.gets.Load() >= 1 })
	for _, pct := range []float64{25, 50} {
		time.Sleep(5 * time.Millisecond) // distinct UpdatedAt
		f.events <- f.set(func(m *training.Model) {
			m.Progress = training.Progress{Percent: pct, Step: int(pct) * 10, Total: 1000}
		})
	}
	time.Sleep(5 * time.Millisecond)
	f.events <- f.set(func(m *training.Model) { m.Status, m.Progress.Percent = training.Ready, 100 })
	<-done
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Training 0", "Training 25", "Training 50", "Ready 100"}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("saw %v, want %v", seen, want)
	}
	if final.Status != training.Ready || len(final.History) == 0 {
		t.Fatalf("final %+v: want Ready with its history", final)
	}
	if n := f.gets.Load(); n != 2 {
		t.Fatalf("%d GETs: with events, want one at the start and one at the end", n)
	}
}

// Without /api/events (an older server), Watch polls.
func TestWatchPollsWithoutEvents(t *testing.T) {
	f := newFakeServer(t, false)
	go func() {
		waitFor(t, func() bool { return f.gets.Load() >= 3 })
		f.set(func(m *training.Model) { m.Progress.Percent = 40 })
		waitFor(t, func() bool { return f.gets.Load() >= 6 })
		f.set(func(m *training.Model) { m.Status, m.Error = training.Failed, "CUDA out of memory" })
	}()
	var seen []training.Status
	d, err := client(t, f.srv.URL).Watch(context.Background(), "m1", WatchOptions{PollInterval: 5 * time.Millisecond}, func(m training.Model) {
		seen = append(seen, m.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != training.Failed || d.Error != "CUDA out of memory" {
		t.Fatalf("final %+v", d.Model)
	}
	if len(seen) != 3 {
		t.Fatalf("saw %v: want the start, the progress and the end", seen)
	}
}

// A server that fails for a moment (a restart) does not end the watch; an
// outage longer than MaxOutage does.
func TestWatchRidesOutShortOutages(t *testing.T) {
	f := newFakeServer(t, false)
	c := client(t, f.srv.URL)
	go func() {
		waitFor(t, func() bool { return f.gets.Load() >= 1 })
		f.fail.Store(3)
		waitFor(t, func() bool { return f.fail.Load() == 0 })
		f.set(func(m *training.Model) { m.Status = training.Canceled })
	}()
	d, err := c.Watch(context.Background(), "m1", WatchOptions{PollInterval: 5 * time.Millisecond, MaxOutage: time.Minute}, nil)
	if err != nil || d.Status != training.Canceled {
		t.Fatalf("%v %v", d.Status, err)
	}

	f2 := newFakeServer(t, false)
	go func() {
		waitFor(t, func() bool { return f2.gets.Load() >= 1 })
		f2.fail.Store(1 << 20)
	}()
	_, err = client(t, f2.srv.URL).Watch(context.Background(), "m1", WatchOptions{PollInterval: 5 * time.Millisecond, MaxOutage: 50 * time.Millisecond}, nil)
	if StatusCode(err) != 503 {
		t.Fatalf("err %v: want the 503 after MaxOutage", err)
	}
}

// Ending ctx stops the watch and returns the last model seen.
func TestWatchStopsWhenCanceled(t *testing.T) {
	f := newFakeServer(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	d, err := client(t, f.srv.URL).Watch(ctx, "m1", WatchOptions{}, func(training.Model) { cancel() })
	if !errors.Is(err, context.Canceled) || d.Status != training.Training {
		t.Fatalf("%v %v", d.Status, err)
	}
}

func TestWatchUnknownModel(t *testing.T) {
	f := newFakeServer(t, true)
	_, err := client(t, f.srv.URL).Watch(context.Background(), "nope", WatchOptions{}, nil)
	if !IsNotFound(err) {
		t.Fatalf("err %v: want a 404", err)
	}
}

func TestErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	_, err = client(t, closed).Models(context.Background(), ListOptions{})
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "cannot reach trainhook at "+closed) {
		t.Fatalf("closed port: %v", err)
	}

	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome to nginx!</body></html>")
	}))
	defer html.Close()
	_, err = client(t, html.URL).Models(context.Background(), ListOptions{})
	if err == nil || !strings.Contains(err.Error(), "not trainhook's JSON") || !strings.Contains(err.Error(), "Welcome to nginx") {
		t.Fatalf("HTML answer: %v", err)
	}

	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer right" {
			writeTestJSON(w, 401, map[string]string{"error": "wrong API token"})
			return
		}
		writeTestJSON(w, 200, ModelPage{Models: []training.Model{}})
	}))
	defer auth.Close()
	c, _ := New(auth.URL, "wrong")
	if _, err := c.Models(context.Background(), ListOptions{}); !IsUnauthorized(err) || !c.HasToken() {
		t.Fatalf("wrong token: %v", err)
	}
	c, _ = New(auth.URL+"/", "right")
	if _, err := c.Models(context.Background(), ListOptions{}); err != nil {
		t.Fatalf("right token: %v", err)
	}

	for _, bad := range []string{"localhost:8080", "ftp://x", "http://", "http://x?y=1"} {
		if _, err := New(bad, ""); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestStartOutcomes(t *testing.T) {
	var code atomic.Int32
	var gotKey, gotBody atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		b, _ := json.Marshal(body)
		gotBody.Store(string(b))
		gotKey.Store(r.Header.Get("Idempotency-Key"))
		m := training.Model{ID: "m1", Status: training.Training}
		switch c := int(code.Load()); c {
		case 201:
			writeTestJSON(w, c, m)
		case 200:
			w.Header().Set("Idempotent-Replayed", "true")
			writeTestJSON(w, c, m)
		case 202:
			m.Status = training.Pending
			writeTestJSON(w, c, map[string]any{"id": "m1", "status": "Pending", "warning": "Replicate did not answer"})
		case 422:
			m.Status, m.Error = training.Failed, "Invalid version or not permitted"
			writeTestJSON(w, c, map[string]any{"error": "Replicate refused the training: Invalid version or not permitted", "model": m})
		default:
			writeTestJSON(w, c, map[string]string{"error": `"trainer" must be owner/model`})
		}
	}))
	defer srv.Close()
	c := client(t, srv.URL)
	req := StartRequest{Trainer: "ostris/flux-dev-lora-trainer", Destination: "acme/x", Input: json.RawMessage(`{"steps":1000}`), IdempotencyKey: "k1"}

	code.Store(201)
	res, err := c.Start(context.Background(), req)
	if err != nil || res.Outcome != Created || res.Model.ID != "m1" {
		t.Fatalf("201: %+v %v", res, err)
	}
	if gotKey.Load() != "k1" || gotBody.Load() != `{"destination":"acme/x","input":{"steps":1000},"trainer":"ostris/flux-dev-lora-trainer"}` {
		t.Fatalf("sent key %v body %v", gotKey.Load(), gotBody.Load())
	}
	code.Store(200)
	if res, err = c.Start(context.Background(), req); err != nil || res.Outcome != Replayed {
		t.Fatalf("200: %+v %v", res, err)
	}
	code.Store(202)
	if res, err = c.Start(context.Background(), req); err != nil || res.Outcome != InDoubt || res.Warning == "" || res.Model.Status != training.Pending {
		t.Fatalf("202: %+v %v", res, err)
	}
	code.Store(422)
	_, err = c.Start(context.Background(), req)
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Model.Status != training.Failed || !strings.Contains(refused.Message, "Invalid version") {
		t.Fatalf("422: %v", err)
	}
	code.Store(400)
	if _, err = c.Start(context.Background(), req); StatusCode(err) != 400 || !strings.Contains(err.Error(), "owner/model") {
		t.Fatalf("400: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Error("condition not met in 5s")
			return
		}
		time.Sleep(time.Millisecond)
	}
}
