package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// failingStore stands in for a service whose database is down.
type failingStore struct{ delivered int }

func (f *failingStore) Deliver(context.Context, training.Observation, training.Delivery) (service.Result, error) {
	f.delivered++
	return service.Result{}, errors.New("database is locked")
}
func (f *failingStore) RecordRefused(training.Delivery) bool { return true }

// Our own failure must be a 5xx so that Replicate retries, and the answer
// must not leak the internal error.
func TestStoreFailureIs5xx(t *testing.T) {
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	app := &failingStore{}
	h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: app, MaxBody: 1 << 20, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, metrics.New())
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := []byte(`{"id":"abc","status":"succeeded"}`)
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(string(body)))
	key.SignRequest(req.Header, "msg_1", time.Now(), body)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || app.delivered != 1 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if strings.Contains(string(b), "locked") {
		t.Fatalf("internal error leaked: %s", b)
	}
}

// A doctor probe passes the whole intake but changes nothing.
func TestProbeIsVerifiedNotStored(t *testing.T) {
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	app := &failingStore{}
	h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: app, MaxBody: 1 << 20, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, metrics.New())
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := []byte(`{"id":"trainhook-doctor-abc","status":"succeeded"}`)
	for _, c := range []struct {
		key  replicate.Key
		code int
	}{{key, 200}, {replicate.NewKey([]byte("another key of twenty-four bytes")), 401}} {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(string(body)))
		c.key.SignRequest(req.Header, "msg_probe", time.Now(), body)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || c.code == 200 && !strings.Contains(string(b), `"probe"`) {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	if app.delivered != 0 {
		t.Fatal("a probe reached the service")
	}
}

// recorder keeps what the handler handed to the service.
type recorder struct {
	obs     []training.Observation
	refused []training.Delivery
}

func (r *recorder) Deliver(_ context.Context, obs training.Observation, _ training.Delivery) (service.Result, error) {
	r.obs = append(r.obs, obs)
	return service.Result{Outcome: service.Outcome(training.Move)}, nil
}
func (r *recorder) RecordRefused(d training.Delivery) bool {
	r.refused = append(r.refused, d)
	return true
}

// A refused delivery keeps only the first 4 KiB of its body, and its reason
// says how long the body really was, so forged requests cost little disk.
func TestRefusedBodyAuditIsCapped(t *testing.T) {
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	other := replicate.NewKey([]byte("another key of twenty-four bytes"))
	rec := &recorder{}
	h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: rec, MaxBody: 1 << 20, Log: slog.New(slog.DiscardHandler)}, metrics.New())
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, size := range []int{100 << 10, 4 << 10, 300} {
		rec.refused = nil
		body := []byte(`{"id":"abc","status":"succeeded","logs":"` + strings.Repeat("x", size-len(`{"id":"abc","status":"succeeded","logs":""}`)) + `"}`)
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(string(body)))
		other.SignRequest(req.Header, "msg_forged", time.Now(), body)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || len(rec.refused) != 1 {
			t.Fatalf("%d bytes: got %d %s, %d refusals recorded", size, resp.StatusCode, answer, len(rec.refused))
		}
		d := rec.refused[0]
		note := "[body " + strconv.Itoa(size) + " bytes; the first 4096 kept]"
		if size > 4<<10 {
			if len(d.Payload) != 4<<10 || string(d.Payload) != string(body[:4<<10]) || !strings.HasSuffix(d.Reason, note) {
				t.Errorf("%d bytes: kept %d bytes, reason %q; want the first 4096 and a reason ending %q", size, len(d.Payload), d.Reason, note)
			}
			if strings.Contains(string(answer), "kept]") {
				t.Errorf("the answer carries the audit note: %s", answer)
			}
		} else if string(d.Payload) != string(body) || strings.Contains(d.Reason, "kept]") {
			t.Errorf("%d bytes: kept %d bytes, reason %q; want the whole body and no note", size, len(d.Payload), d.Reason)
		}
	}
}

// A replayed delivery stays bound to the model it was bound to when first
// received, although the replay is not sent to the tokenized URL again.
func TestReplayKeepsModelBinding(t *testing.T) {
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	rec := &recorder{}
	h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: rec, MaxBody: 1 << 20, Log: slog.New(slog.DiscardHandler),
		CheckToken: func(string, string) bool { return false }}, metrics.New())
	body := []byte(`{"id":"abc","status":"succeeded"}`)
	hdr := http.Header{}
	now := time.Now()
	key.SignRequest(hdr, "msg_1", now, body)
	d := training.Delivery{ID: 7, WebhookID: "msg_1", ReceivedAt: now, Timestamp: hdr.Get(replicate.HeaderTimestamp),
		Signature: hdr.Get(replicate.HeaderSignature), Payload: body, ModelID: "01model"}
	if got := h.Replay(context.Background(), d); got.Code != http.StatusOK {
		t.Fatalf("replay: %+v", got)
	}
	if len(rec.obs) != 1 || rec.obs[0].ModelID != "01model" {
		t.Fatalf("replay delivered %+v, want one report bound to model 01model", rec.obs)
	}
}

// The cause of a failed store is for the operator: it is logged, with the
// delivery, though the answer to Replicate does not carry it.
func TestStoreFailureCauseIsLogged(t *testing.T) {
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	var logs syncBuffer
	h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: &failingStore{}, MaxBody: 1 << 20, Log: slog.New(slog.NewTextHandler(&logs, nil))}, metrics.New())
	srv := httptest.NewServer(h)
	body := []byte(`{"id":"abc","status":"succeeded"}`)
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(string(body)))
	key.SignRequest(req.Header, "msg_cause", time.Now(), body)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close() // waits for the handler, which logs after it answers
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if got := logs.String(); !strings.Contains(got, "database is locked") || !strings.Contains(got, "msg_cause") {
		t.Errorf("log does not name the cause and the delivery:\n%s", got)
	}

	logs.Reset()
	signed := http.Header{}
	key.SignRequest(signed, "msg_replayed", time.Now(), body)
	r := h.Replay(context.Background(), training.Delivery{
		ID: 7, WebhookID: "msg_replayed", Payload: body, ReceivedAt: time.Now(),
		Timestamp: signed.Get(replicate.HeaderTimestamp), Signature: signed.Get(replicate.HeaderSignature),
	})
	if r.Code != http.StatusServiceUnavailable {
		t.Fatalf("replay answered %d (%s), want 503", r.Code, r.Error)
	}
	if !strings.Contains(logs.String(), "database is locked") {
		t.Errorf("replay log does not name the cause:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the handler's goroutine and the test's.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}
