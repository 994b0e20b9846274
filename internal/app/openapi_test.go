package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/openapi"
	"github.com/trainhook/trainhook/internal/training"
)

// Every answer the end-to-end tests of this package receive over HTTP is
// checked against the OpenAPI document: the clients of these tests use
// app.TestTransport, which TestMain wraps. An answer whose route the
// document lists must have a documented status and a body that validates;
// the package fails otherwise, naming the request. Routes the document does
// not list are the route test's business (internal/openapi).
func TestMain(m *testing.M) {
	v, err := newValidator(app.TestTransport)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	app.TestTransport = v
	code := m.Run()
	if fails := v.failures(); len(fails) > 0 {
		fmt.Fprintf(os.Stderr, "\n%d answers do not match the OpenAPI document (internal/openapi/openapi.json):\n", len(fails))
		for _, f := range fails {
			fmt.Fprintln(os.Stderr, "  "+f)
		}
		code = 1
	}
	os.Exit(code)
}

type validator struct {
	next   http.RoundTripper
	router routers.Router

	mu    sync.Mutex
	fails []string
	seen  map[string]int // "METHOD path-template STATUS" → answers validated
}

var docValidator *validator

func newValidator(next http.RoundTripper) (*validator, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		return nil, fmt.Errorf("load the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	docValidator = &validator{next: next, router: r, seen: map[string]int{}}
	return docValidator, nil
}

func (v *validator) failures() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.fails...)
}

// validated reports how many answers of an operation and status were checked;
// key is "METHOD path STATUS", the path without a trailing slash.
func (v *validator) validated(key string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seen[key]
}

func (v *validator) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.next.RoundTrip(req)
	if err != nil || req.Method == http.MethodHead {
		return resp, err
	}
	route, params, ferr := v.router.FindRoute(req)
	if ferr != nil {
		return resp, nil // not a documented route or method
	}
	// kin-openapi's router lets a path parameter match nothing: DELETE
	// /api/models would be DELETE /api/models/{id} with an empty id. The
	// server never routes an empty segment to a parameter.
	for _, v := range params {
		if v == "" {
			return resp, nil
		}
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	// An event stream does not end: its status and media type are checked,
	// not its body.
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		input.Options.ExcludeResponseBody = true
		input.SetBodyBytes(nil)
	} else {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			return resp, nil // the test sees the same error reading it
		}
		input.SetBodyBytes(body)
	}
	verr := openapi3filter.ValidateResponse(req.Context(), input)
	v.mu.Lock()
	defer v.mu.Unlock()
	if verr != nil {
		v.fails = append(v.fails, fmt.Sprintf("%s %s → %d: %v", req.Method, req.URL.Path, resp.StatusCode, verr))
	} else {
		v.seen[fmt.Sprintf("%s %s %d", req.Method, strings.TrimSuffix(route.Path, "/"), resp.StatusCode)]++
	}
	return resp, nil
}

