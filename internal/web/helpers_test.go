package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

var testKey, _ = replicate.ParseKey(testSecret)

// server is a whole trainhook started in-process, as serve starts it: real
// SQLite file, real loopback listener, the dashboard mounted by app.
type server struct {
	t      *testing.T
	url    string
	app    *app.App
	stop   context.CancelFunc
	done   chan error
	client *http.Client // keeps cookies, does not follow redirects
}

func start(t *testing.T, env map[string]string) *server {
	t.Helper()
	vars := map[string]string{
		"DATABASE_URL":             filepath.Join(t.TempDir(), "trainhook.db"),
		"ADDR":                     "127.0.0.1:0",
		"REPLICATE_WEBHOOK_SECRET": testSecret,
		"TRAINHOOK_LOG_FORMAT":     "text",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &server{t: t, url: a.URL, app: a, stop: cancel, done: make(chan error, 1), client: newClient()}
	go func() { s.done <- a.Run(ctx) }()
	t.Cleanup(s.shutdown)
	return s
}

func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (s *server) shutdown() {
	if s.stop == nil {
		return
	}
	s.stop()
	s.stop = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		s.t.Error("server did not stop within 30s")
	}
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (r response) has(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(r.body, w) {
			t.Errorf("response (%d) lacks %q", r.code, w)
		}
	}
	if t.Failed() {
		t.Logf("body:\n%s", r.body)
	}
}

func (r response) hasNot(t *testing.T, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(r.body, w) {
			t.Errorf("response (%d) has %q", r.code, w)
		}
	}
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (s *server) do(c *http.Client, method, path string, body io.Reader, h http.Header) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (s *server) get(path string) response {
	s.t.Helper()
	return s.do(s.client, "GET", path, nil, nil)
}

// post sends a form as a same-origin browser would.
func (s *server) post(path string, form url.Values) response {
	s.t.Helper()
	return s.do(s.client, "POST", path, strings.NewReader(form.Encode()), http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {s.url}, "Sec-Fetch-Site": {"same-origin"},
	})
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf loads a page and returns the CSRF token of its forms.
func (s *server) csrf(path string) string {
	s.t.Helper()
	r := s.get(path)
	m := csrfPattern.FindStringSubmatch(r.body)
	if m == nil {
		s.t.Fatalf("no CSRF token on %s (%d):\n%s", path, r.code, r.body)
	}
	return m[1]
}

func (s *server) register(name, trainingID string) training.Model {
	s.t.Helper()
	m, _, err := s.app.Service.Register(context.Background(), service.RegisterRequest{Name: name, TrainingID: trainingID, Metadata: json.RawMessage(`{"user":"u1"}`)})
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// deliver posts a webhook signed with key, as Replicate would.
func (s *server) deliver(key replicate.Key, webhookID string, body []byte) response {
	s.t.Helper()
	h := http.Header{"Content-Type": {"application/json"}}
	key.SignRequest(h, webhookID, time.Now(), body)
	return s.do(http.DefaultClient, "POST", "/api/webhooks/replicate/completed", bytes.NewReader(body), h)
}

// payload is a training object as Replicate sends it.
func payload(id, status string) []byte {
	t := map[string]any{
		"id": id, "model": "ostris/flux-dev-lora-trainer", "version": "e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497",
		"input": map[string]any{"steps": 1000}, "status": status, "created_at": "2025-03-04T10:15:02.118Z",
		"started_at": "2025-03-04T10:15:09.902431Z", "logs": "Loading\n 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]\n",
		"error": nil, "output": nil,
	}
	switch status {
	case "succeeded":
		t["logs"] = t["logs"].(string) + "100%|##########| 1000/1000\nSaving weights\n"
		t["output"] = map[string]string{"version": "acme/portrait:81592a3e9edf0b50fd80f19c04f5a318b8b9244745ee95294822bc8a5ff27ed1", "weights": "https://replicate.delivery/xezq/abc/trained_model.tar"}
		t["completed_at"] = "2025-03-04T10:36:47.551207Z"
	case "failed":
		t["error"] = "CUDA out of memory. Tried to allocate 2.00 GiB <script>alert(1)</script>"
		t["completed_at"] = "2025-03-04T10:36:47.551207Z"
	case "canceled":
		t["completed_at"] = "2025-03-04T10:36:47.551207Z"
	}
	b, _ := json.Marshal(t)
	return b
}

// eventually retries cond for up to 5 s; for what is written asynchronously
// (refused deliveries are recorded without waiting).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itoa(n int64) string { return fmt.Sprint(n) }
