package fakereplicate_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

var idRe = regexp.MustCompile(`^[a-z0-9]{26}$`)

func fractionDigits(t *testing.T, ts any) int {
	t.Helper()
	s, ok := ts.(string)
	if !ok {
		t.Fatalf("timestamp %v is not a string", ts)
	}
	dot, z := strings.IndexByte(s, '.'), strings.IndexByte(s, 'Z')
	if dot < 0 || z < dot {
		t.Fatalf("timestamp %q has no fraction", s)
	}
	return z - dot - 1
}

func TestLifecycle(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 100 * time.Second})
	s.mustCreateModel(t, "portrait")
	created := s.mustCreateTraining(t, "trainhook-sim/portrait", nil)

	id := created["id"].(string)
	if !idRe.MatchString(id) {
		t.Errorf("id %q is not 26 lowercase alphanumerics", id)
	}
	if created["status"] != "starting" || created["logs"] != "" {
		t.Errorf("create: status %v logs %q, want starting and empty logs", created["status"], created["logs"])
	}
	for _, absent := range []string{"destination", "started_at", "completed_at", "metrics"} {
		if _, ok := created[absent]; ok {
			t.Errorf("create response has %q; Replicate's has not", absent)
		}
	}
	if d := fractionDigits(t, created["created_at"]); d != 9 {
		t.Errorf("create created_at has %d fractional digits, want 9", d)
	}
	urls := created["urls"].(map[string]any)
	if urls["get"] != s.base+"/v1/predictions/"+id || urls["web"] != "https://replicate.com/p/"+id {
		t.Errorf("create urls = %v", urls)
	}
	if in := created["input"].(map[string]any); in["input_images"] != "https://example.com/data.zip" {
		t.Errorf("input not echoed: %v", in)
	}

	get := func() (replicate.Training, map[string]any) {
		t.Helper()
		r := s.call(t, "GET", "/v1/trainings/"+id, nil)
		if r.code != http.StatusOK {
			t.Fatalf("get: %d %s", r.code, r.body)
		}
		tr, err := replicate.ParseTraining(r.body)
		if err != nil {
			t.Fatal(err)
		}
		return tr, r.json(t)
	}

	// Queued for 5-15% of the run.
	s.clock.Advance(4 * time.Second)
	if tr, raw := get(); tr.Status != "starting" || raw["started_at"] != nil || raw["completed_at"] != nil {
		t.Fatalf("at 4s: status %s started_at %v", tr.Status, raw["started_at"])
	}
	s.clock.Advance(12 * time.Second)
	tr, raw := get()
	if tr.Status != "processing" || tr.StartedAt == nil || tr.CompletedAt != nil {
		t.Fatalf("at 16s: status %s started %v completed %v", tr.Status, tr.StartedAt, tr.CompletedAt)
	}
	if d := fractionDigits(t, raw["created_at"]); d != 6 {
		t.Errorf("GET created_at has %d fractional digits, want 6", d)
	}
	if raw["urls"].(map[string]any)["get"] != s.base+"/v1/trainings/"+id {
		t.Errorf("GET urls = %v", raw["urls"])
	}
	if !strings.HasPrefix(tr.Logs, "Downloading input_images from https://example.com/data.zip\n") {
		t.Errorf("logs start %q", tr.Logs[:min(len(tr.Logs), 80)])
	}

	s.clock.Advance(34 * time.Second) // 50 s: mid-training
	mid, _ := get()
	p, ok := training.ParseProgress(mid.Logs)
	if !ok || p.Percent <= 10 || p.Percent >= 90 || p.Total != 1000 || p.Step != p.Total*int(p.Percent)/100 {
		t.Errorf("progress at 50s = %+v ok=%v; logs end %q", p, ok, mid.Logs[max(0, len(mid.Logs)-200):])
	}
	if !strings.HasPrefix(mid.Logs, tr.Logs) || len(mid.Logs) <= len(tr.Logs) {
		t.Error("logs did not grow as an extension of the earlier logs")
	}

	s.clock.Advance(50 * time.Second) // 100 s: done
	done, raw := get()
	if done.Status != "succeeded" || done.CompletedAt == nil || done.ErrorText() != "" {
		t.Fatalf("at 100s: status %s completed %v error %q", done.Status, done.CompletedAt, done.ErrorText())
	}
	if p, _ := training.ParseProgress(done.Logs); p.Percent != 100 {
		t.Errorf("final progress %v, want 100", p.Percent)
	}
	m := done.Metrics
	wantPredict := done.CompletedAt.Sub(*done.StartedAt).Seconds()
	wantTotal := done.CompletedAt.Sub(*done.CreatedAt).Seconds()
	if m == nil || m.PredictTime == nil || m.TotalTime == nil || abs(*m.PredictTime-wantPredict) > 1e-5 || abs(*m.TotalTime-wantTotal) > 1e-5 || abs(*m.TotalTime-100) > 1e-5 {
		t.Errorf("metrics %+v, want predict %.6f total %.6f", m, wantPredict, wantTotal)
	}
	out := raw["output"].(map[string]any)
	if v, _ := out["version"].(string); !regexp.MustCompile(`^trainhook-sim/portrait:[0-9a-f]{64}$`).MatchString(v) {
		t.Errorf("output.version = %q", v)
	}
	if w, _ := out["weights"].(string); !strings.HasPrefix(w, "https://replicate.delivery/") || !strings.HasSuffix(w, "/trained_model.tar") {
		t.Errorf("output.weights = %q", w)
	}
	if _, ok := raw["destination"]; ok {
		t.Error("GET response has a destination field")
	}

	// The destination model now has the new version as its latest.
	mr := s.call(t, "GET", "/v1/models/trainhook-sim/portrait", nil).json(t)
	lv, _ := mr["latest_version"].(map[string]any)
	if lv == nil || "trainhook-sim/portrait:"+lv["id"].(string) != out["version"] {
		t.Errorf("destination latest_version = %v, want the trained version %v", lv, out["version"])
	}
	// A training id also answers on /v1/predictions.
	if r := s.call(t, "GET", "/v1/predictions/"+id, nil); r.code != 200 || r.json(t)["status"] != "succeeded" {
		t.Errorf("GET /v1/predictions/{training id}: %d %s", r.code, r.body)
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestFailedAndAbortedOutcomes(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 10 * time.Second, Faults: fakereplicate.Faults{FailRate: 1}})
	s.mustCreateModel(t, "d")
	var ids []string
	for range 6 {
		ids = append(ids, s.mustCreateTraining(t, "trainhook-sim/d", nil)["id"].(string))
	}
	s.clock.Advance(10 * time.Second)
	for _, id := range ids {
		tr, err := replicate.ParseTraining(s.call(t, "GET", "/v1/trainings/"+id, nil).body)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Status != "failed" || tr.ErrorText() == "" || len(tr.Output) != 0 || tr.CompletedAt == nil || tr.StartedAt == nil {
			t.Errorf("%s: status %s error %q output %s", id, tr.Status, tr.ErrorText(), tr.Output)
		}
		if !strings.Contains(tr.Logs, tr.ErrorText()) && !strings.Contains(tr.Logs, "Failed to create trained image") {
			t.Errorf("%s: logs do not mention the error %q:\n%s", id, tr.ErrorText(), tr.Logs)
		}
		if tr.CompletedAt.After(t0.Add(10 * time.Second)) {
			t.Errorf("%s: completed after the run would have ended", id)
		}
	}

	if err := s.SetFaults(fakereplicate.Faults{AbortRate: 1}); err != nil {
		t.Fatal(err)
	}
	id := s.mustCreateTraining(t, "trainhook-sim/d", map[string]any{"webhook": "http://127.0.0.1:1/x", "webhook_events_filter": []string{"start"}})["id"].(string)
	s.clock.Advance(10 * time.Second)
	raw := s.call(t, "GET", "/v1/trainings/"+id, nil).json(t)
	if raw["status"] != "aborted" || raw["started_at"] != nil || raw["completed_at"] == nil {
		t.Errorf("aborted training: %v", raw)
	}
	if m := raw["metrics"].(map[string]any); m["predict_time"] != nil || m["total_time"] == nil {
		t.Errorf("aborted metrics = %v, want total_time only", m)
	}
	if got := raw["webhook_events_filter"].([]any); len(got) != 1 || got[0] != "start" {
		t.Errorf("webhook_events_filter echoed as %v", got)
	}
}