// One pass over every operation in the document, against a server in
// webhook mode with the simulator: each documented success answer, and the
// error answers a client meets most, are received and validate.
func TestAnswersValidateAgainstOpenAPI(t *testing.T) {
	t.Parallel()
	const token = "openapi-test-api-token-0123456789abcdef"
	// The app's notification receiver: every notification is taken.
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	s, sim := withSim(t, "on", fakereplicate.Options{}, map[string]string{
		"TRAINHOOK_API_TOKEN": token, "TRAINHOOK_NOTIFY_URL": rcv.URL, "TRAINHOOK_NOTIFY_SECRET": notifySecret,
	})
	json := http.Header{"Content-Type": {"application/json"}}
	expect := func(r response, code int, what string) response {
		t.Helper()
		if r.code != code {
			t.Fatalf("%s: %d %s, want %d", what, r.code, r.body, code)
		}
		return r
	}

	expect(s.do("GET", "/healthz", nil, nil), 200, "healthz")
	expect(s.do("GET", "/readyz", nil, nil), 200, "readyz")
	expect(s.do("GET", "/metrics", nil, nil), 200, "metrics")
	expect(s.do("GET", "/metrics", nil, http.Header{"Authorization": {"Bearer wrong"}}), 401, "metrics, wrong token")
	expect(s.do("GET", openapi.Path, nil, http.Header{"Authorization": {"Bearer wrong"}}), 200, "the document needs no token")
	expect(s.do("GET", "/api/status", nil, nil), 200, "status")

	// Models: start one through the simulator, register one, and the errors.
	code, started, body := s.startTraining(startBody("openapi-lora"), http.Header{"Idempotency-Key": {"openapi-1"}})
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	code, _, body = s.startTraining(startBody("openapi-lora"), http.Header{"Idempotency-Key": {"openapi-1"}})
	if code != 200 {
		t.Fatalf("replayed start: %d %s", code, body)
	}
	reg := s.register("openapi-registered-1")
	expect(s.do("POST", "/api/models", []byte(`{"training_id":"openapi-registered-1"}`), json), 409, "register twice")
	expect(s.do("POST", "/api/models", []byte(`{"training_id":"x","colour":"red"}`), json), 400, "unknown field")
	expect(s.do("POST", "/api/models", []byte(`{}`), http.Header{"Authorization": {"Bearer wrong"}, "Content-Type": {"application/json"}}), 401, "wrong token")
	expect(s.do("POST", "/api/models", []byte(`{"trainer":"nobody/missing","destination":"trainhook-sim/openapi-refused","input":{}}`), json), 422, "a trainer Replicate does not have")
	expect(s.do("GET", "/api/models", nil, nil), 200, "list")
	expect(s.do("GET", "/api/models?status=Pending&limit=1", nil, nil), 200, "list, filtered")
	expect(s.do("GET", "/api/models?limit=0", nil, nil), 400, "list, limit 0")
	expect(s.do("GET", "/api/models/"+reg.ID, nil, nil), 200, "get")
	expect(s.do("GET", "/api/models/nope", nil, nil), 404, "get, unknown id")
	expect(s.do("POST", "/api/models/"+reg.ID+"/cancel", nil, nil), 200, "cancel a training Replicate does not know")
	expect(s.do("POST", "/api/models/nope/cancel", nil, nil), 404, "cancel, unknown id")
	expect(s.do("GET", "/api/models/"+started.ID+"/webhook", nil, nil), 200, "model webhook")
	expect(s.do("GET", "/api/models/nope/webhook", nil, nil), 404, "model webhook, unknown id")

	// The event stream: its answer's status and media type.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	resp.Body.Close()
	cancel()

	// The training runs to Ready through the simulator's webhooks.
	s.waitFinal(started.ID)
	code, second, body := s.startTraining(startBody("openapi-cancel"), nil)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.model(second.ID).Status == training.Pending && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	r := s.do("POST", "/api/models/"+second.ID+"/cancel", nil, nil)
	if r.code != 200 && r.code != 202 {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}

	// Retry the canceled model, and remove the finished ones.
	s.waitFinal(second.ID)
	expect(s.do("POST", "/api/models/"+second.ID+"/retry", nil, nil), 201, "retry")
	expect(s.do("POST", "/api/models/"+started.ID+"/retry", nil, nil), 409, "retry a Ready model")
	expect(s.do("DELETE", "/api/models/"+second.ID, nil, nil), 200, "remove")
	expect(s.do("DELETE", "/api/models/nope", nil, nil), 404, "remove, unknown id")
	expect(s.do("GET", "/api/models?archived=true&include=logs", nil, nil), 200, "list, removed too, with logs")

	// Notifications: the first model's move to Ready was sent to the app.
	var notes struct {
		Notifications []struct {
			ID int64 `json:"id"`
		} `json:"notifications"`
	}
	expect(s.do("GET", "/api/notifications?model="+started.ID+"&limit=10", nil, nil), 200, "notifications").json(t, &notes)
	expect(s.do("GET", "/api/notifications?status=lost", nil, nil), 400, "notifications, bad status")
	if len(notes.Notifications) == 0 {
		t.Fatal("no notification listed for a model that became Ready")
	}
	nid := fmt.Sprint(notes.Notifications[0].ID)
	expect(s.do("GET", "/api/notifications/"+nid, nil, nil), 200, "notification")
	expect(s.do("GET", "/api/notifications/999999999", nil, nil), 404, "notification, unknown id")
	expect(s.do("POST", "/api/notifications/"+nid+"/resend", nil, nil), 202, "resend")

	// Webhook intake: applied, refused, wrong method, wrong media type.
	b := payload("openapi-registered-1", "succeeded")
	expect(s.do("POST", "/api/webhooks/replicate/completed", b, signed(sim.Key(), "msg_openapi_1", time.Now(), b)), 200, "webhook")
	expect(s.do("POST", "/api/webhooks/replicate/completed/", b, signed(sim.Key(), "msg_openapi_1", time.Now(), b)), 200, "webhook, trailing slash, duplicate")
	expect(s.do("POST", "/api/webhooks/replicate/completed", b, signed(testKey, "msg_openapi_2", time.Now(), b)), 401, "webhook, wrong key")
	expect(s.do("GET", "/api/webhooks/replicate/completed", nil, nil), 405, "webhook, GET")
	h := signed(sim.Key(), "msg_openapi_3", time.Now(), b)
	h.Set("Content-Type", "text/plain")
	expect(s.do("POST", "/api/webhooks/replicate/completed", b, h), 415, "webhook, text/plain")

	// Deliveries.
	var page struct {
		Deliveries []training.Delivery `json:"deliveries"`
	}
	expect(s.do("GET", "/api/deliveries?limit=200", nil, nil), 200, "deliveries").json(t, &page)
	expect(s.do("GET", "/api/deliveries?verified=false&outcome=refused", nil, nil), 200, "deliveries, filtered")
	expect(s.do("GET", "/api/deliveries?verified=maybe", nil, nil), 400, "deliveries, bad filter")
	if len(page.Deliveries) == 0 {
		t.Fatal("no deliveries listed")
	}
	id := fmt.Sprint(page.Deliveries[0].ID)
	expect(s.do("GET", "/api/deliveries/"+id, nil, nil), 200, "delivery")
	expect(s.do("GET", "/api/deliveries/999999999", nil, nil), 404, "delivery, unknown id")
	expect(s.do("POST", "/api/deliveries/"+id+"/replay", nil, nil), 200, "replay")

	// Every operation of the document had a success answer validated. The
	// router of kin-openapi matches a path with and without its trailing
	// slash alike, so the webhook's two paths count as one.
	var missing []string
	for path, item := range mustLoad(t).Paths.Map() {
		for method, op := range item.Operations() {
			ok := false
			for status := range op.Responses.Map() {
				if strings.HasPrefix(status, "2") && docValidator.validated(fmt.Sprintf("%s %s %s", method, strings.TrimSuffix(path, "/"), status)) > 0 {
					ok = true
				}
			}
			if !ok {
				missing = append(missing, method+" "+path)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no success answer of these operations was validated: %v", missing)
	}
	if fails := docValidator.failures(); len(fails) > 0 {
		t.Errorf("answers that do not match the document:\n%s", strings.Join(fails, "\n"))
	}
}

func mustLoad(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatal(err)
	}
	return doc
}
