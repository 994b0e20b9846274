package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

const testSecret = apptest.Secret

var testKey = apptest.Key

// server is a trainhook started in-process by apptest, with a client whose
// answers TestMain checks against the OpenAPI document.
type server struct {
	t      testing.TB
	url    string
	app    *app.App
	srv    *apptest.Server
	client *http.Client
	token  string
}

// start starts a server configured by env over apptest's defaults.
func start(t testing.TB, env map[string]string) *server {
	t.Helper()
	return startOn(t, nil, env)
}

// startOn is start on ln (nil: a new loopback listener).
func startOn(t testing.TB, ln net.Listener, env map[string]string) *server {
	t.Helper()
	srv := apptest.Start(t, apptest.Options{Listener: ln, Env: env})
	return &server{t: t, url: srv.URL, app: srv.App, srv: srv, token: env["TRAINHOOK_API_TOKEN"],
		client: &http.Client{Timeout: 10 * time.Second, Transport: app.TestTransport}}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) errorText() string {
	var e struct{ Error string }
	_ = json.Unmarshal(r.body, &e)
	return e.Error
}

func (s *server) do(method, path string, body []byte, h http.Header) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if s.token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (s *server) register(trainingID string) training.Model {
	s.t.Helper()
	r := s.do("POST", "/api/models", []byte(fmt.Sprintf(`{"name":"portrait %s","training_id":%q,"metadata":{"user":"u1"}}`, trainingID, trainingID)), http.Header{"Content-Type": {"application/json"}})
	if r.code != http.StatusCreated {
		s.t.Fatalf("register: %d %s", r.code, r.body)
	}
	var m training.Model
	r.json(s.t, &m)
	return m
}

type detail struct {
	training.Model
	History []training.HistoryEntry `json:"history"`
}

func (s *server) model(id string) detail {
	s.t.Helper()
	r := s.do("GET", "/api/models/"+id, nil, nil)
	if r.code != http.StatusOK {
		s.t.Fatalf("get model: %d %s", r.code, r.body)
	}
	var d detail
	r.json(s.t, &d)
	return d
}

// payload is a training object as Replicate sends it.
func payload(id, status string) []byte {
	t := map[string]any{
		"id": id, "model": "ostris/flux-dev-lora-trainer", "version": "e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497",
		"input": map[string]any{"steps": 1000}, "status": status, "source": "api", "data_removed": false,
		"created_at": "2025-03-04T10:15:02.118Z", "started_at": "2025-03-04T10:15:09.902431Z",
		"logs": "Loading\n 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]\n", "error": nil, "output": nil,
	}
	switch status {
	case "succeeded":
		t["logs"] = t["logs"].(string) + "100%|##########| 1000/1000\nSaving weights\n"
		t["output"] = map[string]string{"version": "acme/portrait:81592a3e9edf0b50fd80f19c04f5a318b8b9244745ee95294822bc8a5ff27ed1", "weights": "https://replicate.delivery/xezq/abc/trained_model.tar"}
		t["completed_at"] = "2025-03-04T10:36:47.551207Z"
	case "failed":
		t["error"] = "input_images must be provided"
		t["completed_at"] = "2025-03-04T10:36:47.551207Z"
	case "canceled":
		t["completed_at"] = "2025-03-04T10:36:47.551207Z"
	}
	b, _ := json.Marshal(t)
	return b
}

func signed(key replicate.Key, webhookID string, at time.Time, body []byte) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	key.SignRequest(h, webhookID, at, body)
	return h
}

func (s *server) deliver(webhookID string, body []byte) response {
	s.t.Helper()
	return s.do("POST", "/api/webhooks/replicate/completed", body, signed(testKey, webhookID, time.Now(), body))
}

