package app_test

// The bad-input matrix: hostile and malformed requests to the webhook
// endpoint and the management API, each answered with the right status and
// message, and none changing a model or its history. RELIABILITY.md lists
// the same rows as a table; keep them in step.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
	"github.com/trainhook/trainhook/internal/webhook"
)

const (
	matrixSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	matrixOther    = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	matrixAPIToken = "matrix-api-token-0123456789abcdef"
	matrixSimToken = "r8_matrix_0123456789abcdef"
	matrixMaxBody  = 1 << 20
)

var (
	matrixKey, _      = replicate.ParseKey(matrixSecret)
	matrixOtherKey, _ = replicate.ParseKey(matrixOther)
)

// matrixServer is a trainhook with a simulator behind it, started in this
// process so that the test can read its database and its heap.
type matrixServer struct {
	t      *testing.T
	app    *app.App
	sim    *fakereplicate.Server
	client *http.Client
}

func startMatrix(t *testing.T, readTimeout time.Duration) *matrixServer {
	t.Helper()
	return startMatrixWith(t, readTimeout, nil)
}

// startMatrixWith is startMatrix with the configuration changed by edit
// (a variable set to "" is unset).
func startMatrixWith(t *testing.T, readTimeout time.Duration, edit func(vars map[string]string)) *matrixServer {
	t.Helper()
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: matrixSimToken, Secret: matrixSecret, Duration: time.Hour})
	vars := map[string]string{
		"REPLICATE_WEBHOOK_SECRET": matrixSecret, "TRAINHOOK_API_TOKEN": matrixAPIToken,
		"REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": matrixSimToken, "TRAINHOOK_WEBHOOKS": "off",
		// Nothing is due a poll during the test, so the database changes
		// only if a request changes it.
		"TRAINHOOK_POLL_INTERVAL": "1h", "TRAINHOOK_MAX_BODY": "1MiB",
	}
	if readTimeout > 0 {
		vars["TRAINHOOK_READ_TIMEOUT"] = readTimeout.String()
	}
	if edit != nil {
		edit(vars)
	}
	srv := apptest.Start(t, apptest.Options{Env: vars, Log: slog.New(slog.DiscardHandler)})
	m := &matrixServer{t: t, app: srv.App, sim: sim, client: &http.Client{Timeout: 30 * time.Second, Transport: app.TestTransport}}
	t.Cleanup(m.client.CloseIdleConnections) // runs before the server stops
	return m
}

type matrixResponse struct {
	code   int
	header http.Header
	body   []byte
}

// message is the "error" member of a JSON answer, or the body itself.
func (r matrixResponse) message() string {
	var e struct {
		Error   string `json:"error"`
		Outcome string `json:"outcome"`
	}
	if json.Unmarshal(r.body, &e) == nil && (e.Error != "" || e.Outcome != "") {
		if e.Error == "" {
			return "outcome " + e.Outcome
		}
		return e.Error
	}
	return strings.TrimSpace(string(r.body))
}

func (m *matrixServer) do(method, path string, body io.Reader, h http.Header) matrixResponse {
	m.t.Helper()
	req, err := http.NewRequest(method, m.app.URL+path, body)
	if err != nil {
		m.t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := m.client.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return matrixResponse{resp.StatusCode, resp.Header, b}
}

// register registers a training another program started on the
// simulator's account (registration asks Replicate whether it exists).
func (m *matrixServer) register(trainingID string) training.Model {
	m.t.Helper()
	if err := m.sim.AddTraining(trainingID); err != nil {
		m.t.Fatal(err)
	}
	r := m.do("POST", "/api/models", strings.NewReader(fmt.Sprintf(`{"name":"matrix %s","training_id":%q}`, trainingID, trainingID)),
		http.Header{"Authorization": {"Bearer " + matrixAPIToken}, "Content-Type": {"application/json"}})
	if r.code != http.StatusCreated {
		m.t.Fatalf("register: %d %s", r.code, r.body)
	}
	var md training.Model
	if err := json.Unmarshal(r.body, &md); err != nil {
		m.t.Fatal(err)
	}
	return md
}

// snapshot is every model's state and history length.
func (m *matrixServer) snapshot() map[string]string {
	m.t.Helper()
	ctx := context.Background()
	ms, err := m.app.Store.ListModels(ctx, store.ModelFilter{Limit: 1000})
	if err != nil {
		m.t.Fatal(err)
	}
	out := map[string]string{}
	for _, md := range ms {
		h, err := m.app.Store.History(ctx, md.ID)
		if err != nil {
			m.t.Fatal(err)
		}
		out[md.ID] = fmt.Sprintf("%s v%d flagged=%v output=%s error=%q updated=%s history=%d",
			md.Status, md.Version, md.Flagged, md.Output, md.Error, md.UpdatedAt.Format(time.RFC3339Nano), len(h))
	}
	return out
}

func sameSnapshot(a, b map[string]string) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d models before, %d after", len(a), len(b))
	}
	for id, x := range a {
		if b[id] != x {
			return fmt.Sprintf("model %s: %s → %s", id, x, b[id])
		}
	}
	return ""
}

