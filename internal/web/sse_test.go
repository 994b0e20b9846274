package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
	"github.com/trainhook/trainhook/internal/web"
)

// sseEvent is one block of an event stream; a comment block has only comment.
type sseEvent struct {
	id, typ, data, comment, retry string
}

// stream is an open GET /api/events.
type stream struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
}

func openStream(t *testing.T, base string, h http.Header, query string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events"+query, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	st := &stream{t: t, resp: resp, cancel: cancel, events: make(chan sseEvent, 100)}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /api/events: %d %s", resp.StatusCode, b)
	}
	go func() {
		defer close(st.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				st.events <- ev
				ev = sseEvent{}
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				ev.comment = value
			case "id":
				ev.id = value
			case "event":
				ev.typ = value
			case "data":
				ev.data = value
			case "retry":
				ev.retry = value
			default:
				t.Errorf("unknown field in %q", line)
			}
		}
	}()
	t.Cleanup(st.close)
	return st
}

func (st *stream) close() {
	st.cancel()
	st.resp.Body.Close()
}

// next returns the next block that is not a heartbeat or the retry hint.
func (st *stream) next() sseEvent {
	st.t.Helper()
	for {
		select {
		case ev, ok := <-st.events:
			if !ok {
				st.t.Fatal("stream ended")
			}
			if ev.comment != "" || ev.retry != "" {
				continue
			}
			return ev
		case <-time.After(5 * time.Second):
			st.t.Fatal("no event within 5s")
		}
	}
}

func (st *stream) nextModel() (sseEvent, training.Model) {
	st.t.Helper()
	ev := st.next()
	var m training.Model
	if ev.typ != "model" || json.Unmarshal([]byte(ev.data), &m) != nil || ev.id == "" {
		st.t.Fatalf("not a model event: %+v", ev)
	}
	return ev, m
}

func id(ev sseEvent) int {
	n, _ := strconv.Atoi(ev.id)
	return n
}

func TestEventStream(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	st := openStream(t, s.url, nil, "")
	if ct := st.resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" || st.resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", st.resp.Header)
	}
	if first := <-st.events; first.retry != "2000" {
		t.Fatalf("first block %+v, want the retry hint", first)
	}
	a := s.register("first", "train-sse-1")
	evA, got := st.nextModel()
	if got.ID != a.ID || got.Status != training.Pending {
		t.Fatalf("event %+v", got)
	}
	instance := regexp.MustCompile(`data-instance="([0-9a-f]{16})"`).FindStringSubmatch(s.get("/").body)
	if instance == nil {
		t.Fatal("the page does not name the event stream's instance")
	}
	st.close()
	b := s.register("second", "train-sse-2")
	s.deliver(testKey, "msg_sse", payload("train-sse-2", "processing"))

	t.Run("Last-Event-ID resumes", func(t *testing.T) {
		re := openStream(t, s.url, http.Header{"Last-Event-ID": {evA.id}}, "?last_event_id=999999")
		ev1, m1 := re.nextModel()
		ev2, m2 := re.nextModel()
		if m1.ID != b.ID || m1.Status != training.Pending || m2.ID != b.ID || m2.Status != training.Training {
			t.Fatalf("resumed with %s %s, %s %s", m1.Name, m1.Status, m2.Name, m2.Status)
		}
		if id(ev1) <= id(evA) || id(ev2) <= id(ev1) {
			t.Fatalf("ids %s %s %s", evA.id, ev1.id, ev2.id)
		}
	})
	t.Run("last_event_id resumes, as the page's script does", func(t *testing.T) {
		re := openStream(t, s.url, nil, "?instance="+instance[1]+"&last_event_id="+evA.id)
		if _, m := re.nextModel(); m.ID != b.ID {
			t.Fatalf("got %s", m.Name)
		}
	})
	t.Run("an ID of another process resets", func(t *testing.T) {
		re := openStream(t, s.url, http.Header{"Last-Event-ID": {evA.id}}, "?instance=0123456789abcdef")
		if ev := re.next(); ev.typ != "reset" || !strings.Contains(ev.data, "reload") {
			t.Fatalf("got %+v", ev)
		}
		// Then live events, not a replay of this process's by the old ID.
		c := s.register("third", "train-sse-3")
		if _, m := re.nextModel(); m.ID != c.ID {
			t.Fatalf("got %s after the reset", m.Name)
		}
	})
	t.Run("a bad ID is refused", func(t *testing.T) {
		for _, q := range []string{"?last_event_id=abc", "?last_event_id=-1"} {
			r := s.get("/api/events" + q)
			if r.code != 400 || !strings.Contains(r.body, "last_event_id must be") {
				t.Errorf("%s: %d %s", q, r.code, r.body)
			}
		}
	})
	t.Run("shutdown ends streams", func(t *testing.T) {
		live := openStream(t, s.url, nil, "")
		began := time.Now()
		s.shutdown()
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("shutdown waited %v for the stream", d)
		}
		for range live.events {
		}
	})
}

