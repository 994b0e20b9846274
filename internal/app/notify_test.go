package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// notifySecret signs notifications in these tests (not a real secret).
const notifySecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

type appEvent struct {
	ID        string
	Verified  bool
	Status    int // what the receiver answered
	Type      string
	Timestamp time.Time
	Model     training.Model
	Sequence  int64
}

// appReceiver is the app's notification endpoint on loopback: it verifies
// each request with the Standard Webhooks reference library, and answers
// with answer(n, id) for the n-th request overall.
type appReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	events []appEvent
}

func newAppReceiver(t *testing.T, answer func(n int, id string) int) *appReceiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(notifySecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &appReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev := appEvent{ID: r.Header.Get("webhook-id"), Verified: wh.Verify(body, r.Header) == nil}
		var p struct {
			Type      string
			Timestamp time.Time
			Data      struct {
				Model    training.Model
				Sequence int64
			}
		}
		if err := json.Unmarshal(body, &p); err == nil {
			ev.Type, ev.Timestamp, ev.Model, ev.Sequence = p.Type, p.Timestamp, p.Data.Model, p.Data.Sequence
		}
		rc.mu.Lock()
		n := len(rc.events) + 1
		ev.Status = answer(n, ev.ID)
		if !ev.Verified {
			ev.Status = http.StatusUnauthorized
		}
		rc.events = append(rc.events, ev)
		rc.mu.Unlock()
		w.WriteHeader(ev.Status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *appReceiver) got() []appEvent {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]appEvent(nil), rc.events...)
}