// hook builds the headers of a delivery signed with key at ts.
func hook(key replicate.Key, id string, ts time.Time, body []byte) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	key.SignRequest(h, id, ts, body)
	return h
}

// with returns h with one header replaced (or removed when v is nil).
func with(h http.Header, k string, v ...string) http.Header {
	h = h.Clone()
	if v == nil {
		h.Del(k)
	} else {
		h[http.CanonicalHeaderKey(k)] = v
	}
	return h
}

func api(h http.Header) http.Header {
	out := http.Header{"Authorization": {"Bearer " + matrixAPIToken}, "Content-Type": {"application/json"}}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func nested(depth int) string {
	return `{"id":"` + webhook.ProbePrefix + `deep","status":"succeeded","output":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

func trainingBody(id, status string, extra string) []byte {
	return []byte(`{"id":"` + id + `","status":"` + status + `","output":{"version":"a/b:` + strings.Repeat("0", 64) + `","weights":"https://replicate.delivery/x/trained_model.tar"}` + extra + `}`)
}

func TestBadInputMatrix(t *testing.T) {
	t.Parallel()
	m := startMatrix(t, 0)
	a := m.register("matrix-train-a")
	b := m.register("matrix-train-b")
	svc := m.app.Service

	now := time.Now()
	probe := []byte(`{"id":"` + webhook.ProbePrefix + `matrix","status":"succeeded"}`)
	forA := trainingBody("matrix-train-a", "succeeded", "")
	good := hook(matrixKey, "msg_probe", now, probe)
	sig := good.Get(replicate.HeaderSignature)
	path := config.WebhookPath

	// An accepted delivery, to replay within and after the window. It is
	// signed 298 s in the past: accepted now, expired three seconds later.
	accepted := trainingBody("matrix-train-held", "processing", "")
	acceptedH := hook(matrixKey, "msg_accepted", time.Unix(now.Unix()-298, 0), accepted)
	if r := m.do("POST", path, bytes.NewReader(accepted), acceptedH); r.code != 200 || r.message() != "outcome held" {
		t.Fatalf("delivery to replay: %d %s", r.code, r.body)
	}

	type row struct {
		name   string
		method string
		path   string
		h      http.Header
		body   []byte
		code   int
		msg    string // the answer's message contains this
	}
	rows := []row{
		{"replay within the window: acknowledged, not applied", "POST", path, acceptedH, accepted, 200, "outcome duplicate"},
		// Signature headers.
		{"no webhook headers", "POST", path, http.Header{"Content-Type": {"application/json"}}, probe, 401, "missing webhook-id, webhook-timestamp or webhook-signature header"},
		{"no webhook-signature", "POST", path, with(good, replicate.HeaderSignature), probe, 401, "missing webhook-id"},
		{"empty webhook-signature", "POST", path, with(good, replicate.HeaderSignature, ""), probe, 401, "missing webhook-id"},
		{"blank webhook-signature", "POST", path, with(good, replicate.HeaderSignature, "   "), probe, 401, "missing webhook-id"},
		{"empty webhook-id", "POST", path, with(good, replicate.HeaderID, ""), probe, 401, "missing webhook-id"},
		{"empty webhook-timestamp", "POST", path, with(good, replicate.HeaderTimestamp, ""), probe, 401, "missing webhook-id"},
		{"webhook-signature twice", "POST", path, with(good, replicate.HeaderSignature, sig, sig), probe, 401, "a webhook header is repeated"},
		{"webhook-id twice", "POST", path, with(good, replicate.HeaderID, "msg_probe", "msg_probe"), probe, 401, "a webhook header is repeated"},
		{"webhook-timestamp twice", "POST", path, with(good, replicate.HeaderTimestamp, good.Get(replicate.HeaderTimestamp), good.Get(replicate.HeaderTimestamp)), probe, 401, "a webhook header is repeated"},
		{"signed with another key", "POST", path, hook(matrixOtherKey, "msg_probe", now, probe), probe, 401, "no valid signature"},
		{"version tag v2", "POST", path, with(good, replicate.HeaderSignature, "v2,"+sig[3:]), probe, 401, "no valid signature"},
		{"version tag v1a (asymmetric)", "POST", path, with(good, replicate.HeaderSignature, "v1a,"+sig[3:]), probe, 401, "no valid signature"},
		{"no version tag", "POST", path, with(good, replicate.HeaderSignature, sig[3:]), probe, 401, "no valid signature"},
		{"truncated base64", "POST", path, with(good, replicate.HeaderSignature, sig[:len(sig)-5]), probe, 401, "no valid signature"},
		{"base64 without padding", "POST", path, with(good, replicate.HeaderSignature, strings.TrimRight(sig, "=")), probe, 401, "no valid signature"},
		{"space after the comma", "POST", path, with(good, replicate.HeaderSignature, "v1, "+sig[3:]), probe, 401, "no valid signature"},
		{"hex instead of base64", "POST", path, with(good, replicate.HeaderSignature, fmt.Sprintf("v1,%x", mustDecode(t, sig[3:]))), probe, 401, "no valid signature"},
		{"signature over another webhook-id", "POST", path, with(good, replicate.HeaderID, "msg_other"), probe, 401, "no valid signature"},
		{"tampered body", "POST", path, good, append(bytes.Clone(probe[:len(probe)-1]), ` }`...), 401, "no valid signature"},
		{"spaces around the header value (trimmed by HTTP)", "POST", path, with(good, replicate.HeaderSignature, "   "+sig+"   "), probe, 200, "outcome probe"},
		{"extra spaces between signatures", "POST", path, with(good, replicate.HeaderSignature, "v1,AAAA   v1a,xyz    "+sig), probe, 200, "outcome probe"},
		{"10 KB webhook-id, signed", "POST", path, hook(matrixKey, strings.Repeat("m", 10<<10), now, probe), probe, 400, "webhook-id is longer than 200 bytes"},
		{"201-byte webhook-id, signed (dedupe needs the whole id)", "POST", path, hook(matrixKey, strings.Repeat("m", 201), now, forA), forA, 400, "webhook-id is longer than 200 bytes"},
		{"200-byte webhook-id, signed", "POST", path, hook(matrixKey, strings.Repeat("m", 200), now, probe), probe, 200, "outcome probe"},
		// Timestamps.
		{"timestamp 6 minutes old", "POST", path, hook(matrixKey, "msg_old", now.Add(-6*time.Minute), probe), probe, 401, "more than 5 minutes old"},
		{"timestamp 6 minutes ahead", "POST", path, hook(matrixKey, "msg_new", now.Add(6*time.Minute), probe), probe, 401, "in the future"},
		{"timestamp 0 (1970)", "POST", path, with(good, replicate.HeaderTimestamp, "0"), probe, 401, "more than 5 minutes old"},
		{"timestamp not a number", "POST", path, with(good, replicate.HeaderTimestamp, "yesterday"), probe, 401, "not a Unix time in seconds"},
		{"timestamp negative", "POST", path, with(good, replicate.HeaderTimestamp, "-1"), probe, 401, "not a Unix time in seconds"},
		{"timestamp with a fraction", "POST", path, with(good, replicate.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10)+".5"), probe, 401, "not a Unix time in seconds"},
		{"timestamp beyond int64", "POST", path, with(good, replicate.HeaderTimestamp, "99999999999999999999999"), probe, 401, "not a Unix time in seconds"},
		{"timestamp max int64", "POST", path, with(good, replicate.HeaderTimestamp, "9223372036854775807"), probe, 401, "in the future"},
		{"timestamp in milliseconds", "POST", path, with(good, replicate.HeaderTimestamp, strconv.FormatInt(now.UnixMilli(), 10)), probe, 401, "in the future"},
		// Bodies, correctly signed.
		{"body not JSON", "POST", path, hook(matrixKey, "msg_b1", now, []byte("hello")), []byte("hello"), 400, "payload: body is not a JSON training object"},
		{"body empty", "POST", path, hook(matrixKey, "msg_b2", now, nil), nil, 400, "payload: body is not a JSON training object"},
		{"body a JSON array", "POST", path, hook(matrixKey, "msg_b3", now, []byte(`[{"id":"x","status":"succeeded"}]`)), []byte(`[{"id":"x","status":"succeeded"}]`), 400, "payload: "},
		{"body JSON null", "POST", path, hook(matrixKey, "msg_b4", now, []byte(`null`)), []byte(`null`), 400, `missing "id"`},
		{"two JSON objects", "POST", path, hook(matrixKey, "msg_b5", now, append(bytes.Clone(probe), probe...)), append(bytes.Clone(probe), probe...), 400, "payload: body"},
		{"JSON nested 20,000 deep", "POST", path, hook(matrixKey, "msg_b6", now, []byte(nested(20000))), []byte(nested(20000)), 400, "exceeded max depth"},
		{"invalid UTF-8 in the id", "POST", path, hook(matrixKey, "msg_b7", now, []byte("{\"id\":\"\xff\xfe\",\"status\":\"succeeded\"}")), []byte("{\"id\":\"\xff\xfe\",\"status\":\"succeeded\"}"), 200, "outcome held"},
		{"invalid UTF-8 in the status", "POST", path, hook(matrixKey, "msg_b8", now, []byte("{\"id\":\"matrix-train-a\",\"status\":\"succ\xffeded\"}")), []byte("{\"id\":\"matrix-train-a\",\"status\":\"succ\xffeded\"}"), 200, "outcome unknown_status"},
		{"id a number", "POST", path, hook(matrixKey, "msg_b9", now, []byte(`{"id":42,"status":"succeeded"}`)), []byte(`{"id":42,"status":"succeeded"}`), 400, `field "id" has the wrong type`},
		{"status an object", "POST", path, hook(matrixKey, "msg_b10", now, []byte(`{"id":"matrix-train-a","status":{"x":1}}`)), []byte(`{"id":"matrix-train-a","status":{"x":1}}`), 400, `field "status" has the wrong type`},
		{"status null", "POST", path, hook(matrixKey, "msg_b11", now, []byte(`{"id":"matrix-train-a","status":null}`)), []byte(`{"id":"matrix-train-a","status":null}`), 400, `missing "status"`},
		{"id blank", "POST", path, hook(matrixKey, "msg_b12", now, []byte(`{"id":"  ","status":"succeeded"}`)), []byte(`{"id":"  ","status":"succeeded"}`), 400, `missing "id"`},
		{"id 129 characters", "POST", path, hook(matrixKey, "msg_b13", now, []byte(`{"id":"`+strings.Repeat("a", 129)+`","status":"succeeded"}`)), []byte(`{"id":"` + strings.Repeat("a", 129) + `","status":"succeeded"}`), 400, "longer than 128"},
		{"logs a number", "POST", path, hook(matrixKey, "msg_b14", now, []byte(`{"id":"matrix-train-a","status":"processing","logs":7}`)), []byte(`{"id":"matrix-train-a","status":"processing","logs":7}`), 400, `field "logs" has the wrong type`},
		{"completed_at not a time", "POST", path, hook(matrixKey, "msg_b15", now, []byte(`{"id":"matrix-train-a","status":"succeeded","completed_at":"soon"}`)), []byte(`{"id":"matrix-train-a","status":"succeeded","completed_at":"soon"}`), 400, "payload"},
		{"unknown status", "POST", path, hook(matrixKey, "msg_b16", now, []byte(`{"id":"matrix-train-a","status":"exploded"}`)), []byte(`{"id":"matrix-train-a","status":"exploded"}`), 200, "outcome unknown_status"},
		{"extra fields", "POST", path, hook(matrixKey, "msg_b17", now, []byte(`{"id":"`+webhook.ProbePrefix+`x","status":"succeeded","__proto__":{"admin":true},"destination":"evil/x"}`)), []byte(`{"id":"` + webhook.ProbePrefix + `x","status":"succeeded","__proto__":{"admin":true},"destination":"evil/x"}`), 200, "outcome probe"},
		{"Content-Type text/plain", "POST", path, with(good, "Content-Type", "text/plain"), probe, 415, "Content-Type must be application/json"},
		{"Content-Type form", "POST", path, with(good, "Content-Type", "application/x-www-form-urlencoded"), probe, 415, "Content-Type must be application/json"},
		{"Content-Type unparsable", "POST", path, with(good, "Content-Type", "application/json; charset"), probe, 415, "Content-Type must be application/json"},
		{"Content-Type with charset", "POST", path, with(good, "Content-Type", "application/json; charset=utf-8"), probe, 200, "outcome probe"},
		{"body over TRAINHOOK_MAX_BODY, Content-Length declared", "POST", path, good, bytes.Repeat([]byte(" "), matrixMaxBody+1), 413, "larger than TRAINHOOK_MAX_BODY (1 MiB)"},
		// Methods.
		{"GET", "GET", path, nil, nil, 405, "use POST"},
		{"PUT", "PUT", path, good, probe, 405, "use POST"},
		{"DELETE", "DELETE", path, good, nil, 405, "use POST"},
		{"OPTIONS (CORS preflight)", "OPTIONS", path, http.Header{"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"POST"}}, nil, 405, "no CORS"},
		// Which training, which model.
		{"unknown training id: held until registered", "POST", path, hook(matrixKey, "msg_w1", now, trainingBody("matrix-train-unknown", "succeeded", "")), trainingBody("matrix-train-unknown", "succeeded", ""), 200, "outcome held"},
		{"token of another model", "POST", path + "?model=" + b.ID + "&token=" + svc.ModelToken(a.ID), hook(matrixKey, "msg_w2", now, forA), forA, 403, "the token in the webhook URL does not match its model"},
		{"model without a token", "POST", path + "?model=" + a.ID, hook(matrixKey, "msg_w3", now, forA), forA, 403, "does not match its model"},
		{"token without a model", "POST", path + "?token=" + svc.ModelToken(a.ID), hook(matrixKey, "msg_w4", now, forA), forA, 403, "does not match its model"},
		{"training of model a, valid token of model b", "POST", path + "?model=" + b.ID + "&token=" + svc.ModelToken(b.ID), hook(matrixKey, "msg_w5", now, forA), forA, 403, "training matrix-train-a belongs to another model, not to model " + b.ID},
		{"token of an unknown model", "POST", path + "?model=01zzzzzzzzzzzzzzzzzzzzzzzz&token=" + svc.ModelToken(a.ID), hook(matrixKey, "msg_w6", now, forA), forA, 403, "does not match its model"},

		// Management API: authentication.
		{"API: no token", "GET", "/api/models", nil, nil, 401, "missing API token"},
		{"API: wrong token", "GET", "/api/models", http.Header{"Authorization": {"Bearer nope"}}, nil, 401, "wrong API token"},
		{"API: token with another scheme", "GET", "/api/models", http.Header{"Authorization": {"Basic " + matrixAPIToken}}, nil, 401, "missing API token"},
		{"API: lower-case bearer", "GET", "/api/models", http.Header{"Authorization": {"bearer " + matrixAPIToken}}, nil, 401, "missing API token"},
		{"API: token in the query string", "GET", "/api/models?token=" + matrixAPIToken, nil, nil, 401, "missing API token"},
		{"API: token with a trailing space", "GET", "/api/models", http.Header{"Authorization": {"Bearer " + matrixAPIToken + "x"}}, nil, 401, "wrong API token"},
		{"API: no token on /api/status", "GET", "/api/status", nil, nil, 401, "missing API token"},
		{"API: no token on cancel", "POST", "/api/models/" + a.ID + "/cancel", nil, nil, 401, "missing API token"},
		// Operations: metrics need the token; the probes stay open.
		{"metrics: no token", "GET", "/metrics", nil, nil, 401, "missing API token"},
		{"metrics: wrong token", "GET", "/metrics", http.Header{"Authorization": {"Bearer nope"}}, nil, 401, "wrong API token"},
		{"metrics: token in the query string", "GET", "/metrics?token=" + matrixAPIToken, nil, nil, 401, "missing API token"},
		{"metrics: with the token", "GET", "/metrics", http.Header{"Authorization": {"Bearer " + matrixAPIToken}}, nil, 200, "trainhook_webhook_refusals_total"},
		{"healthz: open without a token", "GET", "/healthz", nil, nil, 200, `"ok"`},
		{"readyz: open without a token", "GET", "/readyz", nil, nil, 200, `"ready"`},
		// Management API: bodies.
		{"API: invalid JSON", "POST", "/api/models", api(nil), []byte(`{"training_id":`), 400, "invalid JSON"},
		{"API: empty body", "POST", "/api/models", api(nil), nil, 400, "empty body"},
		{"API: JSON array", "POST", "/api/models", api(nil), []byte(`[1]`), 400, "must be"},
		{"API: two objects", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-1"}{}`), 400, "data after the JSON object"},
		{"API: unknown field", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-2","admin":true}`), 400, `unknown field "admin"`},
		{"API: wrong type", "POST", "/api/models", api(nil), []byte(`{"training_id":42}`), 400, `field "training_id" must be string`},
		{"API: text/plain", "POST", "/api/models", api(http.Header{"Content-Type": {"text/plain"}}), []byte(`{"training_id":"ok-3"}`), 415, `Content-Type must be application/json (got "text/plain")`},
		{"API: no Content-Type", "POST", "/api/models", api(http.Header{"Content-Type": nil}), []byte(`{"training_id":"ok-3"}`), 415, "Content-Type must be application/json (got none)"},
		{"API: form Content-Type", "POST", "/api/models", api(http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}), []byte(`{"training_id":"ok-3"}`), 415, "Content-Type must be application/json"},
		{"API: cancel with a text/plain body", "POST", "/api/models/" + a.ID + "/cancel", api(http.Header{"Content-Type": {"text/plain"}}), []byte(`x`), 415, "Content-Type must be application/json"},
		{"API: body over 1 MiB", "POST", "/api/models", api(nil), []byte(`{"name":"` + strings.Repeat("x", 1<<20) + `"}`), 400, "request body is larger than"},
		{"API: metadata over 64 KiB", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-4","metadata":{"x":"` + strings.Repeat("a", 70000) + `"}}`), 400, "64 KiB"},
		{"API: metadata an array", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-5","metadata":[1,2]}`), 400, `"metadata" must be a JSON object`},
		{"API: metadata a string", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-6","metadata":"x"}`), 400, `"metadata" must be a JSON object`},
		{"API: name with a control character", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-7","name":"a\u0000b"}`), 400, "control character"},
		{"API: name with a newline (log injection)", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-8","name":"a\n{\"level\":\"ERROR\"}"}`), 400, "control character"},
		{"API: name over 200 characters", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-9","name":"` + strings.Repeat("é", 201) + `"}`), 400, "longer than 200"},
		{"API: SQL in training_id", "POST", "/api/models", api(nil), []byte(`{"training_id":"x'); DROP TABLE models; --"}`), 400, `"training_id" must be the Replicate training id`},
		{"API: training_id over 128", "POST", "/api/models", api(nil), []byte(`{"training_id":"` + strings.Repeat("a", 129) + `"}`), 400, `"training_id" must be`},
		{"API: training_id already tracked", "POST", "/api/models", api(nil), []byte(`{"training_id":"matrix-train-a"}`), 409, "already tracked"},
		{"API: Idempotency-Key over 255", "POST", "/api/models", api(http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}}), []byte(`{"training_id":"ok-10"}`), 400, "Idempotency-Key is longer than 255"},
		{"API: trainer and training_id", "POST", "/api/models", api(nil), []byte(`{"training_id":"ok-11","trainer":"a/b","destination":"c/d"}`), 400, "not both"},
		{"API: SQL in trainer", "POST", "/api/models", api(nil), []byte(`{"trainer":"a/b' OR '1'='1","destination":"c/d"}`), 400, `"trainer" must be owner/model`},
		{"API: destination with a path", "POST", "/api/models", api(nil), []byte(`{"trainer":"a/b","destination":"../../etc/passwd"}`), 400, `"destination" must be owner/name`},
		{"API: input an array", "POST", "/api/models", api(nil), []byte(`{"trainer":"a/b","destination":"c/d","input":[1]}`), 400, `"input" must be a JSON object`},
		{"API: input over 256 KiB", "POST", "/api/models", api(nil), []byte(`{"trainer":"a/b","destination":"c/d","input":{"x":"` + strings.Repeat("a", 300<<10) + `"}}`), 400, `"input" is`},
		// Management API: queries.
		{"API: limit 0", "GET", "/api/models?limit=0", api(nil), nil, 400, `limit must be a whole number from 1 to 1000, got "0"; omit it for the default page of 50`},
		{"API: limit -1", "GET", "/api/models?limit=-1", api(nil), nil, 400, `limit must be a whole number from 1 to 1000, got "-1"`},
		{"API: limit 1001", "GET", "/api/models?limit=1001", api(nil), nil, 400, `limit must be a whole number from 1 to 1000, got "1001"`},
		{"API: limit beyond int64", "GET", "/api/models?limit=99999999999999999999999", api(nil), nil, 400, `limit must be a whole number from 1 to 1000, got "99999999999999999999999"`},
		{"API: limit a word", "GET", "/api/models?limit=all", api(nil), nil, 400, `limit must be a whole number from 1 to 1000, got "all"`},
		{"API: limit a fraction", "GET", "/api/models?limit=2.5", api(nil), nil, 400, `got "2.5"`},
		{"API: limit with a sign", "GET", "/api/models?limit=%2B5", api(nil), nil, 200, `"models"`},
		{"API: limit empty (the default)", "GET", "/api/models?limit=", api(nil), nil, 200, `"models"`},
		{"API: limit 1", "GET", "/api/models?limit=1", api(nil), nil, 200, `"next_cursor"`},
		{"API: limit 1000", "GET", "/api/models?limit=1000", api(nil), nil, 200, `"models"`},
		{"API: cursor garbage", "GET", "/api/models?cursor=nope!", api(nil), nil, 400, "cursor is not one this server issued"},
		{"API: cursor with SQL", "GET", "/api/models?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("m1:' OR 1=1 --                ")), api(nil), nil, 400, "cursor is not one this server issued"},
		{"API: cursor 10 KB", "GET", "/api/models?cursor=" + strings.Repeat("A", 10<<10), api(nil), nil, 400, "cursor is not one this server issued"},
		{"API: status unknown", "GET", "/api/models?status=Done", api(nil), nil, 400, "unknown status"},
		{"API: status with SQL", "GET", "/api/models?status=Ready'%20OR%20'1'='1", api(nil), nil, 400, "unknown status"},
		{"API: q with SQL finds nothing", "GET", "/api/models?q=%27%20OR%201%3D1%20--", api(nil), nil, 200, ""},
		{"API: q with LIKE wildcards finds nothing", "GET", "/api/models?q=%25_%25", api(nil), nil, 200, ""},
		{"API: q over 200 characters", "GET", "/api/models?q=" + strings.Repeat("q", 201), api(nil), nil, 400, "q is longer than 200"},
		{"API: model id with SQL", "GET", "/api/models/x'%20OR%20'1'='1", api(nil), nil, 404, "no model with id"},
		{"API: model id with a NUL", "GET", "/api/models/%00", api(nil), nil, 404, "no model with id"},
		{"API: cancel an unknown model", "POST", "/api/models/01zzzzzzzzzzzzzzzzzzzzzzzz/cancel", api(nil), nil, 404, "no model with id"},
		{"API: cancel, Replicate refuses", "POST", "/api/models/" + a.ID + "/cancel", api(nil), nil, 502, "Replicate did not cancel training matrix-train-a"},
		{"API: remove a running model", "DELETE", "/api/models/" + a.ID, api(nil), nil, 409, "cancel it first"},
		{"API: PUT a model", "PUT", "/api/models/" + a.ID, api(nil), nil, 405, "PUT is not allowed"},
		{"API: unknown endpoint", "GET", "/api/admin", api(nil), nil, 404, "no such API endpoint"},
	}

	run := func(c row) {
		t.Run(c.name, func(t *testing.T) {
			before := m.snapshot()
			var body io.Reader
			if c.body != nil {
				body = bytes.NewReader(c.body)
			}
			r := m.do(c.method, c.path, body, c.h)
			if r.code != c.code || !strings.Contains(r.message(), c.msg) {
				t.Errorf("got %d %q, want %d containing %q", r.code, clipText(r.message(), 300), c.code, c.msg)
			}
			if strings.HasPrefix(c.path, config.WebhookPath) && r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Error("the webhook route sent CORS headers")
			}
			if diff := sameSnapshot(before, m.snapshot()); diff != "" {
				t.Errorf("the database changed: %s", diff)
			}
		})
	}
	// The cancel row's refusal (the only cancel sent).
	if err := m.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.cancel", Status: 403, Count: 1}); err != nil {
		t.Fatal(err)
	}
	for _, c := range rows {
		run(c)
	}
	time.Sleep(time.Until(time.Unix(now.Unix()+3, 0))) // the accepted delivery is now past the window
	run(row{"replay after the window", "POST", path, acceptedH, accepted, 401, "more than 5 minutes old (expired or replayed)"})

	t.Run("held deliveries apply once the training is registered", func(t *testing.T) {
		md := m.register("matrix-train-unknown")
		got, err := m.app.Store.GetModel(context.Background(), md.ID)
		if err != nil || got.Status != training.Ready {
			t.Fatalf("registered after a held delivery: %+v %v", got, err)
		}
	})
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// endless yields n bytes of JSON-ish filler without holding them: the
// client's side costs no memory, so the heap measures the server.
type endless struct {
	n, sent int64
	counter *atomic.Int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.sent >= e.n {
		return 0, io.EOF
	}
	k := int64(len(p))
	k = min(k, e.n-e.sent)
	for i := range p[:k] {
		p[i] = ' '
	}
	e.sent += k
	e.counter.Add(k)
	return int(k), nil
}

