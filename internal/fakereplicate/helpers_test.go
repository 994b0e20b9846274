package fakereplicate_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
)

const (
	token   = "r8_test"
	trainer = "/v1/models/ostris/flux-dev-lora-trainer/versions/" + fakereplicate.FluxTrainerVersion + "/trainings"
)

var t0 = time.Date(2025, 3, 4, 10, 15, 2, 118_000_000, time.UTC)

type sim struct {
	*fakereplicate.Server
	base  string
	clock *fakereplicate.ManualClock
}

// newSim starts a simulator on loopback with a manual clock.
func newSim(t *testing.T, o fakereplicate.Options) *sim {
	t.Helper()
	clock := fakereplicate.NewManualClock(t0)
	if o.Clock == nil {
		o.Clock = clock
	}
	if o.Token == "" {
		o.Token = token
	}
	if o.Seed == 0 {
		o.Seed = 42
	}
	srv, err := fakereplicate.New(o)
	if err != nil {
		t.Fatal(err)
	}
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &sim{Server: srv, base: base, clock: clock}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// call makes one API request with the test token.
func (s *sim) call(t *testing.T, method, path string, body any) response {
	t.Helper()
	return s.callAs(t, token, method, path, body)
}

func (s *sim) callAs(t *testing.T, tok, method, path string, body any) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	url := path
	if strings.HasPrefix(path, "/") {
		url = s.base + path
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: data}
}

func (s *sim) mustCreateModel(t *testing.T, name string) {
	t.Helper()
	r := s.call(t, "POST", "/v1/models", map[string]any{"owner": s.Username(), "name": name, "visibility": "private", "hardware": "cpu"})
	if r.code != http.StatusCreated {
		t.Fatalf("create model: %d %s", r.code, r.body)
	}
}

// mustCreateTraining creates a training into dest and returns its create response.
func (s *sim) mustCreateTraining(t *testing.T, dest string, extra map[string]any) map[string]any {
	t.Helper()
	body := map[string]any{"destination": dest, "input": map[string]any{"input_images": "https://example.com/data.zip", "steps": 1000}}
	for k, v := range extra {
		body[k] = v
	}
	r := s.call(t, "POST", trainer, body)
	if r.code != http.StatusCreated {
		t.Fatalf("create training: %d %s", r.code, r.body)
	}
	return r.json(t)
}

// receiver is a webhook endpoint on loopback that records what it gets.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int) int // status for the n-th request (1-based)
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{header: r.Header.Clone(), body: body})
		n := len(rc.got)
		rc.mu.Unlock()
		code := http.StatusOK
		if rc.answer != nil {
			code = rc.answer(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// waitFor polls cond until it holds; it fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