func TestCancel(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: 100 * time.Second})
	s.mustCreateModel(t, "d")
	queued := s.mustCreateTraining(t, "trainhook-sim/d", nil)["id"].(string)
	running := s.mustCreateTraining(t, "trainhook-sim/d", nil)["id"].(string)

	r := s.call(t, "POST", "/v1/trainings/"+queued+"/cancel", nil)
	tr, err := replicate.ParseTraining(r.body)
	if r.code != 200 || err != nil || tr.Status != "canceled" || tr.StartedAt == nil || tr.CompletedAt == nil {
		t.Fatalf("cancel queued: %d %s", r.code, r.body)
	}
	if pt := *tr.Metrics.PredictTime; pt <= 0 || pt > 1e-5 {
		t.Errorf("canceled while queued: predict_time %v, want a few microseconds", pt)
	}

	s.clock.Advance(50 * time.Second)
	r = s.call(t, "POST", "/v1/trainings/"+running+"/cancel", nil)
	tr, _ = replicate.ParseTraining(r.body)
	if tr.Status != "canceled" || !strings.Contains(tr.Logs, "%|") || len(tr.Output) != 0 {
		t.Errorf("cancel running: %s", r.body)
	}
	// Later, nothing changes: not even the scheduled success.
	s.clock.Advance(60 * time.Second)
	again := s.call(t, "POST", "/v1/trainings/"+running+"/cancel", nil)
	if again.code != 200 || string(again.body) != string(s.call(t, "GET", "/v1/trainings/"+running, nil).body) {
		t.Errorf("cancel of a finished training: %d %s", again.code, again.body)
	}
	if st := again.json(t)["status"]; st != "canceled" {
		t.Errorf("status after its scheduled end = %v, want canceled", st)
	}
	if r := s.call(t, "POST", "/v1/trainings/nosuchtrainingid0000000000/cancel", nil); r.code != 404 {
		t.Errorf("cancel unknown: %d", r.code)
	}
}