// A 100 MB delivery is refused after at most TRAINHOOK_MAX_BODY is read:
// with Content-Length at once, chunked once the limit is passed. Neither
// reads it whole, and the server's allocations stay far below 100 MB.
func TestHundredMegabyteBodyRefusedEarly(t *testing.T) {
	m := startMatrix(t, 0)
	m.register("matrix-big")
	const size = 100 << 20
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			before := m.snapshot()
			var sent atomic.Int64
			gen := &endless{n: size, counter: &sent}
			req, _ := http.NewRequest("POST", m.app.URL+config.WebhookPath, gen)
			if chunked {
				req.ContentLength = -1
			} else {
				req.ContentLength = size
			}
			req.Header = hook(matrixKey, "msg_big", time.Now(), nil)

			runtime.GC()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			resp, err := m.client.Do(req)
			runtime.ReadMemStats(&ms1)
			if err != nil {
				// The server may close the connection while the client is
				// still sending; then no answer can be read. That is a
				// refusal too, but the test wants to see the 413.
				t.Fatalf("no answer: %v (sent %d bytes)", err, sent.Load())
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || !strings.Contains(string(b), "TRAINHOOK_MAX_BODY") {
				t.Fatalf("got %d %s", resp.StatusCode, b)
			}
			allocated := ms1.TotalAlloc - ms0.TotalAlloc
			t.Logf("sent %d of %d bytes; the process allocated %d KiB meanwhile; heap in use %d → %d KiB",
				sent.Load(), size, allocated>>10, ms0.HeapInuse>>10, ms1.HeapInuse>>10)
			if allocated > 16<<20 {
				t.Errorf("the process allocated %d MiB while refusing a body limited to 1 MiB", allocated>>20)
			}
			if sent.Load() > 32<<20 {
				t.Errorf("the server read %d MiB of a body it had to refuse", sent.Load()>>20)
			}
			if diff := sameSnapshot(before, m.snapshot()); diff != "" {
				t.Errorf("the database changed: %s", diff)
			}
		})
	}
}