func TestSucceededDeliveryMakesModelReady(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	m := s.register("r7k2m9x4c1rm80cq3ftw6n8e5a")
	if m.Status != training.Pending {
		t.Fatalf("new model is %s", m.Status)
	}
	r := s.deliver("msg_1", payload("r7k2m9x4c1rm80cq3ftw6n8e5a", "succeeded"))
	if r.code != http.StatusOK {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	d := s.model(m.ID)
	if d.Status != training.Ready || !strings.Contains(string(d.Output), "trained_model.tar") || d.Progress.Percent != 100 {
		t.Fatalf("model after succeeded: %+v", d.Model)
	}
	last := d.History[len(d.History)-1]
	if last.From != training.Pending || last.To != training.Ready || last.Source != training.SourceWebhook || last.SourceRef != "msg_1" {
		t.Fatalf("history %+v", d.History)
	}
}

func TestFailedAndCanceled(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	a, b := s.register("train-failed"), s.register("train-canceled")
	s.deliver("msg_p1", payload("train-failed", "processing"))
	if got := s.model(a.ID); got.Status != training.Training || got.Progress.Step != 400 {
		t.Fatalf("processing: %+v", got.Model)
	}
	s.deliver("msg_f", payload("train-failed", "failed"))
	s.deliver("msg_c", payload("train-canceled", "canceled"))
	if got := s.model(a.ID); got.Status != training.Failed || got.Error != "input_images must be provided" {
		t.Fatalf("failed: %+v", got.Model)
	}
	if got := s.model(b.ID); got.Status != training.Canceled {
		t.Fatalf("canceled: %+v", got.Model)
	}
}

func TestRefusedDeliveriesChangeNothing(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"TRAINHOOK_MAX_BODY": "64KiB"})
	m := s.register("train-x")
	body := payload("train-x", "succeeded")
	other, _ := replicate.ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	now := time.Now()
	hook := "/api/webhooks/replicate/completed"

	cases := []struct {
		name   string
		method string
		h      http.Header
		body   []byte
		code   int
		errHas string
	}{
		{"forged", "POST", signed(other, "msg_forged", now, body), body, 401, "no valid signature"},
		{"expired (replay of a captured request)", "POST", signed(testKey, "msg_old", now.Add(-6*time.Minute), body), body, 401, "more than 5 minutes old"},
		{"from the future", "POST", signed(testKey, "msg_new", now.Add(6*time.Minute), body), body, 401, "in the future"},
		{"unsigned", "POST", http.Header{"Content-Type": {"application/json"}}, body, 401, "missing webhook-id"},
		{"tampered body", "POST", signed(testKey, "msg_t", now, body), bytes.Replace(body, []byte("succeeded"), []byte("failed\u0020\u0020"), 1), 401, "no valid signature"},
		{"malformed JSON, signed", "POST", signed(testKey, "msg_m", now, []byte(`{"id":`)), []byte(`{"id":`), 400, "payload"},
		{"no status, signed", "POST", signed(testKey, "msg_n", now, []byte(`{"id":"train-x"}`)), []byte(`{"id":"train-x"}`), 400, `missing "status"`},
		{"too large", "POST", signed(testKey, "msg_big", now, bytes.Repeat([]byte("x"), 65<<10)), bytes.Repeat([]byte("x"), 65<<10), 413, "TRAINHOOK_MAX_BODY"},
		{"wrong content type", "POST", func() http.Header {
			h := signed(testKey, "msg_ct", now, body)
			h.Set("Content-Type", "text/plain")
			return h
		}(), body, 415, "application/json"},
		{"GET", "GET", nil, nil, 405, "use POST"},
		{"browser preflight", "OPTIONS", http.Header{"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"POST"}}, nil, 405, "no CORS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(c.method, hook, c.body, c.h)
			if r.code != c.code || !strings.Contains(r.errorText(), c.errHas) {
				t.Fatalf("got %d %s, want %d containing %q", r.code, r.body, c.code, c.errHas)
			}
			if r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatal("webhook route sent CORS headers")
			}
			if got := s.model(m.ID); got.Status != training.Pending || !got.UpdatedAt.Equal(m.UpdatedAt) || len(got.History) != 1 {
				t.Fatalf("model changed: %+v", got.Model)
			}
		})
	}
}