func TestErrorBodies(t *testing.T) {
	s := newSim(t, fakereplicate.Options{})
	s.mustCreateModel(t, "taken")
	problemJSON := "application/problem+json"
	cases := []struct {
		name       string
		tok        string
		method     string
		path       string
		body       any
		code       int
		wantBody   string // exact, when set
		wantFields []string
	}{
		{name: "no token", method: "GET", path: "/v1/account", code: 401,
			wantBody: `{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}`},
		{name: "wrong token", tok: "r8_wrong", method: "GET", path: "/v1/trainings", code: 401},
		{name: "missing destination", method: "POST", path: trainer, code: 404,
			body:     map[string]any{"destination": "trainhook-sim/nope", "input": map[string]any{}},
			wantBody: `{"detail":"The specified training destination does not exist","status":404}`},
		{name: "destination owned by another", method: "POST", path: trainer, code: 404,
			body: map[string]any{"destination": "ostris/flux-dev-lora-trainer", "input": map[string]any{}}},
		{name: "name taken", method: "POST", path: "/v1/models", code: 409,
			body:     map[string]any{"owner": "trainhook-sim", "name": "taken", "visibility": "private", "hardware": "cpu"},
			wantBody: `{"title":"Conflict","detail":"A model with that name and owner already exists.","status":409}`},
		{name: "unknown version", method: "POST", path: "/v1/models/ostris/flux-dev-lora-trainer/versions/" + strings.Repeat("ab", 32) + "/trainings", code: 422,
			body:     map[string]any{"destination": "trainhook-sim/taken", "input": map[string]any{}},
			wantBody: `{"title":"Invalid version or not permitted","detail":"The specified version does not exist (or perhaps you don't have permission to use it?)","status":422}`},
		{name: "malformed version", method: "POST", path: "/v1/models/ostris/flux-dev-lora-trainer/versions/latest/trainings", code: 422,
			body: map[string]any{"destination": "trainhook-sim/taken", "input": map[string]any{}}},
		{name: "body missing fields", method: "POST", path: trainer, code: 422, body: map[string]any{"inptu": 1},
			wantFields: []string{"additional_property_not_allowed", "required", "required"}},
		{name: "body not an object", method: "POST", path: trainer, code: 422, body: "[1,2]"},
		{name: "bad webhook filter", method: "POST", path: trainer, code: 422,
			body:       map[string]any{"destination": "trainhook-sim/taken", "input": map[string]any{}, "webhook": "http://127.0.0.1:1/", "webhook_events_filter": []string{"finished"}},
			wantFields: []string{"enum"}},
		{name: "bad model body", method: "POST", path: "/v1/models", code: 422,
			body:       map[string]any{"owner": "trainhook-sim", "name": "Bad Name", "visibility": "secret"},
			wantFields: []string{"required", "pattern", "enum"}},
		{name: "create for another owner", method: "POST", path: "/v1/models", code: 403,
			body: map[string]any{"owner": "someone", "name": "x", "visibility": "private", "hardware": "cpu"}},
		{name: "unknown training", method: "GET", path: "/v1/trainings/aaaaaaaaaaaaaaaaaaaaaaaaaa", code: 404},
		{name: "unknown model", method: "GET", path: "/v1/models/nobody/nothing", code: 404},
		{name: "unknown path", method: "GET", path: "/v1/nothing-here", code: 404},
		{name: "bad cursor", method: "GET", path: "/v1/trainings?cursor=!!", code: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := c.tok
			if tok == "" && c.name != "no token" {
				tok = token
			}
			r := s.callAs(t, tok, c.method, c.path, c.body)
			if r.code != c.code {
				t.Fatalf("status %d, want %d: %s", r.code, c.code, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != problemJSON {
				t.Errorf("Content-Type %q, want %s", ct, problemJSON)
			}
			if r.header.Get("ratelimit-remaining") == "" || r.header.Get("ratelimit-reset") == "" {
				t.Errorf("missing ratelimit headers: %v", r.header)
			}
			if c.wantBody != "" && strings.TrimSpace(string(r.body)) != c.wantBody {
				t.Errorf("body\n got %s\nwant %s", r.body, c.wantBody)
			}
			p := r.json(t)
			if p["status"] != float64(c.code) || p["detail"] == "" {
				t.Errorf("problem body lacks status/detail: %s", r.body)
			}
			if c.wantFields != nil {
				fs, _ := p["invalid_fields"].([]any)
				var types []string
				for _, f := range fs {
					types = append(types, f.(map[string]any)["type"].(string))
				}
				if strings.Join(types, ",") != strings.Join(c.wantFields, ",") {
					t.Errorf("invalid_fields types %v, want %v (%s)", types, c.wantFields, r.body)
				}
			}
		})
	}
}

func TestAnyTokenWhenNoneConfigured(t *testing.T) {
	srv, err := fakereplicate.New(fakereplicate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for tok, want := range map[string]int{"Bearer whatever": 200, "Token r8_old_style": 200, "Bearer ": 401, "": 401, "Basic abc": 401} {
		req := httptest.NewRequest("GET", "/v1/account", nil)
		if tok != "" {
			req.Header.Set("Authorization", tok)
		}
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)
		if w.Code != want {
			t.Errorf("Authorization %q: %d, want %d", tok, w.Code, want)
		}
	}
}

func TestRateLimit(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Faults: fakereplicate.Faults{RateLimit: 3}})
	for i := range 3 {
		r := s.call(t, "GET", "/v1/account", nil)
		if r.code != 200 || r.header.Get("ratelimit-remaining") != fmt.Sprint(2-i) {
			t.Fatalf("call %d: %d remaining %q", i, r.code, r.header.Get("ratelimit-remaining"))
		}
		s.clock.Advance(10 * time.Second)
	}
	r := s.call(t, "GET", "/v1/account", nil)
	p := r.json(t)
	if r.code != 429 || p["retry_after"] != float64(30) || p["detail"] != "Request was throttled. Your rate limit resets in ~30s." {
		t.Fatalf("over the limit: %d %s", r.code, r.body)
	}
	if r.header.Get("Retry-After") != "" {
		t.Error("Retry-After header sent without retry_after_header")
	}
	if err := s.SetFaults(fakereplicate.Faults{RateLimit: 3, RetryAfterHeader: true}); err != nil {
		t.Fatal(err)
	}
	if r := s.call(t, "GET", "/v1/account", nil); r.code != 429 || r.header.Get("Retry-After") != "30" {
		t.Errorf("with header: %d Retry-After %q", r.code, r.header.Get("Retry-After"))
	}
	s.clock.Advance(30 * time.Second) // the first call leaves the window
	if r := s.call(t, "GET", "/v1/account", nil); r.code != 200 {
		t.Errorf("after the wait: %d", r.code)
	}
	st := s.Stats()
	if st.Throttled != 2 || st.Count("account.get", 429) != 2 || st.Count("account.get", 200) != 4 || st.MaxPerMinute != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestListPagination(t *testing.T) {
	s := newSim(t, fakereplicate.Options{})
	s.mustCreateModel(t, "d")
	var created []string
	for range 250 {
		created = append(created, s.mustCreateTraining(t, "trainhook-sim/d", nil)["id"].(string))
		s.clock.Advance(time.Millisecond)
	}
	var got []string
	var pages []map[string]any
	next := s.base + "/v1/trainings"
	for next != "" {
		r := s.call(t, "GET", next, nil)
		if r.code != 200 {
			t.Fatalf("GET %s: %d %s", next, r.code, r.body)
		}
		page := r.json(t)
		pages = append(pages, page)
		for _, res := range page["results"].([]any) {
			m := res.(map[string]any)
			if _, ok := m["logs"]; ok {
				t.Fatal("list results carry logs; Replicate's do not")
			}
			got = append(got, m["id"].(string))
		}
		next, _ = page["next"].(string)
		if next != "" {
			u, err := url.Parse(next)
			if err != nil || u.Scheme != "http" || u.Host != strings.TrimPrefix(s.base, "http://") || u.Query().Get("cursor") == "" {
				t.Fatalf("next %q is not an absolute URL with a cursor on the request's host", next)
			}
		}
	}
	if len(pages) != 3 || len(got) != 250 {
		t.Fatalf("%d pages, %d trainings; want 3 and 250", len(pages), len(got))
	}
	for i, id := range got {
		if id != created[len(created)-1-i] {
			t.Fatalf("result %d is %s, want %s (newest first)", i, id, created[len(created)-1-i])
		}
	}
	if pages[0]["previous"] != nil {
		t.Error("first page has a previous link")
	}
	// previous of page 2 is page 1.
	back := s.call(t, "GET", pages[1]["previous"].(string), nil).json(t)
	if fmt.Sprint(back["results"]) != fmt.Sprint(pages[0]["results"]) {
		t.Error("page 2's previous is not page 1")
	}
}