// A client that sends its body slowly is cut off by the server's
// ReadTimeout, and nothing is stored. The test sets TRAINHOOK_READ_TIMEOUT
// to 2 s (the default is 60 s).
func TestSlowLorisBodyIsCutOff(t *testing.T) {
	m := startMatrix(t, 2*time.Second)
	m.register("matrix-slow")
	before := m.snapshot()
	body := trainingBody("matrix-slow", "succeeded", "")
	h := hook(matrixKey, "msg_slow", time.Now(), body)

	conn, err := net.Dial("tcp", strings.TrimPrefix(m.app.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var head bytes.Buffer
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n", config.WebhookPath, len(body))
	for k, v := range h {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v[0])
	}
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// One byte a second: the body would take minutes.
	answered := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		answered <- line
	}()
	var writeErr error
	for i := 0; i < len(body) && writeErr == nil; i++ {
		select {
		case line := <-answered:
			elapsed := time.Since(start)
			t.Logf("answered %q after %s and %d bytes", strings.TrimSpace(line), elapsed.Round(time.Millisecond), i)
			if elapsed > 5*time.Second {
				t.Errorf("cut off after %s, want about the 2 s ReadTimeout", elapsed)
			}
			if line != "" && !strings.Contains(line, " 400 ") {
				t.Errorf("answer %q, want 400 (could not read the body) or a closed connection", line)
			}
			if diff := sameSnapshot(before, m.snapshot()); diff != "" {
				t.Errorf("the database changed: %s", diff)
			}
			return
		case <-time.After(time.Second):
		}
		_, writeErr = conn.Write(body[i : i+1])
	}
	if !errors.Is(writeErr, nil) && time.Since(start) < 5*time.Second {
		return // the server closed the connection in time
	}
	t.Fatalf("the server was still reading a slow body after %s", time.Since(start))
}
