package replicate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
)

const (
	simToken = "r8_client_test"
	trainer  = fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion
)

var start = time.Date(2025, 3, 4, 10, 15, 2, 118_000_000, time.UTC)

// harness is a simulator on loopback and a client whose clock is the
// simulator's: the client's waits (backoff, Retry-After, rate limit)
// advance the clock instead of sleeping.
type harness struct {
	sim    *fakereplicate.Server
	base   string
	clock  *fakereplicate.ManualClock
	client *replicate.Client

	mu     sync.Mutex
	sleeps []time.Duration
	calls  []string // "endpoint outcome"
}

func newHarness(t *testing.T, so fakereplicate.Options, co replicate.ClientOptions) *harness {
	t.Helper()
	h := &harness{clock: fakereplicate.NewManualClock(start)}
	so.Clock, so.Token, so.Seed = h.clock, simToken, 1
	if so.Duration == 0 {
		so.Duration = 100 * time.Second
	}
	sim, err := fakereplicate.New(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.sim, h.base = sim, base
	if co.BaseURL == "" {
		co.BaseURL = base
	}
	if co.Token == "" {
		co.Token = simToken
	}
	co.Now = h.clock.Now
	co.Sleep = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.mu.Unlock()
		h.clock.Advance(d)
		return ctx.Err()
	}
	co.Jitter = func(time.Duration) time.Duration { return 0 }
	if co.Limiter == nil && co.RateLimit == 0 {
		// Tests that are not about pacing record only retry waits.
		co.Limiter = noLimit{}
	}
	co.OnCall = func(endpoint, outcome string, _ time.Duration) {
		h.mu.Lock()
		h.calls = append(h.calls, endpoint+" "+outcome)
		h.mu.Unlock()
	}
	c, err := replicate.NewClient(co)
	if err != nil {
		t.Fatal(err)
	}
	h.client = c
	return h
}

func (h *harness) recorded() (sleeps []time.Duration, calls []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sleeps), slices.Clone(h.calls)
}

func (h *harness) reset() {
	h.mu.Lock()
	h.sleeps, h.calls = nil, nil
	h.mu.Unlock()
	h.sim.ResetStats()
}