// waitAccepted waits until the receiver has answered 2xx to an event of
// the type for the model, and returns every request it got.
func (rc *appReceiver) waitAccepted(t *testing.T, modelID, typ string, within time.Duration) []appEvent {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		evs := rc.got()
		for _, e := range evs {
			if e.Model.ID == modelID && e.Type == typ && e.Status < 300 {
				return evs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no accepted %s for model %s within %s; got %+v", typ, modelID, within, evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A training started through the API completes at the simulator; the app
// is told, in order, with verified signatures, and a failed first attempt
// is retried with the same webhook-id.
func TestAppIsNotifiedWhenTrainingCompletes(t *testing.T) {
	rc := newAppReceiver(t, func(n int, _ string) int {
		if n == 1 {
			return http.StatusServiceUnavailable // the app is deploying
		}
		return http.StatusNoContent
	})
	s, _ := withSim(t, "on", fakereplicate.Options{}, map[string]string{
		"TRAINHOOK_NOTIFY_URL": rc.URL + "/api/trainhook", "TRAINHOOK_NOTIFY_SECRET": notifySecret,
		"TRAINHOOK_NOTIFY_EVENTS": "model.training,model.ready,model.failed,model.canceled",
	})
	code, m, msg := s.startTraining(startBody("notified"), nil)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, msg)
	}
	final := s.waitFinal(m.ID)[m.ID]
	if final.Status != training.Ready {
		t.Fatalf("model ended %s", final.Status)
	}
	evs := rc.waitAccepted(t, m.ID, "model.ready", 30*time.Second)

	var version struct{ Version string }
	_ = json.Unmarshal(final.Output, &version)
	if version.Version == "" {
		t.Fatalf("model has no version: %s", final.Output)
	}
	// model.training first (refused once, then accepted with the same id),
	// then model.ready: never ready before training is through.
	if len(evs) != 3 {
		t.Fatalf("%d requests, want 3 (training refused, training, ready): %+v", len(evs), evs)
	}
	train1, train2, ready := evs[0], evs[1], evs[2]
	for i, e := range evs {
		if !e.Verified || e.Model.ID != m.ID || strings.Contains(e.ID, ".") {
			t.Errorf("request %d: %+v", i, e)
		}
	}
	if train1.Type != "model.training" || train2.Type != "model.training" || train1.ID != train2.ID || train1.Sequence < 1 || train2.Sequence != train1.Sequence || train2.Status != 204 {
		t.Errorf("retry of model.training: %+v then %+v; want the same webhook-id and sequence", train1, train2)
	}
	var got struct{ Version string }
	_ = json.Unmarshal(ready.Model.Output, &got)
	if ready.Type != "model.ready" || ready.Sequence <= train1.Sequence || ready.ID == train1.ID || got.Version != version.Version ||
		ready.Model.Status != training.Ready || ready.Model.LogTail != "" {
		t.Errorf("model.ready: %+v; want a sequence above model.training's %d, version %s, no log tail", ready, train1.Sequence, version.Version)
	}

	// The operator's view: both delivered, the first with two attempts.
	r := s.do("GET", "/api/notifications?model="+m.ID, nil, nil)
	var list struct {
		Notifications []struct {
			ID       int64
			EventID  string `json:"event_id"`
			Type     string
			Status   string
			Attempts int
		}
	}
	r.json(t, &list)
	if r.code != 200 || len(list.Notifications) != 2 || list.Notifications[0].Type != "model.ready" ||
		list.Notifications[1].Attempts != 2 || list.Notifications[1].Status != "delivered" || list.Notifications[1].EventID != train1.ID {
		t.Fatalf("GET /api/notifications: %d %s", r.code, r.body)
	}
	trainID := strconv.FormatInt(list.Notifications[1].ID, 10)
	var one service.NotificationDetail
	r = s.do("GET", "/api/notifications/"+trainID, nil, nil)
	r.json(t, &one)
	if r.code != 200 || len(one.AttemptLog) != 2 || one.AttemptLog[0].StatusCode != 503 || one.AttemptLog[1].StatusCode != 204 {
		t.Fatalf("GET /api/notifications/%s: %d %s", trainID, r.code, r.body)
	}
	if r := s.do("GET", "/api/notifications?status=lost", nil, nil); r.code != http.StatusBadRequest || !strings.Contains(r.errorText(), "pending, delivered, failed") {
		t.Errorf("bad status filter: %d %s", r.code, r.body)
	}
	if r := s.do("GET", "/api/notifications/999999", nil, nil); r.code != http.StatusNotFound {
		t.Errorf("unknown notification: %d %s", r.code, r.body)
	}
	// Resend: the app gets the same event (same webhook-id) again.
	r = s.do("POST", "/api/notifications/"+trainID+"/resend", nil, nil)
	if r.code != http.StatusAccepted {
		t.Fatalf("resend: %d %s", r.code, r.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.got()) < 4 {
		if time.Now().After(deadline) {
			t.Fatal("resent notification never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if again := rc.got()[3]; again.ID != train1.ID || !again.Verified {
		t.Errorf("resent: %+v, want webhook-id %s", again, train1.ID)
	}
}

// An event committed while the app cannot take it survives a restart: the
// server stops with the request in flight, starts again on the same
// database, and delivers it with the same webhook-id.
func TestNotificationSurvivesRestart(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	up := make(chan struct{})
	var mu sync.Mutex
	var ids []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice when trainhook hangs up.
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		ids = append(ids, r.Header.Get("webhook-id"))
		mu.Unlock()
		select {
		case <-up: // the app is back
			w.WriteHeader(http.StatusOK)
		default:
			once.Do(func() { close(release) })
			select { // hangs until trainhook gives up on it
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}
	}))
	defer rcv.Close()
	db := apptest.Database(t)
	env := map[string]string{"DATABASE_URL": db, "TRAINHOOK_NOTIFY_URL": rcv.URL, "TRAINHOOK_NOTIFY_SECRET": notifySecret}
	s := start(t, env)
	m := s.register("r7k2m9x4c1rm80cq3ftw6n8e5b")
	if r := s.deliver("msg_restart", payload("r7k2m9x4c1rm80cq3ftw6n8e5b", "succeeded")); r.code != http.StatusOK {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	select {
	case <-release:
	case <-time.After(10 * time.Second):
		t.Fatal("the notification was never sent")
	}
	s.srv.Stop() // with the request in flight
	close(up)
	s2 := start(t, env)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := s2.do("GET", "/api/notifications?model="+m.ID+"&status=delivered", nil, nil)
		var list struct {
			Notifications []struct {
				EventID string `json:"event_id"`
			}
		}
		r.json(t, &list)
		if len(list.Notifications) == 1 {
			mu.Lock()
			defer mu.Unlock()
			if len(ids) < 2 || ids[0] != ids[len(ids)-1] || ids[0] != list.Notifications[0].EventID {
				t.Fatalf("webhook-ids sent %v, want the stored event %s every time", ids, list.Notifications[0].EventID)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered after the restart: %s", r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A model's own notify_url is used when its origin is allowed, and refused
// with 422 otherwise, creating nothing.
func TestPerModelNotifyURL(t *testing.T) {
	rc := newAppReceiver(t, func(int, string) int { return http.StatusOK })
	s := start(t, map[string]string{"TRAINHOOK_NOTIFY_SECRET": notifySecret, "TRAINHOOK_NOTIFY_ALLOWED_ORIGINS": rc.URL})
	h := http.Header{"Content-Type": {"application/json"}}
	for _, u := range []string{"http://127.0.0.2:1/hook", "http://user:pw@" + strings.TrimPrefix(rc.URL, "http://") + "/x", "ftp://127.0.0.1/x"} {
		r := s.do("POST", "/api/models", []byte(`{"training_id":"t-refused","notify_url":`+strconv.Quote(u)+`}`), h)
		if r.code != http.StatusUnprocessableEntity || !strings.Contains(r.errorText(), "TRAINHOOK_NOTIFY_ALLOWED_ORIGINS") {
			t.Errorf("notify_url %s: %d %s, want 422 naming the allowed origins", u, r.code, r.body)
		}
	}
	if r := s.do("GET", "/api/models", nil, nil); strings.Contains(string(r.body), "t-refused") {
		t.Errorf("a refused request created a model: %s", r.body)
	}
	r := s.do("POST", "/api/models", []byte(`{"training_id":"r7k2m9x4c1rm80cq3ftw6n8eab","notify_url":"`+rc.URL+`/own"}`), h)
	if r.code != http.StatusCreated {
		t.Fatalf("register with an allowed notify_url: %d %s", r.code, r.body)
	}
	var m training.Model
	r.json(t, &m)
	if r := s.deliver("msg_own", payload("r7k2m9x4c1rm80cq3ftw6n8eab", "succeeded")); r.code != http.StatusOK {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	evs := rc.waitAccepted(t, m.ID, "model.ready", 15*time.Second)
	if len(evs) != 1 || !evs[0].Verified {
		t.Errorf("own URL got %+v", evs)
	}

	// Without allowed origins, notify_url is refused outright.
	plain := start(t, nil)
	r = plain.do("POST", "/api/models", []byte(`{"training_id":"t2","notify_url":"`+rc.URL+`/own"}`), h)
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(r.errorText(), "not accepted by this server") {
		t.Errorf("without allowed origins: %d %s", r.code, r.body)
	}
}

// A notification URL nothing listens on is named at start-up, and the
// server starts anyway (the app may come up later; events are kept).
func TestUnreachableNotifyURLWarnedAtStart(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL + "/api/trainhook"
	down.Close()
	vars := map[string]string{"DATABASE_URL": apptest.Database(t), "ADDR": "127.0.0.1:0",
		"TRAINHOOK_NOTIFY_URL": url, "TRAINHOOK_NOTIFY_SECRET": notifySecret}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuf
	a, err := app.Start(t.Context(), cfg, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	cancel()
	<-done
	if log := buf.String(); !strings.Contains(log, "TRAINHOOK_NOTIFY_URL cannot be reached now") || !strings.Contains(log, url) ||
		strings.Contains(log, strings.TrimPrefix(notifySecret, "whsec_")) {
		t.Errorf("start-up log:\n%s", log)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A receiver that hangs holds up none of intake: every delivery is
// answered at once while all the sender's request slots wait on it.
func TestHangingReceiverDoesNotSlowIntake(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	defer close(release)
	s := start(t, map[string]string{"TRAINHOOK_NOTIFY_URL": hung.URL, "TRAINHOOK_NOTIFY_SECRET": notifySecret})
	const n = 24 // three times the sender's request slots
	var slowest time.Duration
	for i := range n {
		tid := "hang" + strconv.Itoa(100000+i)
		s.register(tid)
		t0 := time.Now()
		if r := s.deliver("msg_"+tid, payload(tid, "succeeded")); r.code != http.StatusOK {
			t.Fatalf("deliver %d: %d %s", i, r.code, r.body)
		}
		slowest = max(slowest, time.Since(t0))
	}
	if slowest > 2*time.Second {
		t.Errorf("slowest delivery took %s while the receiver hung", slowest)
	}
	r := s.do("GET", "/api/notifications?status=pending&limit=1000", nil, nil)
	var list struct{ Notifications []struct{ ID int64 } }
	r.json(t, &list)
	if len(list.Notifications) != n {
		t.Errorf("%d pending notifications, want %d (one per model, none lost)", len(list.Notifications), n)
	}
}

// Two instances share one database (and its outbox): each event is sent by
// one of them, once, whichever committed it.
func TestInstancesShareTheOutbox(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	// Instances share PostgreSQL; a SQLite file takes one server.
	env := map[string]string{"DATABASE_URL": pgtest.URL(t), "TRAINHOOK_NOTIFY_URL": rcv.URL, "TRAINHOOK_NOTIFY_SECRET": notifySecret}
	a, b := start(t, env), start(t, env)
	const n = 20
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		tid := "shared" + strconv.Itoa(100000+i)
		s.register(tid)
		if r := s.deliver("msg_"+tid, payload(tid, "succeeded")); r.code != http.StatusOK {
			t.Fatalf("deliver %d: %d %s", i, r.code, r.body)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := a.do("GET", "/api/notifications?status=delivered&limit=1000", nil, nil)
		var list struct {
			Notifications []struct {
				EventID string `json:"event_id"`
			}
		}
		r.json(t, &list)
		if len(list.Notifications) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered", len(list.Notifications), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Errorf("%d distinct events arrived, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("event %s sent %d times", id, c)
		}
	}
}
