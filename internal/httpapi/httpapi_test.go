package httpapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/authlimit"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/httpapi"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/web"
	"github.com/trainhook/trainhook/internal/webhook"
)

const (
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testToken  = "test-token-0123456789-0123456789-abcdef"
)

// fixture is the whole HTTP surface over a real SQLite store, without
// Replicate (no REPLICATE_API_TOKEN): what app.Start builds, less the
// listener and the background loops.
type fixture struct {
	ts    *httptest.Server
	key   replicate.Key
	store *sqlite.Store
}

// newFixture serves httpapi.Handler with the dashboard mounted. token is
// TRAINHOOK_API_TOKEN ("" for none); limit, when not nil, counts wrong
// tokens.
func newFixture(t *testing.T, token string, limit *authlimit.Limiter) *fixture {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	broker := events.NewBroker(64, log)
	svc := service.New(service.Options{Store: st, Broker: broker, Logger: log})
	key, err := replicate.ParseKey(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.New()
	wh := webhook.NewHandler(webhook.Handler{Keys: replicate.Keys{key}, Service: svc, MaxBody: 1 << 20, Log: log}, reg)
	status := func() any { return map[string]string{"mode": "polling"} }
	dash := web.New(web.Deps{Service: svc, Store: st, Broker: broker, Replay: wh.Replay, Status: status,
		APIToken: token, Log: log, AuthFailures: limit})
	api := httpapi.New(httpapi.Config{APIToken: token, CORSOrigins: []string{"https://app.example"}, Status: status,
		AuthFailures: limit, Dashboard: dash}, svc, wh, reg, log)
	ts := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		ts.Close()
		svc.Close()
		_ = st.Close()
	})
	return &fixture{ts: ts, key: key, store: st}
}

// req is one request of a table and the status it must get.
type req struct {
	name   string
	method string
	path   string
	header map[string]string
	body   string
	want   int
}