func (h *harness) destination(t *testing.T, name string) string {
	t.Helper()
	m, err := h.client.CreateModel(context.Background(), replicate.CreateModelRequest{Owner: h.sim.Username(), Name: name, Visibility: "private", Hardware: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	return m.Owner + "/" + m.Name
}

type noLimit struct{}

func (noLimit) Wait(ctx context.Context) error { return ctx.Err() }

func input() map[string]any {
	return map[string]any{"input_images": "https://example.com/data.zip", "trigger_word": "ZKX", "steps": 1000}
}

func TestClientCalls(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{})
	ctx := context.Background()
	c := h.client

	acct, err := c.Account(ctx)
	if err != nil || acct.Username != "trainhook-sim" || acct.Type != "user" {
		t.Fatalf("Account = %+v, %v", acct, err)
	}
	m, err := c.GetModel(ctx, "ostris", "flux-dev-lora-trainer")
	if err != nil || m.Owner != "ostris" || m.LatestVersion == nil || m.LatestVersion.ID != fakereplicate.FluxTrainerVersion || m.LatestVersion.CreatedAt == nil {
		t.Fatalf("GetModel = %+v, %v", m, err)
	}
	v, err := c.LatestVersion(ctx, "ostris", "flux-dev-lora-trainer")
	if err != nil || v.ID != fakereplicate.FluxTrainerVersion {
		t.Fatalf("LatestVersion = %+v, %v", v, err)
	}

	created, err := c.CreateModel(ctx, replicate.CreateModelRequest{Owner: acct.Username, Name: "portrait-lora", Visibility: "private", Hardware: "cpu", Description: "LoRA fine-tunes"})
	if err != nil || created.Name != "portrait-lora" || created.Description != "LoRA fine-tunes" || created.LatestVersion != nil {
		t.Fatalf("CreateModel = %+v, %v", created, err)
	}
	_, err = c.CreateModel(ctx, replicate.CreateModelRequest{Owner: acct.Username, Name: "portrait-lora", Visibility: "private", Hardware: "cpu"})
	if !replicate.IsConflict(err) || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second CreateModel: %v, want a conflict", err)
	}
	if _, err := c.LatestVersion(ctx, acct.Username, "portrait-lora"); !errors.Is(err, replicate.ErrNoVersion) {
		t.Errorf("LatestVersion of a new model: %v, want ErrNoVersion", err)
	}
	dest := acct.Username + "/portrait-lora"

	tr, err := c.CreateTraining(ctx, "ostris/flux-dev-lora-trainer:"+v.ID, replicate.CreateTrainingRequest{
		Destination: dest, Input: input(), Webhook: "http://127.0.0.1:1/hook?job=1", WebhookEventsFilter: []string{replicate.EventCompleted},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.ID) != 26 || tr.Status != "starting" || tr.Model != fakereplicate.FluxTrainer || tr.Version != v.ID || tr.CreatedAt == nil || tr.Webhook != "http://127.0.0.1:1/hook?job=1" {
		t.Errorf("CreateTraining = %+v", tr)
	}
	var echoed map[string]any
	if json.Unmarshal(tr.Input, &echoed) != nil || echoed["trigger_word"] != "ZKX" {
		t.Errorf("input echoed as %s", tr.Input)
	}
	// Input may also be raw JSON.
	raw, err := c.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: h.destination(t, "other"), Input: json.RawMessage(`{"steps": 10}`)})
	if err != nil || string(raw.Input) != `{"steps":10}` {
		t.Errorf("CreateTraining with raw input: %s, %v", raw.Input, err)
	}

	got, err := c.GetTraining(ctx, tr.ID)
	if err != nil || got.ID != tr.ID || got.Status != "starting" {
		t.Fatalf("GetTraining = %+v, %v", got, err)
	}
	// Created with 9 fractional digits, read back with 6: the same instant.
	if !tr.CreatedAt.Truncate(time.Microsecond).Equal(*got.CreatedAt) {
		t.Errorf("created_at %v on create, %v on GET", tr.CreatedAt, got.CreatedAt)
	}
	if p, err := c.GetPrediction(ctx, tr.ID); err != nil || p.ID != tr.ID {
		t.Errorf("GetPrediction(training id) = %+v, %v", p, err)
	}

	h.clock.Advance(100 * time.Second)
	done, err := c.GetTraining(ctx, tr.ID)
	if err != nil || done.Status != "succeeded" || !done.Terminal() || done.Metrics == nil || done.Metrics.PredictTime == nil {
		t.Fatalf("finished training = %+v, %v", done, err)
	}
	var out replicate.TrainingOutput
	if err := json.Unmarshal(done.Output, &out); err != nil || !strings.HasPrefix(out.Version, dest+":") || !strings.HasSuffix(out.Weights, ".tar") {
		t.Errorf("output %s", done.Output)
	}
	if lv, err := c.LatestVersion(ctx, h.sim.Username(), "portrait-lora"); err != nil || dest+":"+lv.ID != out.Version {
		t.Errorf("destination's latest version %+v, %v; want the trained %s", lv, err, out.Version)
	}

	running, err := c.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: dest, Input: input()})
	if err != nil {
		t.Fatal(err)
	}
	canceled, err := c.CancelTraining(ctx, running.ID)
	if err != nil || canceled.Status != "canceled" || canceled.CompletedAt == nil {
		t.Errorf("CancelTraining = %+v, %v", canceled, err)
	}
	if again, err := c.CancelTraining(ctx, running.ID); err != nil || again.Status != "canceled" {
		t.Errorf("second CancelTraining = %s, %v", again.Status, err)
	}

	key, err := c.WebhookSecret(ctx)
	if err != nil || !key.Equal(h.sim.Key()) {
		t.Errorf("WebhookSecret: %v (fingerprint %s, want %s)", err, key.Fingerprint(), h.sim.Key().Fingerprint())
	}
}