func TestNoSigningKeyRefusesEverything(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"REPLICATE_WEBHOOK_SECRET": ""})
	m := s.register("train-nokey")
	r := s.deliver("msg_1", payload("train-nokey", "succeeded"))
	if r.code != 401 || r.errorText() != "webhook signature: no signing key configured" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if s.model(m.ID).Status != training.Pending {
		t.Fatal("model changed without a key")
	}
}

func TestDuplicatesAndOutOfOrder(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	m := s.register("train-dup")
	done := payload("train-dup", "succeeded")
	for i := 0; i < 3; i++ { // Replicate retries the same message
		if r := s.deliver("msg_done", done); r.code != 200 {
			t.Fatalf("attempt %d: %d %s", i, r.code, r.body)
		}
	}
	// A late "processing" and a replay of the same message never move it back.
	if r := s.deliver("msg_late", payload("train-dup", "processing")); r.code != 200 {
		t.Fatalf("late: %d", r.code)
	}
	d := s.model(m.ID)
	if d.Status != training.Ready || len(d.History) != 2 {
		t.Fatalf("after duplicates: %s, %d history rows: %+v", d.Status, len(d.History), d.History)
	}
	// A different final outcome afterwards is flagged, recorded, not applied.
	if r := s.deliver("msg_conflict", payload("train-dup", "failed")); r.code != 200 {
		t.Fatalf("conflict: %d", r.code)
	}
	d = s.model(m.ID)
	last := d.History[len(d.History)-1]
	if d.Status != training.Ready || !d.Flagged || last.Decision != training.Conflict || d.Error != "" {
		t.Fatalf("conflict applied: %+v %+v", d.Model, last)
	}
}

func TestEarlyDeliveryIsHeldUntilRegistration(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	r := s.deliver("msg_early1", payload("train-early", "processing"))
	var a struct{ Outcome string }
	r.json(t, &a)
	if r.code != 200 || a.Outcome != "held" {
		t.Fatalf("early: %d %s", r.code, r.body)
	}
	s.deliver("msg_early2", payload("train-early", "succeeded"))
	m := s.register("train-early")
	d := s.model(m.ID)
	if d.Status != training.Ready || !strings.Contains(string(d.Output), "trained_model.tar") {
		t.Fatalf("held deliveries not applied on registration: %+v", d.Model)
	}
	if len(d.History) != 3 || d.History[2].SourceRef != "msg_early2" {
		t.Fatalf("history %+v", d.History)
	}
}

