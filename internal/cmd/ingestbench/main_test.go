package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// testSecret is a fixed test key (REPLICATE.md §5's vector), not a real one.
const testSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

// stub stands in for `trainhook serve`: the three routes ingestbench uses,
// with signatures checked by the real verifier and statuses in a map.
type stub struct {
	keys      replicate.Keys
	token     string
	failEvery int64         // answer 500, storing nothing, to every failEvery-th delivery
	delay     time.Duration // before answering a delivery

	mu         sync.Mutex
	models     map[string]*training.Model // by model id
	byTraining map[string]string          // training id -> model id
	webhookIDs map[string]int
	created    map[string]int // model id -> its place in creation order
	sent       []int          // created[model] of each delivery, as they came
	deliveries atomic.Int64
	newConns   atomic.Int64
}

func newStub(t *testing.T) (*stub, *httptest.Server) {
	t.Helper()
	keys, err := replicate.ParseKeys(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	s := &stub{keys: keys, models: map[string]*training.Model{}, byTraining: map[string]string{}, webhookIDs: map[string]int{}, created: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/models", s.auth(s.createModel))
	mux.HandleFunc("GET /api/models/{id}", s.auth(s.getModel))
	mux.HandleFunc("POST /api/webhooks/replicate/completed", s.webhook)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewUnstartedServer(mux) // listens on 127.0.0.1
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.newConns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *stub) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (s *stub) createModel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name       string          `json:"name"`
		TrainingID string          `json:"training_id"`
		Metadata   json.RawMessage `json:"metadata"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Name == "" {
		http.Error(w, "bad model", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.byTraining[in.TrainingID]; dup {
		http.Error(w, "duplicate training id", http.StatusConflict)
		return
	}
	m := &training.Model{ID: training.NewID(time.Now()), Name: in.Name, TrainingID: in.TrainingID, Metadata: in.Metadata, Status: training.Pending}
	s.models[m.ID] = m
	s.byTraining[in.TrainingID] = m.ID
	s.created[m.ID] = len(s.created)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(m)
}

func (s *stub) getModel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	m, ok := s.models[r.PathValue("id")]
	var out []byte
	if ok {
		out, _ = json.Marshal(struct {
			*training.Model
			History []any `json:"history"`
		}{m, []any{}})
	}
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func (s *stub) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 10<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if err := s.keys.Verify(r.Header, body, time.Now()); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	n := s.deliveries.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if s.failEvery > 0 && n%s.failEvery == 0 {
		http.Error(w, "database is locked", http.StatusInternalServerError)
		return
	}
	tr, err := replicate.ParseTraining(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.webhookIDs[r.Header.Get(replicate.HeaderID)]++
	m, ok := s.models[s.byTraining[tr.ID]]
	if !ok {
		http.Error(w, "unknown training", http.StatusNotFound)
		return
	}
	s.sent = append(s.sent, s.created[m.ID])
	if to, d := training.Transition(m.Status, tr.Status); d == training.Move {
		m.Status, m.Output, m.RemoteStatus = to, tr.Output, tr.Status
	}
	w.WriteHeader(http.StatusOK)
}

func testOptions(srv *httptest.Server, n int) Options {
	keys, _ := replicate.ParseKeys(testSecret)
	return Options{URL: srv.URL, Key: keys[0], N: n, Concurrency: 8, PayloadBytes: 4096, DurationMax: time.Minute}
}

func TestRunAgainstStub(t *testing.T) {
	s, srv := newStub(t)
	o := testOptions(srv, 300)
	o.PID = os.Getpid() // the stub runs in this process
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed() {
		t.Fatalf("not passed: %+v", res)
	}
	if res.Registered != 300 || res.Sent != 300 || res.OK != 300 || res.Failed != 0 || res.Errors != nil {
		t.Errorf("counts: %+v", res)
	}
	if res.Verify.Checked != 300 || res.Verify.Ready != 300 || res.Verify.ByStatus["Ready"] != 300 || res.Verify.Problems != nil {
		t.Errorf("verify: %+v", res.Verify)
	}
	if res.DeliveriesPerSec <= 0 || res.Seconds <= 0 || res.Latency.P50 <= 0 ||
		!(res.Latency.P50 <= res.Latency.P90 && res.Latency.P90 <= res.Latency.P99 && res.Latency.P99 <= res.Latency.Max) {
		t.Errorf("figures: %+v", res)
	}
	if res.PayloadBytes < 4096 || res.PayloadBytes > 4096+200 {
		t.Errorf("payload %d bytes, want about 4096", res.PayloadBytes)
	}
	if res.Server == nil || res.Server.PID != o.PID || res.Server.PeakRSSBytes <= 0 || res.Server.CPUSeconds < 0 ||
		res.Server.ReadKiBPerDelivery < 4 || res.Server.WrittenKiBPerDelivery <= 0 { // each delivery's ~4 KiB body is read
		t.Errorf("server stats: %+v", res.Server)
	}
	// Every delivery had its own webhook-id, and the server saw each once.
	if len(s.webhookIDs) != 300 {
		t.Errorf("%d distinct webhook ids, want 300", len(s.webhookIDs))
	}
	for id, n := range s.webhookIDs {
		if n != 1 || !strings.HasPrefix(id, "msg_") {
			t.Errorf("webhook id %q seen %d times", id, n)
		}
	}
	// Training ids look like Replicate's: 26 lower-case characters.
	for _, m := range s.models {
		if len(m.TrainingID) != 26 || strings.ToLower(m.TrainingID) != m.TrainingID {
			t.Errorf("training id %q", m.TrainingID)
		}
	}
	// Connections are reused: no more than one per worker for registering
	// and verifying (net/http's pool) and one per worker for the timed
	// deliveries (their own connections).
	if n := s.newConns.Load(); n > 2*int64(o.Concurrency) {
		t.Errorf("opened %d connections for concurrency %d, want at most %d", n, o.Concurrency, 2*o.Concurrency)
	}
}

// TestRunOrder: in random order every model still gets its one delivery,
// but they no longer come in the order the models were created.
func TestRunOrder(t *testing.T) {
	descents := func(order string) float64 {
		s, srv := newStub(t)
		o := testOptions(srv, 400)
		o.Concurrency = 1 // so the stub sees the order they were sent in
		o.Order = order
		res, err := Run(context.Background(), o)
		if err != nil || !res.Passed() || res.Order != order {
			t.Fatalf("%s order: %v, %+v", order, err, res)
		}
		d := 0
		for i := 1; i < len(s.sent); i++ {
			if s.sent[i] < s.sent[i-1] {
				d++
			}
		}
		return float64(d) / float64(len(s.sent)-1)
	}
	if f := descents(OrderRegistration); f != 0 {
		t.Errorf("registration order: %.2f of deliveries came before the previous one's model", f)
	}
	if f := descents(OrderRandom); f < 0.35 || f > 0.65 {
		t.Errorf("random order: %.2f of deliveries came before the previous one's model, want about half", f)
	}
	if _, err := Run(context.Background(), Options{URL: "http://127.0.0.1:1", N: 1, Concurrency: 1, DurationMax: time.Second, Order: "sorted"}); err == nil || !strings.Contains(err.Error(), "--order") {
		t.Errorf("bad --order: %v", err)
	}
}

func TestRunToken(t *testing.T) {
	s, srv := newStub(t)
	s.token = "bench-token"
	o := testOptions(srv, 20)
	_, err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--token") {
		t.Errorf("without token: %v", err)
	}
	o.Token = "bench-token"
	res, err := Run(context.Background(), o)
	if err != nil || !res.Passed() {
		t.Errorf("with token: %v %+v", err, res)
	}
}

func TestRunReportsFailures(t *testing.T) {
	s, srv := newStub(t)
	s.failEvery = 10
	res, err := Run(context.Background(), testOptions(srv, 100))
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed() {
		t.Fatal("passed although a tenth of the deliveries failed")
	}
	if res.OK != 90 || res.Failed != 10 || res.Errors["500"] != 10 || !strings.Contains(res.FirstError, "500 Internal Server Error: database is locked") {
		t.Errorf("errors: %+v", res)
	}
	if res.Verify.Checked != 100 || res.Verify.Ready != 90 || res.Verify.ByStatus["Pending"] != 10 || len(res.Verify.Problems) != maxProblems {
		t.Errorf("verify: %+v", res.Verify)
	}
	if !strings.Contains(res.Verify.Problems[0], "status Pending, want Ready") {
		t.Errorf("problem: %s", res.Verify.Problems[0])
	}
}

func TestRunWrongSecret(t *testing.T) {
	_, srv := newStub(t)
	o := testOptions(srv, 10)
	other, err := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	o.Key = other
	res, err := Run(context.Background(), o)
	if err != nil || res.Passed() || res.Errors["401"] != 10 || res.Verify.Ready != 0 {
		t.Errorf("wrong secret: %v %+v", err, res)
	}
}

func TestRunDurationMax(t *testing.T) {
	s, srv := newStub(t)
	s.delay = 100 * time.Millisecond
	o := testOptions(srv, 1000)
	o.Concurrency = 2
	o.DurationMax = 700 * time.Millisecond
	start := time.Now()
	res, err := Run(context.Background(), o)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s with --duration-max %s", took, o.DurationMax)
	}
	if err == nil || !res.TimedOut || res.Passed() || !strings.Contains(err.Error(), "--duration-max") {
		t.Errorf("got %v, %+v", err, res)
	}
}

// The bound holds in every phase, and the error says which: here the
// registration alone takes longer than --duration-max.
func TestRunDurationMaxWhileRegistering(t *testing.T) {
	_, srv := newStub(t)
	o := testOptions(srv, 100000)
	o.Concurrency = 1
	o.DurationMax = 200 * time.Millisecond
	res, err := Run(context.Background(), o)
	if err == nil || !res.TimedOut || !strings.Contains(err.Error(), "--duration-max 200ms reached while registering models") {
		t.Errorf("got %v, %+v", err, res)
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{
		"http://127.0.0.1:8080", "http://127.0.0.1:8080/", "http://127.9.9.9:1", "http://[::1]:8080",
		"http://localhost:8080", "http://LOCALHOST", "https://127.0.0.1:8443/prefix", "http://[::ffff:127.0.0.1]:80",
	} {
		if _, err := checkURL(u); err != nil {
			t.Errorf("checkURL(%q): %v", u, err)
		}
	}
	for _, u := range []string{
		"http://example.com", "http://10.0.0.1:8080", "http://192.168.1.2", "http://0.0.0.0:8080", "http://[::]:8080",
		"http://localhost.example.com", "http://127.0.0.1.nip.io", "http://[::ffff:10.0.0.1]", "http://[fe80::1%25lo]:80",
		"ftp://127.0.0.1", "127.0.0.1:8080", "http://user:pw@127.0.0.1", "http://127.0.0.1/?x=1", "",
	} {
		if _, err := checkURL(u); err == nil {
			t.Errorf("checkURL(%q) accepted", u)
		}
	}
}

// TestClientStaysOnBase checks the client cannot be led anywhere else: not
// by another URL, nor by a redirect.
func TestClientStaysOnBase(t *testing.T) {
	var hits atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer other.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, other.URL+"/x", http.StatusFound) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	base, err := checkURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(base, 4)
	resp, err := c.Get(srv.URL + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("redirect followed: %d", resp.StatusCode)
	}
	if _, err := c.Get(other.URL); err == nil || !strings.Contains(err.Error(), "refusing to dial") {
		t.Errorf("dialled another address: %v", err)
	}
	if hits.Load() != 0 {
		t.Errorf("the other server was reached %d times", hits.Load())
	}
}

func TestPayload(t *testing.T) {
	now := time.Now()
	for _, target := range []int{0, 2048, 4096, 65536, 1 << 20} {
		p, err := newPayload(target, "http://127.0.0.1:8080/api/webhooks/replicate/completed", now)
		if err != nil {
			t.Fatal(err)
		}
		tid := training.NewID(now)
		body := p.body(tid)
		if len(body) != p.size {
			t.Errorf("target %d: body %d bytes, size says %d", target, len(body), p.size)
		}
		if target > 2048 && (len(body) < target || len(body) > target+200) {
			t.Errorf("target %d: body is %d bytes", target, len(body))
		}
		if bytes.Contains(body, []byte(placeholder)) {
			t.Errorf("target %d: placeholder left in body", target)
		}
		tr, err := replicate.ParseTraining(body)
		if err != nil {
			t.Fatalf("target %d: %v", target, err)
		}
		var out replicate.TrainingOutput
		if err := json.Unmarshal(tr.Output, &out); err != nil {
			t.Fatal(err)
		}
		if tr.ID != tid || tr.Status != "succeeded" || !tr.Terminal() || out.Version != expectedVersion(tid) || out.Weights != expectedWeights(tid) ||
			tr.URLs["get"] != "https://api.replicate.com/v1/trainings/"+tid || tr.CompletedAt == nil || tr.ErrorText() != "" {
			t.Errorf("target %d: %+v", target, tr)
		}
		if prog, ok := training.ParseProgress(tr.Logs); target > 2048 && (!ok || prog.Percent != 100 || prog.Step != 1000) {
			t.Errorf("target %d: progress %+v %v", target, prog, ok)
		}
	}
}

func TestProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu < 0 {
		t.Errorf("procCPU: %v %v", cpu, err)
	}
	rss, err := procPeakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("procPeakRSS: %v %v", rss, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Error("procCPU(-1) succeeded")
	}
	r0, w0, err := procIO(os.Getpid())
	if err != nil {
		t.Fatalf("procIO: %v", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "io")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 32<<10), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r1, w1, err := procIO(os.Getpid())
	if err != nil || r1-r0 < 32<<10 || w1-w0 < 64<<10 {
		t.Errorf("procIO after reading 32 KiB and writing 64 KiB: read %d, written %d more (%v)", r1-r0, w1-w0, err)
	}
	if _, _, err := procIO(-1); err == nil {
		t.Error("procIO(-1) succeeded")
	}
}

func TestPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(ds)
	if want := (Latency{P50: 50, P90: 90, P99: 99, Max: 100}); got != want {
		t.Errorf("percentiles = %+v, want %+v", got, want)
	}
	if got := percentiles([]time.Duration{3 * time.Millisecond}); got != (Latency{3, 3, 3, 3}) {
		t.Errorf("one sample: %+v", got)
	}
	if got := percentiles(nil); got != (Latency{}) {
		t.Errorf("none: %+v", got)
	}
}

func TestCommand(t *testing.T) {
	_, srv := newStub(t)
	env := func(k string) string {
		if k == "REPLICATE_WEBHOOK_SECRET" {
			return testSecret
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--url", srv.URL, "--n", "50", "--concurrency", "4", "--json", "--pid", strconv.Itoa(os.Getpid())}, env, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	var out struct {
		Result
		Passed bool `json:"passed"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if !out.Passed || out.OK != 50 || out.Server == nil || out.Server.PeakRSSBytes == 0 || out.Latency.Max == 0 {
		t.Errorf("json: %s", stdout.String())
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"--url", srv.URL, "--n", "20", "--secret", testSecret}, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("text: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"deliveries/s", "p50", "p99", "verified    20 of 20", "PASS"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout.String())
		}
	}

	for _, args := range [][]string{
		{"--url", "http://example.com:8080"},
		{"--url", srv.URL, "--n", "0"},
		{"--url", srv.URL, "--concurrency", "0"},
		{"--url", srv.URL, "--secret", "not-a-key"},
		{"--url", srv.URL, "--pid", "-5"},
		{"--bogus"},
		{"extra"},
	} {
		if code := run(context.Background(), args, env, io.Discard, io.Discard); code != 2 {
			t.Errorf("run(%v) = %d, want 2", args, code)
		}
	}
	if code := run(context.Background(), []string{"--url", srv.URL}, func(string) string { return "" }, io.Discard, io.Discard); code != 2 {
		t.Errorf("no secret: exit %d, want 2", code)
	}
}

func TestCommandFails(t *testing.T) {
	s, srv := newStub(t)
	s.failEvery = 3
	var stdout bytes.Buffer
	args := []string{"--url", srv.URL, "--n", "30", "--secret", testSecret}
	if code := run(context.Background(), args, func(string) string { return "" }, &stdout, io.Discard); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stdout.String(), "500: 10") || !strings.Contains(stdout.String(), "FAIL") {
		t.Errorf("report:\n%s", stdout.String())
	}
}