func TestClientErrors(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{})
	ctx := context.Background()
	dest := h.destination(t, "d")

	_, err := h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: h.sim.Username() + "/missing", Input: input()})
	var apiErr *replicate.APIError
	if !replicate.IsNotFound(err) || !errors.As(err, &apiErr) || apiErr.Detail != "The specified training destination does not exist" ||
		!strings.Contains(err.Error(), "the destination model does not exist") {
		t.Errorf("missing destination: %v", err)
	}
	_, err = h.client.CreateTraining(ctx, "ostris/flux-dev-lora-trainer:"+strings.Repeat("0", 64), replicate.CreateTrainingRequest{Destination: dest, Input: input()})
	if !replicate.IsInvalid(err) || !errors.As(err, &apiErr) || apiErr.Title != "Invalid version or not permitted" {
		t.Errorf("unknown version: %v", err)
	}
	_, err = h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: "no-slash", Input: input()})
	if !errors.As(err, &apiErr) || len(apiErr.InvalidFields) != 1 || apiErr.InvalidFields[0].Field != "destination" || !strings.Contains(err.Error(), "destination must be in the form owner/name") {
		t.Errorf("malformed destination: %v", err)
	}
	if _, err := h.client.GetTraining(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaa"); !replicate.IsNotFound(err) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := h.client.GetModel(ctx, "nobody", "nothing"); !replicate.IsNotFound(err) {
		t.Errorf("unknown model: %v", err)
	}

	h.reset()
	for _, bad := range []func() error{
		func() error { _, err := h.client.GetTraining(ctx, ""); return err },
		func() error { _, err := h.client.CancelTraining(ctx, "a/b"); return err },
		func() error {
			_, err := h.client.CreateTraining(ctx, "ostris/flux-dev-lora-trainer", replicate.CreateTrainingRequest{Destination: dest, Input: input()})
			return err
		},
		func() error {
			_, err := h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: dest})
			return err
		},
	} {
		if err := bad(); err == nil {
			t.Error("a call with a bad argument succeeded")
		}
	}
	if n := h.sim.Stats().Requests; n != 0 {
		t.Errorf("bad arguments reached the API %d times", n)
	}

	wrong := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{Token: "r8_wrong"})
	_, err = wrong.client.Account(ctx)
	if !replicate.IsUnauthorized(err) || err.Error() != "account.get: Replicate rejected the API token (401): check REPLICATE_API_TOKEN" {
		t.Errorf("wrong token: %v", err)
	}
}

func TestClient429RetryAfterFromBody(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{})
	ctx := context.Background()
	dest := h.destination(t, "d")
	tr, err := h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: dest, Input: input()})
	if err != nil {
		t.Fatal(err)
	}
	h.reset()
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 429, RetryAfter: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.GetTraining(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	sleeps, calls := h.recorded()
	if !slices.Contains(sleeps, 7*time.Second) || strings.Join(calls, ",") != "trainings.get 429,trainings.get ok" {
		t.Errorf("sleeps %v calls %v; want a 7 s wait between a 429 and an ok", sleeps, calls)
	}

	// A throttled create created nothing, so it is sent again.
	h.reset()
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 429, RetryAfter: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: dest, Input: input()}); err != nil {
		t.Fatal(err)
	}
	if st := h.sim.Stats(); st.Count("trainings.create", 429) != 1 || st.Count("trainings.create", 201) != 1 || len(h.sim.Trainings()) != 2 {
		t.Errorf("create after a 429: %v, %d trainings", st.Calls, len(h.sim.Trainings()))
	}

	// A wait longer than MaxRetryAfter is the caller's to schedule.
	h.reset()
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 429, RetryAfter: 3600}); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.GetTraining(ctx, tr.ID)
	var apiErr *replicate.APIError
	if !replicate.IsRateLimited(err) || !errors.As(err, &apiErr) || apiErr.RetryAfter != time.Hour || h.sim.Stats().Total("trainings.get") != 1 {
		t.Errorf("long Retry-After: %v", err)
	}
}