// do sends r and returns the answer's status and body. A body with no
// Content-Type header set is sent as JSON.
func (f *fixture) do(t *testing.T, r req) (int, string) {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequestWithContext(t.Context(), r.method, f.ts.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		if k == "Host" {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	resp, err := f.ts.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp.StatusCode, "" // a stream does not end; its status is the answer
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (f *fixture) run(t *testing.T, table []req) {
	t.Helper()
	for _, r := range table {
		code, body := f.do(t, r)
		if code != r.want {
			t.Errorf("%s: %s %s: got %d, want %d; body %s", r.name, r.method, r.path, code, r.want, body)
		}
		if code >= 400 && r.method != http.MethodHead && !strings.Contains(body, `"error"`) && !strings.Contains(body, "<html") {
			t.Errorf("%s: %s %s: %d without an error message: %s", r.name, r.method, r.path, code, body)
		}
	}
}

// signed is a webhook delivery of training id in status, signed with the
// fixture's key.
func (f *fixture) signed(t *testing.T, id, status string) req {
	t.Helper()
	body, err := fakereplicate.TrainingPayload(fakereplicate.PayloadOptions{TrainingID: id, Status: status, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	f.key.SignRequest(h, "msg_"+id+"_"+status, time.Now(), body)
	hdr := map[string]string{}
	for k := range h {
		hdr[k] = h.Get(k)
	}
	return req{name: "signed delivery", method: "POST", path: config.WebhookPath, header: hdr, body: string(body), want: 200}
}

// Every route answers its documented status for good and bad input, with
// no API token configured. The rows run in order: later ones read what
// earlier ones created (model "t1" and delivery 1).
func TestRoutesStatusCodes(t *testing.T) {
	f := newFixture(t, "", nil)
	big := `{"training_id":"t1","name":"` + strings.Repeat("x", 1<<20) + `"}`
	f.run(t, []req{
		// Operations.
		{"liveness", "GET", "/healthz", nil, "", 200},
		{"readiness", "GET", "/readyz", nil, "", 200},
		{"metrics", "GET", "/metrics", nil, "", 200},
		{"openapi", "GET", "/api/openapi.json", nil, "", 200},
		{"status", "GET", "/api/status", nil, "", 200},

		// Registering a training.
		{"register", "POST", "/api/models", map[string]string{"Idempotency-Key": "k1"}, `{"training_id":"t1","name":"first"}`, 201},
		{"register replayed", "POST", "/api/models", map[string]string{"Idempotency-Key": "k1"}, `{"training_id":"t1","name":"first"}`, 200},
		{"register same training again", "POST", "/api/models", nil, `{"training_id":"t1"}`, 409},
		{"register bad training id", "POST", "/api/models", nil, `{"training_id":"no spaces"}`, 400},
		{"register nothing", "POST", "/api/models", nil, `{}`, 400},
		{"register empty body", "POST", "/api/models", map[string]string{"Content-Type": "application/json"}, "", 400},
		{"register unknown field", "POST", "/api/models", nil, `{"training_id":"t2","colour":"red"}`, 400},
		{"register wrong type", "POST", "/api/models", nil, `{"training_id":2}`, 400},
		{"register bad JSON", "POST", "/api/models", nil, `{"training_id":`, 400},
		{"register trailing data", "POST", "/api/models", nil, `{"training_id":"t2"} {}`, 400},
		{"register too big", "POST", "/api/models", nil, big, 400},
		{"register and start at once", "POST", "/api/models", nil, `{"training_id":"t2","trainer":"a/b","destination":"c/d"}`, 400},
		{"start without Replicate", "POST", "/api/models", nil, `{"trainer":"a/b","destination":"c/d","input":{}}`, 400},
		{"register not JSON", "POST", "/api/models", map[string]string{"Content-Type": "text/plain"}, `{"training_id":"t2"}`, 415},

		// Reading models.
		{"list", "GET", "/api/models", nil, "", 200},
		{"list by status", "GET", "/api/models?status=Training&limit=10&q=first", nil, "", 200},
		{"list bad status", "GET", "/api/models?status=Sleeping", nil, "", 400},
		{"list limit zero", "GET", "/api/models?limit=0", nil, "", 400},
		{"list limit too big", "GET", "/api/models?limit=100000", nil, "", 400},
		{"list limit not a number", "GET", "/api/models?limit=ten", nil, "", 400},
		{"list bad cursor", "GET", "/api/models?cursor=nope", nil, "", 400},
		{"get unknown", "GET", "/api/models/no-such-model", nil, "", 404},
		{"cancel without Replicate", "POST", "/api/models/no-such-model/cancel", nil, "", 400},

		// Webhook intake.
		f.signed(t, "t1", "processing"),
		{"unsigned delivery", "POST", config.WebhookPath, nil, `{"id":"t1","status":"succeeded"}`, 401},
		{"webhook GET", "GET", config.WebhookPath, nil, "", 405},

		// Deliveries (the dashboard's JSON routes).
		{"deliveries", "GET", "/api/deliveries", nil, "", 200},
		{"deliveries filtered", "GET", "/api/deliveries?outcome=applied&verified=true&model=m_1&limit=5", nil, "", 200},
		{"deliveries bad outcome", "GET", "/api/deliveries?outcome=lost", nil, "", 400},
		{"deliveries bad verified", "GET", "/api/deliveries?verified=maybe", nil, "", 400},
		{"deliveries bad model", "GET", "/api/deliveries?model=a%20b", nil, "", 400},
		{"deliveries bad limit", "GET", "/api/deliveries?limit=-1", nil, "", 400},
		{"deliveries bad cursor", "GET", "/api/deliveries?cursor=nope", nil, "", 400},
		{"delivery", "GET", "/api/deliveries/1", nil, "", 200},
		{"delivery unknown", "GET", "/api/deliveries/999", nil, "", 404},
		{"delivery not a number", "GET", "/api/deliveries/abc", nil, "", 404},
		{"replay", "POST", "/api/deliveries/1/replay", nil, "", 200},
		{"replay unknown", "POST", "/api/deliveries/999/replay", nil, "", 404},

		// The event stream.
		{"events", "GET", "/api/events", nil, "", 200},
		{"events resumed", "GET", "/api/events", map[string]string{"Last-Event-ID": "1"}, "", 200},
		{"events bad Last-Event-ID", "GET", "/api/events", map[string]string{"Last-Event-ID": "one"}, "", 400},
		{"events bad last_event_id", "GET", "/api/events?last_event_id=-3", nil, "", 400},

		// What no route claims.
		{"unknown API path", "GET", "/api/nothing-here", nil, "", 404},
		{"wrong method", "DELETE", "/api/models", nil, "", 405},
		{"wrong method on deliveries", "PUT", "/api/deliveries/1", nil, "", 405},
		{"preflight from a stranger", "OPTIONS", "/api/models", map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, "", 403},
		{"preflight from an allowed origin", "OPTIONS", "/api/models", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, "", 204},
		{"unknown page", "GET", "/no-such-page", nil, "", 404},

		// The guard.
		{"foreign Host", "GET", "/api/models", map[string]string{"Host": "evil.example"}, "", 421},
		{"foreign Host on a probe", "GET", "/healthz", map[string]string{"Host": "evil.example"}, "", 200},
		{"cross-site POST", "POST", "/api/models", map[string]string{"Sec-Fetch-Site": "cross-site"}, `{"training_id":"t3"}`, 403},
		{"cross-site replay", "POST", "/api/deliveries/1/replay", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", 403},
		{"form body to the API", "POST", "/api/deliveries/1/replay", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "a=b", 415},
	})

	// What the rows created is there: one model, one stored delivery.
	code, body := f.do(t, req{method: "GET", path: "/api/models"})
	if code != 200 || strings.Count(body, `"training_id":"t1"`) != 1 {
		t.Fatalf("models after the table: %d %s", code, body)
	}
}

// With a token, every JSON route and /metrics need it; probes, the
// document and the webhook (signed instead) do not. Wrong tokens are
// counted, and past the limit even the right one is refused.
func TestRoutesNeedTheToken(t *testing.T) {
	f := newFixture(t, testToken, authlimit.New(3, time.Minute))
	right := map[string]string{"Authorization": "Bearer " + testToken}
	wrong := map[string]string{"Authorization": "Bearer not-the-token"}
	var table []req
	for _, r := range []struct{ method, path string }{
		{"GET", "/metrics"}, {"GET", "/api/status"}, {"GET", "/api/models"}, {"GET", "/api/models/m_1"},
		{"POST", "/api/models"}, {"POST", "/api/models/m_1/cancel"},
		{"GET", "/api/deliveries"}, {"GET", "/api/deliveries/1"}, {"POST", "/api/deliveries/1/replay"}, {"GET", "/api/events"},
	} {
		table = append(table, req{"no token", r.method, r.path, nil, "", 401})
	}
	table = append(table,
		req{"open probe", "GET", "/healthz", nil, "", 200},
		req{"open probe", "GET", "/readyz", nil, "", 200},
		req{"open document", "GET", "/api/openapi.json", nil, "", 200},
		req{"right token", "GET", "/api/models", right, "", 200},
		req{"right token", "GET", "/api/deliveries", right, "", 200},
		req{"right token", "GET", "/metrics", right, "", 200},
		req{"right token", "POST", "/api/models", right, `{"training_id":"t1"}`, 201},
		req{"wrong token", "GET", "/api/models", wrong, "", 401},
		req{"wrong token", "GET", "/api/deliveries", wrong, "", 401},
		req{"wrong token", "GET", "/metrics", wrong, "", 401},
		req{"after the limit", "GET", "/api/models", wrong, "", 429},
		req{"right token after the limit", "GET", "/api/models", right, "", 429},
		req{"right token after the limit", "GET", "/api/deliveries", right, "", 429},
		req{"probe after the limit", "GET", "/healthz", nil, "", 200},
	)
	f.run(t, table)
}

// A database that cannot be reached makes the server not ready, and the
// answer does not say why (the log does).
func TestReadyzWhenTheDatabaseIsGone(t *testing.T) {
	f := newFixture(t, "", nil)
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	code, body := f.do(t, req{method: "GET", path: "/readyz"})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "database unreachable") {
		t.Fatalf("readyz with the database closed: %d %s", code, body)
	}
}
