package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

const testSecret = apptest.Secret

var testKey = apptest.Key

// server is a whole trainhook started in-process by apptest, as serve
// starts it: real SQLite file, real loopback listener, the dashboard
// mounted by app.
type server struct {
	t      *testing.T
	url    string
	app    *app.App
	srv    *apptest.Server
	client *http.Client // keeps cookies, does not follow redirects
}

// shutdown stops the server now rather than at the test's end.
func (s *server) shutdown() { s.srv.Stop() }

// start starts a server configured by env over apptest's defaults.
func start(t *testing.T, env map[string]string) *server {
	t.Helper()
	srv := apptest.Start(t, apptest.Options{Env: env})
	return &server{t: t, url: srv.URL, app: srv.App, srv: srv, client: newClient()}
}

func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
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

func itoa(n int64) string { return fmt.Sprint(n) }