func TestControlSurface(t *testing.T) {
	s := newSim(t, fakereplicate.Options{Duration: time.Hour})
	s.mustCreateModel(t, "d")
	id := s.mustCreateTraining(t, "trainhook-sim/d", nil)["id"].(string)

	r := s.callAs(t, "", "POST", "/_sim/trainings/"+id+"/complete", `{"status":"failed","error":"boom"}`)
	if r.code != 200 || r.json(t)["status"] != "failed" {
		t.Fatalf("complete: %d %s", r.code, r.body)
	}
	tr, _ := replicate.ParseTraining(s.call(t, "GET", "/v1/trainings/"+id, nil).body)
	if tr.Status != "failed" || tr.ErrorText() != "boom" {
		t.Errorf("after forced failure: %s %q", tr.Status, tr.ErrorText())
	}
	if r := s.callAs(t, "", "POST", "/_sim/trainings/"+id+"/complete", `{"status":"succeeded"}`); r.code != 409 {
		t.Errorf("completing a finished training: %d", r.code)
	}
	if r := s.callAs(t, "", "POST", "/_sim/trainings/"+id+"/complete", `{"status":"exploded"}`); r.code != 409 && r.code != 422 {
		t.Errorf("bad status: %d", r.code)
	}

	truth := s.callAs(t, "", "GET", "/_sim/trainings/"+id, nil).json(t)
	if truth["destination"] != "trainhook-sim/d" || truth["forced"] != true || truth["scheduled_outcome"] != "succeeded" {
		t.Errorf("ground truth: %v", truth)
	}
	if r := s.callAs(t, "", "POST", "/_sim/faults", `{"api_error_rate":1,"delay_webhooks":"2s"}`); r.code != 200 {
		t.Fatalf("set faults: %d %s", r.code, r.body)
	}
	if f := s.Faults(); f.APIErrorRate != 1 || f.DelayWebhooks != 2*time.Second || f.RateLimit != 0 {
		t.Errorf("faults after merge: %+v", f)
	}
	if f := s.callAs(t, "", "GET", "/_sim/faults", nil).json(t); f["delay_webhooks"] != "2s" || f["api_error_rate"] != float64(1) || f["fail_rate"] != float64(0) {
		t.Errorf("GET /_sim/faults = %v", f)
	}
	if r := s.callAs(t, "", "POST", "/_sim/faults", `{"drop_everything":1}`); r.code != 400 {
		t.Errorf("unknown fault member: %d", r.code)
	}
	if r := s.call(t, "GET", "/v1/account", nil); r.code < 500 {
		t.Errorf("with api_error_rate 1: %d", r.code)
	}
	if r := s.callAs(t, "", "POST", "/_sim/faults", `{"api_error_rate":2}`); r.code != 422 {
		t.Errorf("invalid fault: %d", r.code)
	}
	s.callAs(t, "", "POST", "/_sim/faults", `{"api_error_rate":0}`)
	if r := s.callAs(t, "", "POST", "/_sim/fail-next", `{"endpoint":"account.get","status":418,"count":2}`); r.code != 204 {
		t.Fatalf("fail-next: %d %s", r.code, r.body)
	}
	for _, want := range []int{418, 418, 200} {
		if r := s.call(t, "GET", "/v1/account", nil); r.code != want {
			t.Errorf("after fail-next: %d, want %d", r.code, want)
		}
	}
	stats := s.callAs(t, "", "GET", "/_sim/stats", nil).json(t)
	calls := stats["calls"].(map[string]any)["account.get"].(map[string]any)
	if calls["418"] != float64(2) || calls["200"] != float64(1) || stats["injected_errors"] != float64(3) {
		t.Errorf("stats: %v", stats)
	}
	if r := s.callAs(t, "", "POST", "/_sim/reset", nil); r.code != 204 || s.Stats().Requests != 0 {
		t.Errorf("reset: %d, requests %d", r.code, s.Stats().Requests)
	}
	if r := s.callAs(t, "", "GET", "/_sim/", nil); r.code != 200 {
		t.Errorf("index: %d", r.code)
	}
}