func TestConcurrentDeliveriesAllApplied(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.register(fmt.Sprintf("train-conc-%03d", i)).ID
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := payload(fmt.Sprintf("train-conc-%03d", i), "succeeded")
			// Each delivery twice, at once: the duplicate must not apply twice.
			for j := 0; j < 2; j++ {
				if r := s.deliver(fmt.Sprintf("msg_conc_%d", i), body); r.code != 200 {
					errs <- fmt.Sprintf("%d: %d %s", i, r.code, r.body)
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, id := range ids {
		if d := s.model(id); d.Status != training.Ready || len(d.History) != 2 {
			t.Fatalf("model %s: %s with %d history rows", id, d.Status, len(d.History))
		}
	}
}

func TestTrailingSlashAndQueryServed(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	m := s.register("train-slash")
	body := payload("train-slash", "succeeded")
	r := s.do("POST", "/api/webhooks/replicate/completed/?job=42", body, signed(testKey, "msg_s", time.Now(), body))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if s.model(m.ID).Status != training.Ready {
		t.Fatal("not applied")
	}
}

func TestManagementAPI(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"TRAINHOOK_API_TOKEN": "s3cret-token-for-tests-0123456789abc", "CORS_ALLOWED_ORIGINS": "https://app.example.com"})
	for i := 0; i < 5; i++ {
		s.register(fmt.Sprintf("train-list-%d", i))
	}
	s.deliver("msg_l", payload("train-list-2", "succeeded"))

	t.Run("token required", func(t *testing.T) {
		for _, auth := range []string{"", "Bearer wrong", "Basic abc"} {
			h := http.Header{}
			if auth != "" {
				h.Set("Authorization", auth)
			} else {
				h.Set("Authorization", " ")
			}
			r := s.do("GET", "/api/models", nil, h)
			if r.code != 401 || !strings.Contains(r.errorText(), "TRAINHOOK_API_TOKEN") || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%q: %d %s", auth, r.code, r.body)
			}
		}
	})
	t.Run("pagination newest first", func(t *testing.T) {
		var seen []string
		cursor := ""
		for page := 0; page < 10; page++ {
			r := s.do("GET", "/api/models?limit=2&cursor="+cursor, nil, nil)
			var p struct {
				Models     []training.Model
				NextCursor string `json:"next_cursor"`
			}
			r.json(t, &p)
			for _, m := range p.Models {
				seen = append(seen, m.TrainingID)
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		want := "train-list-4 train-list-3 train-list-2 train-list-1 train-list-0"
		if strings.Join(seen, " ") != want {
			t.Fatalf("pages: %v", seen)
		}
	})
	t.Run("status filter", func(t *testing.T) {
		var p struct{ Models []training.Model }
		s.do("GET", "/api/models?status=ready", nil, nil).json(t, &p)
		if len(p.Models) != 1 || p.Models[0].TrainingID != "train-list-2" {
			t.Fatalf("%+v", p.Models)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			method, path, body string
			code               int
			errHas             string
		}{
			{"GET", "/api/models?status=done", "", 400, "unknown status"},
			{"GET", "/api/models?limit=100000", "", 400, "from 1 to 1000"},
			{"GET", "/api/models?limit=-1", "", 400, "from 1 to 1000"},
			{"GET", "/api/models?limit=0", "", 400, "from 1 to 1000, got \"0\""},
			{"GET", "/api/models?cursor=nope", "", 400, "cursor"},
			{"GET", "/api/models/does-not-exist", "", 404, "no model"},
			{"POST", "/api/models", `{"name":"x"`, 400, "invalid JSON"},
			{"POST", "/api/models", `{"name":"x","training_id":"a b"}`, 400, "training_id"},
			{"POST", "/api/models", `{"name":"x","trainingid":"abc"}`, 400, "unknown field"},
			{"POST", "/api/models", `{"training_id":"ok1","metadata":[1]}`, 400, "metadata"},
			{"POST", "/api/models", `{"training_id":"ok2","metadata":{"x":"` + strings.Repeat("a", 70000) + `"}}`, 400, "64 KiB"},
			{"POST", "/api/models", `{"training_id":"train-list-1"}`, 409, "already tracked"},
			{"POST", "/api/models", `{"training_id":"x'; DROP TABLE models; --"}`, 400, "training_id"},
			{"DELETE", "/api/models", "", 405, "not allowed"},
			{"GET", "/api/nothing", "", 404, "no such API endpoint"},
		} {
			r := s.do(c.method, c.path, []byte(c.body), http.Header{"Content-Type": {"application/json"}})
			if r.code != c.code || !strings.Contains(r.errorText(), c.errHas) {
				t.Errorf("%s %s %.40s: got %d %s, want %d %q", c.method, c.path, c.body, r.code, r.body, c.code, c.errHas)
			}
		}
		var p struct{ Models []training.Model }
		s.do("GET", "/api/models?limit=1000", nil, nil).json(t, &p)
		if len(p.Models) != 5 {
			t.Fatalf("bad input changed the models: %d", len(p.Models))
		}
	})
	t.Run("idempotency key", func(t *testing.T) {
		h := http.Header{"Idempotency-Key": {"key-1"}, "Content-Type": {"application/json"}}
		a := s.do("POST", "/api/models", []byte(`{"training_id":"train-idem"}`), h)
		b := s.do("POST", "/api/models", []byte(`{"training_id":"train-idem"}`), h)
		var ma, mb training.Model
		a.json(t, &ma)
		b.json(t, &mb)
		if a.code != 201 || b.code != 200 || ma.ID != mb.ID || b.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%d %d %s %s", a.code, b.code, ma.ID, mb.ID)
		}
	})
	t.Run("CORS", func(t *testing.T) {
		pre := http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"POST"}}
		r := s.do("OPTIONS", "/api/models", nil, pre)
		if r.code != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Fatalf("allowed preflight: %d %v", r.code, r.header)
		}
		pre.Set("Origin", "https://evil.example")
		r = s.do("OPTIONS", "/api/models", nil, pre)
		if r.code != 403 || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("other origin: %d %v", r.code, r.header)
		}
		// The dashboard's JSON API is management API too.
		for _, path := range []string{"/api/deliveries", "/api/deliveries/1", "/api/events"} {
			pre := http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"GET"}}
			if r := s.do("OPTIONS", path, nil, pre); r.code != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
				t.Errorf("allowed preflight of %s: %d %v", path, r.code, r.header)
			}
			pre.Set("Origin", "https://evil.example")
			if r := s.do("OPTIONS", path, nil, pre); r.code != 403 || r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("preflight of %s from another origin: %d %v", path, r.code, r.header)
			}
		}
		get := http.Header{"Origin": {"https://app.example.com"}}
		if r := s.do("GET", "/api/deliveries", nil, get); r.code != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Errorf("GET /api/deliveries from an allowed origin: %d %v", r.code, r.header)
		}
		get.Set("Origin", "https://evil.example")
		if r := s.do("GET", "/api/deliveries", nil, get); r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET /api/deliveries from another origin got CORS headers: %v", r.header)
		}
		// A POST from an allowed origin passes cross-origin protection (then
		// the delivery is unknown); from another origin it is refused.
		post := http.Header{"Origin": {"https://app.example.com"}, "Sec-Fetch-Site": {"cross-site"}}
		if r := s.do("POST", "/api/deliveries/999999/replay", nil, post); r.code != 404 {
			t.Errorf("replay POST from an allowed origin: %d %s, want 404 (no such delivery)", r.code, r.body)
		}
		post.Set("Origin", "https://evil.example")
		if r := s.do("POST", "/api/deliveries/999999/replay", nil, post); r.code != 403 {
			t.Errorf("replay POST from another origin: %d %s, want 403", r.code, r.body)
		}
	})
	t.Run("security headers", func(t *testing.T) {
		r := s.do("GET", "/healthz", nil, nil)
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if r.header.Get(k) != v {
				t.Errorf("%s = %q", k, r.header.Get(k))
			}
		}
		if !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Error("no strict CSP")
		}
	})
}

func TestOperations(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	s.register("train-ops")
	s.deliver("msg_ops", payload("train-ops", "succeeded"))
	s.deliver("msg_ops", payload("train-ops", "succeeded"))
	s.do("POST", "/api/webhooks/replicate/completed", []byte("{}"), nil)
	if r := s.do("GET", "/healthz", nil, nil); r.code != 200 {
		t.Fatal("healthz")
	}
	if r := s.do("GET", "/readyz", nil, nil); r.code != 200 {
		t.Fatal("readyz")
	}
	r := s.do("GET", "/metrics", nil, nil)
	for _, want := range []string{
		`trainhook_reports_total{source="webhook",outcome="applied"} 1`,
		`trainhook_reports_total{source="webhook",outcome="duplicate"} 1`,
		`trainhook_webhook_refusals_total{reason="headers"} 1`,
		`trainhook_transitions_total{from="Pending",to="Ready",source="webhook"} 1`,
		`trainhook_webhook_intake_seconds_count 3`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
