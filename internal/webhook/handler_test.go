package webhook

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
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