// The simulator's own rate limit: the client waits out retry_after.
func TestClient429FromRateLimit(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{Faults: fakereplicate.Faults{RateLimit: 2}}, replicate.ClientOptions{})
	for range 3 {
		if _, err := h.client.Account(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	sleeps, calls := h.recorded()
	if st := h.sim.Stats(); st.Throttled != 1 || st.Count("account.get", 200) != 3 {
		t.Errorf("stats %+v", st)
	}
	if !slices.ContainsFunc(sleeps, func(d time.Duration) bool { return d >= 59*time.Second && d <= 60*time.Second }) {
		t.Errorf("sleeps %v, want the ~60 s retry_after", sleeps)
	}
	if calls[2] != "account.get 429" {
		t.Errorf("calls %v", calls)
	}
}

// Retry-After as a header wins over the body; it may be an HTTP date.
func TestClientRetryAfterHeader(t *testing.T) {
	now := start.Truncate(time.Second)
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{"2", 2 * time.Second},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{"", 9 * time.Second}, // body only
	} {
		var n atomic.Int32
		stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				if c.header != "" {
					w.Header().Set("Retry-After", c.header)
				}
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(429)
				fmt.Fprint(w, `{"detail":"Request was throttled. Your rate limit resets in ~9s.","status":429,"retry_after":9}`)
				return
			}
			fmt.Fprint(w, `{"type":"user","username":"u"}`)
		}))
		var slept []time.Duration
		c2, err := replicate.NewClient(replicate.ClientOptions{
			BaseURL: stub.URL, Token: "t", Now: func() time.Time { return now }, Limiter: noLimit{},
			Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Account(context.Background()); err != nil {
			t.Fatal(err)
		}
		stub.Close()
		if len(slept) != 1 || slept[0] != c.want {
			t.Errorf("Retry-After %q: slept %v, want %v", c.header, slept, c.want)
		}
	}
}

func TestClient5xxRetriedForGetAndCancel(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{})
	ctx := context.Background()
	dest := h.destination(t, "d")
	tr, err := h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: dest, Input: input()})
	if err != nil {
		t.Fatal(err)
	}
	h.reset()
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 503, Count: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.GetTraining(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	sleeps, calls := h.recorded()
	// Backoff 500 ms doubling, upper half random (0 here).
	if !slices.Equal(sleeps, []time.Duration{250 * time.Millisecond, 500 * time.Millisecond}) || h.sim.Stats().Total("trainings.get") != 3 {
		t.Errorf("sleeps %v calls %v", sleeps, calls)
	}

	h.reset()
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 502, Count: 100}); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.GetTraining(ctx, tr.ID)
	if replicate.StatusCode(err) != 502 || !strings.Contains(err.Error(), "502 Bad Gateway") || h.sim.Stats().Total("trainings.get") != replicate.DefaultMaxRetries+1 {
		t.Errorf("persistent 502: %v after %d calls", err, h.sim.Stats().Total("trainings.get"))
	}
	h.sim.ResetStats()
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.cancel", Status: 500}); err != nil {
		t.Fatal(err)
	}
	if c, err := h.client.CancelTraining(ctx, tr.ID); err != nil || c.Status != "canceled" || h.sim.Stats().Total("trainings.cancel") != 2 {
		t.Errorf("cancel after a 500: %v, %d calls", err, h.sim.Stats().Total("trainings.cancel"))
	}
}

// A create is never sent twice once it may have reached Replicate.
func TestClientCreateNeverResent(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{})
	ctx := context.Background()
	dest := h.destination(t, "d")
	for _, f := range []fakereplicate.FailSpec{
		{Endpoint: "trainings.create", Status: 500, After: true}, // created, answer lost
		{Endpoint: "trainings.create", Status: 503},              // refused before creating
		{Endpoint: "trainings.create", Status: 502, After: true},
	} {
		h.reset()
		before := len(h.sim.Trainings())
		if err := h.sim.FailNext(f); err != nil {
			t.Fatal(err)
		}
		_, err := h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: dest, Input: input()})
		if !replicate.IsOutcomeUnknown(err) || replicate.StatusCode(err) != f.Status {
			t.Errorf("%+v: %v, want ErrOutcomeUnknown wrapping the %d", f, err, f.Status)
		}
		if n := h.sim.Stats().Total("trainings.create"); n != 1 {
			t.Errorf("%+v: the simulator received %d creates, want 1", f, n)
		}
		if created := len(h.sim.Trainings()) - before; f.After != (created == 1) {
			t.Errorf("%+v: %d trainings created", f, created)
		}
	}

	h.reset()
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "models.create", Status: 500, After: true}); err != nil {
		t.Fatal(err)
	}
	_, err := h.client.CreateModel(ctx, replicate.CreateModelRequest{Owner: h.sim.Username(), Name: "lost", Visibility: "private", Hardware: "cpu"})
	if !replicate.IsOutcomeUnknown(err) || h.sim.Stats().Total("models.create") != 1 {
		t.Errorf("model create with a lost answer: %v", err)
	}
	if _, err := h.client.GetModel(ctx, h.sim.Username(), "lost"); err != nil {
		t.Errorf("the model was created but cannot be read: %v", err)
	}
}