// A create whose answer is "lost" still creates: this is what a client
// must not re-send.
func TestInjectedFaultAfterCreate(t *testing.T) {
	s := newSim(t, fakereplicate.Options{})
	s.mustCreateModel(t, "d")
	if err := s.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 502, After: true}); err != nil {
		t.Fatal(err)
	}
	r := s.call(t, "POST", trainer, map[string]any{"destination": "trainhook-sim/d", "input": map[string]any{}})
	if r.code != 502 || !strings.Contains(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("injected fault: %d %s", r.code, r.header.Get("Content-Type"))
	}
	if n := len(s.Trainings()); n != 1 {
		t.Errorf("%d trainings exist, want 1: the fault struck after the create", n)
	}
	if err := s.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 500}); err != nil {
		t.Fatal(err)
	}
	s.call(t, "POST", trainer, map[string]any{"destination": "trainhook-sim/d", "input": map[string]any{}})
	if n := len(s.Trainings()); n != 1 {
		t.Errorf("%d trainings exist, want still 1: the fault struck before the create", n)
	}
}

func TestTrainerModels(t *testing.T) {
	s := newSim(t, fakereplicate.Options{})
	for _, c := range []struct{ path, latest string }{
		{"/v1/models/ostris/flux-dev-lora-trainer", fakereplicate.FluxTrainerVersion},
		{"/v1/models/replicate/fast-flux-trainer", fakereplicate.FastFluxVersion},
	} {
		m := s.call(t, "GET", c.path, nil).json(t)
		if lv := m["latest_version"].(map[string]any); lv["id"] != c.latest {
			t.Errorf("%s latest_version = %v", c.path, lv["id"])
		}
	}
	vs := s.call(t, "GET", "/v1/models/ostris/flux-dev-lora-trainer/versions", nil).json(t)
	if res := vs["results"].([]any); len(res) < 2 || res[0].(map[string]any)["id"] != fakereplicate.FluxTrainerVersion {
		t.Errorf("versions list: %v", res)
	}
	if r := s.call(t, "GET", "/v1/webhooks/default/secret", nil).json(t); r["key"] != s.Key().Secret() {
		t.Errorf("secret = %v", r["key"])
	}
	if a := s.call(t, "GET", "/v1/account", nil).json(t); a["username"] != "trainhook-sim" || a["type"] != "user" {
		t.Errorf("account = %v", a)
	}
}