// standalone mounts the dashboard alone, on a server with short timeouts,
// with a broker that keeps few events.
func standalone(t *testing.T, keep int) (*httptest.Server, *events.Broker) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	b := events.NewBroker(keep, log)
	mux := http.NewServeMux()
	dash := web.New(web.Deps{Broker: b, Log: log})
	dash.Register(mux)
	mux.Handle("GET /api/events", dash.Events())
	ts := httptest.NewUnstartedServer(mux)
	ts.Config.ReadTimeout = 300 * time.Millisecond
	ts.Config.WriteTimeout = 300 * time.Millisecond
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, b
}

func TestEventStreamMissedEvents(t *testing.T) {
	t.Parallel()
	ts, b := standalone(t, 2)
	for i := 0; i < 5; i++ {
		b.Publish("model", map[string]int{"n": i})
	}
	st := openStream(t, ts.URL, http.Header{"Last-Event-ID": {"1"}}, "")
	if ev := st.next(); ev.typ != "reset" {
		t.Fatalf("got %+v, want reset", ev)
	}
	// Then what is still kept, so the client's Last-Event-ID moves on.
	if ev := st.next(); ev.id != "4" {
		t.Fatalf("got %+v", ev)
	}
	if ev := st.next(); ev.id != "5" || ev.data != `{"n":4}` {
		t.Fatalf("got %+v", ev)
	}
}

func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	defer web.SetHeartbeat(100 * time.Millisecond)()
	defer web.SetWriteWait(50 * time.Millisecond)()
	ts, b := standalone(t, 16)
	st := openStream(t, ts.URL, nil, "")
	// Past the server's 300 ms read and write timeouts.
	deadline := time.After(900 * time.Millisecond)
	beats := 0
wait:
	for {
		select {
		case ev, ok := <-st.events:
			if !ok {
				t.Fatal("stream ended at the server's timeout")
			}
			if ev.comment == "heartbeat" {
				beats++
			}
		case <-deadline:
			break wait
		}
	}
	if beats < 3 {
		t.Fatalf("%d heartbeats in 900ms, want about 9", beats)
	}
	// An event larger than the stream's buffer (a model carries its log
	// tail), after the last write's deadline has passed.
	big := strings.Repeat("x", 20<<10)
	time.Sleep(80 * time.Millisecond)
	b.Publish("model", map[string]string{"id": "x", "log_tail": big})
	if ev := st.next(); ev.typ != "model" || ev.data != `{"id":"x","log_tail":"`+big+`"}` {
		t.Fatalf("got %.200v", ev)
	}
}

func TestEventStreamEndsWhenTheClientGoes(t *testing.T) {
	t.Parallel()
	ts, _ := standalone(t, 16)
	st := openStream(t, ts.URL, nil, "")
	<-st.events
	st.close()
	// httptest's Close waits for every handler to return.
	done := make(chan struct{})
	go func() { ts.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream's handler did not end after the client went away")
	}
}

// ?model= follows one model: other models' events are left out, and so
// are events of no model; with no filter every event comes.
func TestEventStreamModelFilter(t *testing.T) {
	ts, b := standalone(t, 100)
	one := openStream(t, ts.URL, nil, "?model=m2")
	all := openStream(t, ts.URL, nil, "")
	<-one.events // the retry hints
	<-all.events
	b.Publish("model", map[string]string{"id": "m1", "status": "Training"})
	b.Publish("delivery", map[string]string{"model_id": "m1"})
	b.Publish("model", map[string]string{"id": "m2", "status": "Training"})
	b.Publish("delivery", map[string]string{"model_id": "m2"})
	b.Publish("model", map[string]string{"id": "m2", "status": "Ready"})
	b.Publish("reset", map[string]string{"reason": "instances lost touch"})
	var got []string
	for range 4 {
		ev := one.next()
		got = append(got, ev.id+" "+ev.typ)
	}
	if strings.Join(got, ",") != "3 model,4 delivery,5 model,6 reset" {
		t.Errorf("?model=m2 got %v, want only m2's events 3, 4, 5 and the reset", got)
	}
	for want := 1; want <= 6; want++ {
		if ev := all.next(); id(ev) != want {
			t.Fatalf("unfiltered stream: event %s, want %d", ev.id, want)
		}
	}
	r, err := http.Get(ts.URL + "/api/events?model=" + strings.Repeat("x", 100))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest {
		t.Errorf("an overlong model id: %d, want 400", r.StatusCode)
	}
}

// ?model= also filters "notification" events, by their model_id: a model
// page's stream gets its own notifications' changes and no others.
func TestEventStreamModelFilterNotifications(t *testing.T) {
	ts, b := standalone(t, 100)
	one := openStream(t, ts.URL, nil, "?model=m2")
	<-one.events // the retry hint
	b.Publish(store.NotificationEventType, store.NotificationChange{ID: 1, ModelID: "m1", Status: "failed", Attempts: 1})
	b.Publish(store.NotificationEventType, store.NotificationChange{ID: 2, ModelID: "m2", Status: "delivered", Attempts: 1})
	b.Publish("model", map[string]string{"id": "m2", "status": "Ready"})
	if ev := one.next(); ev.id != "2" || ev.typ != "notification" || !strings.Contains(ev.data, `"model_id":"m2"`) {
		t.Errorf("first event on ?model=m2: %+v, want m2's notification (event 2)", ev)
	}
	if ev := one.next(); ev.id != "3" || ev.typ != "model" {
		t.Errorf("second event on ?model=m2: %+v, want m2's model event (event 3)", ev)
	}
}