// hangUp is a server that reads each request, then drops the connection
// without answering, for the first n requests.
func hangUp(t *testing.T, n int32) (*httptest.Server, *atomic.Int32) {
	var seen atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= n {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		fmt.Fprint(w, `{"id":"abc","status":"processing"}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestClientNetworkErrors(t *testing.T) {
	ctx := context.Background()
	noSleep := func(context.Context, time.Duration) error { return nil }

	// A lost answer to a create: outcome unknown, not re-sent.
	srv, seen := hangUp(t, 100)
	c, _ := replicate.NewClient(replicate.ClientOptions{BaseURL: srv.URL, Token: "t", Sleep: noSleep})
	_, err := c.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: "a/b", Input: input()})
	if !replicate.IsOutcomeUnknown(err) || seen.Load() != 1 {
		t.Errorf("create with the connection dropped: %v after %d requests", err, seen.Load())
	}

	// A GET whose connection drops twice is retried.
	srv, seen = hangUp(t, 2)
	var outcomes []string
	c, _ = replicate.NewClient(replicate.ClientOptions{BaseURL: srv.URL, Token: "t", Sleep: noSleep,
		OnCall: func(_, outcome string, _ time.Duration) { outcomes = append(outcomes, outcome) }})
	if tr, err := c.GetTraining(ctx, "abc"); err != nil || tr.Status != "processing" {
		t.Errorf("GET after two dropped connections: %v", err)
	}
	if strings.Join(outcomes, ",") != "network,network,ok" || seen.Load() != 3 {
		t.Errorf("outcomes %v after %d requests", outcomes, seen.Load())
	}

	// Nothing listening: the create never left, so it is safe to retry.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ = replicate.NewClient(replicate.ClientOptions{BaseURL: "http://" + addr, Token: "t", Sleep: noSleep})
	_, err = c.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: "a/b", Input: input()})
	if err == nil || replicate.IsOutcomeUnknown(err) || !strings.Contains(err.Error(), "not sent") {
		t.Errorf("create to a closed port: %v", err)
	}
}

func TestClientPagination(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{})
	ctx := context.Background()
	dest := h.destination(t, "d")
	want := map[string]bool{}
	for range 230 {
		tr, err := h.client.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: dest, Input: input()})
		if err != nil {
			t.Fatal(err)
		}
		want[tr.ID] = true
	}
	var pages, total int
	var last time.Time
	for page := ""; ; {
		p, err := h.client.ListTrainings(ctx, page)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, tr := range p.Results {
			if !want[tr.ID] {
				t.Fatalf("unexpected or repeated training %s", tr.ID)
			}
			delete(want, tr.ID)
			if !last.IsZero() && tr.CreatedAt.After(last) {
				t.Fatal("results are not newest first")
			}
			last = *tr.CreatedAt
			total++
		}
		if p.Next == "" {
			break
		}
		if !strings.HasPrefix(p.Next, h.base+"/v1/trainings?cursor=") {
			t.Fatalf("next %q is not an absolute URL on the simulator", p.Next)
		}
		page = p.Next
	}
	if pages != 3 || total != 230 || len(want) != 0 {
		t.Errorf("%d pages, %d trainings, %d missing", pages, total, len(want))
	}
	if _, err := h.client.ListTrainings(ctx, "https://evil.example/v1/trainings?cursor=x"); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("a page URL on another host: %v", err)
	}
}

// Timestamps come with 9, 6, 3, 2 or no fractional digits; unknown fields
// and statuses are tolerated.
func TestClientLenientDecoding(t *testing.T) {
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"id":"abc","status":"paused","brand_new_field":{"x":[1,2]},
			"created_at":"2023-08-16T19:33:26.678378653Z","started_at":"2024-10-16T12:40:32.23Z",
			"completed_at":null,"urls":{"get":"x","stream":"y"},"metrics":{"predict_time":1.5,"image_count":2}}`)
	}))
	defer stub.Close()
	var logs bytes.Buffer
	c, err := replicate.NewClient(replicate.ClientOptions{BaseURL: stub.URL, Token: "t", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.GetTraining(context.Background(), "abc")
	if err != nil {
		t.Fatal(err)
	}
	if tr.CreatedAt.Nanosecond() != 678378653 || tr.StartedAt.Nanosecond() != 230_000_000 || tr.CompletedAt != nil || tr.Terminal() {
		t.Errorf("decoded %+v", tr)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "status=paused") {
		t.Errorf("an unknown status was not logged at warn: %q", logs.String())
	}
}

func TestClientContextCancellation(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{})

	// Already canceled: nothing is sent.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.client.Account(ctx); !errors.Is(err, context.Canceled) || h.sim.Stats().Requests != 0 {
		t.Errorf("canceled context: %v, %d requests", err, h.sim.Stats().Requests)
	}

	// Canceled while waiting to retry, on the real clock.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	c, err := replicate.NewClient(replicate.ClientOptions{BaseURL: h.base, Token: simToken, MaxBackoff: time.Hour,
		OnCall: func(string, string, time.Duration) { cancel() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "account.get", Status: 503, Count: 10}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := c.Account(ctx); !errors.Is(err, context.Canceled) || time.Since(began) > 5*time.Second {
		t.Errorf("canceled during backoff: %v after %v", err, time.Since(began))
	}

	// Canceled while waiting for the rate limiter: 1 request a minute.
	c, _ = replicate.NewClient(replicate.ClientOptions{BaseURL: h.base, Token: simToken, RateLimit: 1})
	if _, err := c.GetModel(context.Background(), "ostris", "flux-dev-lora-trainer"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	began = time.Now()
	if _, err := c.GetModel(ctx, "ostris", "flux-dev-lora-trainer"); !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 5*time.Second {
		t.Errorf("canceled waiting for the limiter: %v after %v", err, time.Since(began))
	}

	// Canceled in flight: a create's fate is then unknown.
	block := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-block:
		}
	}))
	defer stuck.Close()
	defer close(block) // before Close, which waits for the handler
	c, _ = replicate.NewClient(replicate.ClientOptions{BaseURL: stuck.URL, Token: "t"})
	ctx, cancel3 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel3()
	_, err = c.CreateTraining(ctx, trainer, replicate.CreateTrainingRequest{Destination: "a/b", Input: input()})
	if !errors.Is(err, context.DeadlineExceeded) || !replicate.IsOutcomeUnknown(err) {
		t.Errorf("create canceled in flight: %v", err)
	}
}