func TestSeedReproducible(t *testing.T) {
	ids := func() []string {
		s := newSim(t, fakereplicate.Options{Seed: 7, Faults: fakereplicate.Faults{FailRate: 0.5}})
		s.mustCreateModel(t, "d")
		var out []string
		for range 5 {
			out = append(out, s.mustCreateTraining(t, "trainhook-sim/d", nil)["id"].(string))
		}
		for _, tr := range s.Trainings() {
			out = append(out, tr.ScheduledOutcome)
		}
		return append(out, s.Key().Secret())
	}
	a, b := ids(), ids()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("same seed, different runs:\n%v\n%v", a, b)
	}
}

// Ten thousand running trainings cost memory, not goroutines or CPU: the
// state is computed when asked, and webhooks wait on one timer heap.
func TestScalesTo10000Trainings(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 trainings")
	}
	srv, err := fakereplicate.New(fakereplicate.Options{Duration: time.Hour, Seed: 1, Clock: fakereplicate.NewManualClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	do := func(method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer x")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := do("POST", "/v1/models", `{"owner":"trainhook-sim","name":"d","visibility":"private","hardware":"cpu"}`); w.Code != 201 {
		t.Fatal(w.Body.String())
	}
	before := runtime.NumGoroutine()
	body := `{"destination":"trainhook-sim/d","input":{"steps":1000},"webhook":"http://127.0.0.1:1/hook","webhook_events_filter":["start","logs","completed"]}`
	for i := range 10_000 {
		if w := do("POST", trainer, body); w.Code != 201 {
			t.Fatalf("training %d: %d %s", i, w.Code, w.Body.String())
		}
	}
	if g := runtime.NumGoroutine(); g > before+5 {
		t.Errorf("%d goroutines for 10,000 trainings (was %d)", g, before)
	}
	if w := do("GET", "/v1/trainings", ""); w.Code != 200 || strings.Count(w.Body.String(), `"id":`) != 100 {
		t.Errorf("list: %d", w.Code)
	}
	if n := len(srv.Trainings()); n != 10_000 {
		t.Errorf("%d trainings", n)
	}
}