func TestClientTimeoutPerAttempt(t *testing.T) {
	block := make(chan struct{})
	var seen atomic.Int32
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		select {
		case <-r.Context().Done():
		case <-block:
		}
	}))
	defer stuck.Close()
	defer close(block) // before Close, which waits for the handlers
	var outcomes []string
	c, _ := replicate.NewClient(replicate.ClientOptions{BaseURL: stuck.URL, Token: "t", Timeout: 50 * time.Millisecond, MaxRetries: 2,
		Sleep:  func(context.Context, time.Duration) error { return nil },
		OnCall: func(_, o string, _ time.Duration) { outcomes = append(outcomes, o) }})
	began := time.Now()
	_, err := c.GetTraining(context.Background(), "abc")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 5*time.Second {
		t.Errorf("GET against a server that never answers: %v after %v", err, time.Since(began))
	}
	if seen.Load() != 3 || strings.Join(outcomes, ",") != "network,network,network" {
		t.Errorf("%d attempts, outcomes %v; want 3 timed-out attempts", seen.Load(), outcomes)
	}
}

// The default limiter keeps the client within its rate: 130 calls at 60 a
// minute never trip a simulator limited to 60 a minute.
func TestClientLimiterKeepsUnderTheLimit(t *testing.T) {
	h := newHarness(t, fakereplicate.Options{Faults: fakereplicate.Faults{RateLimit: 60}}, replicate.ClientOptions{RateLimit: 60})
	for range 130 {
		if _, err := h.client.Account(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	st := h.sim.Stats()
	if st.Throttled != 0 || st.MaxPerMinute > 60 || st.Count("account.get", 200) != 130 {
		t.Errorf("stats %+v", st)
	}
	if sleeps, _ := h.recorded(); len(sleeps) != 129 || sleeps[0] != time.Second+10*time.Millisecond {
		t.Errorf("%d limiter waits (first %v), want 129 of 1.01 s", len(sleeps), sleeps[:1])
	}
}

type countingLimiter struct{ n atomic.Int32 }

func (l *countingLimiter) Wait(ctx context.Context) error { l.n.Add(1); return ctx.Err() }

// A supplied Limiter is asked before every attempt, retries included.
func TestClientSharedLimiter(t *testing.T) {
	lim := &countingLimiter{}
	h := newHarness(t, fakereplicate.Options{}, replicate.ClientOptions{Limiter: lim})
	if err := h.sim.FailNext(fakereplicate.FailSpec{Endpoint: "account.get", Status: 500}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Account(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lim.n.Load() != 2 {
		t.Errorf("limiter asked %d times for 2 attempts", lim.n.Load())
	}
}

func TestNewClientOptions(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "https://api.replicate.com/v1",
		"http://127.0.0.1:9000":      "http://127.0.0.1:9000/v1",
		"http://127.0.0.1:9000/":     "http://127.0.0.1:9000/v1",
		"http://127.0.0.1:9000/v1":   "http://127.0.0.1:9000/v1",
		"http://127.0.0.1:9000/v1/":  "http://127.0.0.1:9000/v1",
		"http://localhost/proxy":     "http://localhost/proxy/v1",
		"https://api.replicate.com/": "https://api.replicate.com/v1",
	} {
		c, err := replicate.NewClient(replicate.ClientOptions{BaseURL: in, Token: "t"})
		if err != nil || c.BaseURL() != want {
			t.Errorf("BaseURL %q: %v, %v; want %s", in, c, err, want)
		}
	}
	for _, bad := range []replicate.ClientOptions{
		{BaseURL: "127.0.0.1:9000", Token: "t"},
		{BaseURL: "ftp://x", Token: "t"},
		{Token: ""},
		{Token: "t", RateLimit: -1},
	} {
		if _, err := replicate.NewClient(bad); err == nil {
			t.Errorf("NewClient(%+v) accepted", bad)
		}
	}
}

func TestAPIErrorMessages(t *testing.T) {
	for _, c := range []struct {
		err  replicate.APIError
		want string
	}{
		{replicate.APIError{Endpoint: "account.get", StatusCode: 401, Title: "Unauthenticated"},
			"account.get: Replicate rejected the API token (401): check REPLICATE_API_TOKEN"},
		{replicate.APIError{Endpoint: "trainings.create", StatusCode: 402, Title: "Billing required", Detail: "You need to set up billing."},
			"trainings.create: Replicate requires billing to be set up for this account (402): You need to set up billing."},
		{replicate.APIError{Endpoint: "trainings.create", StatusCode: 404, Detail: "The specified training destination does not exist"},
			"trainings.create: the destination model does not exist (404): create it first (POST /v1/models) or fix the destination: The specified training destination does not exist"},
		{replicate.APIError{Endpoint: "trainings.get", StatusCode: 404, Title: "Not found", Detail: "The requested resource could not be found."},
			"trainings.get: Replicate answered 404 Not found: The requested resource could not be found."},
		{replicate.APIError{Endpoint: "trainings.get", StatusCode: 429, RetryAfter: 5 * time.Second, Detail: "Request was throttled."},
			"trainings.get: Replicate throttled the request (429), retry after 5s: Request was throttled."},
		{replicate.APIError{Endpoint: "trainings.create", StatusCode: 422, Title: "Input validation failed", Detail: "- input is required",
			InvalidFields: []replicate.InvalidField{{Type: "required", Description: "input is required"}}},
			"trainings.create: Replicate answered 422 Input validation failed: - input is required; input is required"},
		{replicate.APIError{Endpoint: "trainings.get", StatusCode: 502, Body: []byte("<html><title>502 Bad Gateway</title></html>")},
			"trainings.get: Replicate answered 502 Bad Gateway: <html><title>502 Bad Gateway</title></html>"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}
