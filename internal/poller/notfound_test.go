package poller_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/poller"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// notFoundRig is a service on a SQLite file and a poller against the
// simulator, both on a clock the test moves.
type notFoundRig struct {
	sim    *fakereplicate.Server
	client *replicate.Client
	svc    *service.Service
	// unchecked registers without asking Replicate first, as a server does
	// when the API budget is spent.
	unchecked *service.Service
	poll      *poller.Poller
	now       time.Time
}

func newNotFoundRig(t *testing.T) *notFoundRig {
	t.Helper()
	ctx := context.Background()
	sim, err := fakereplicate.New(fakereplicate.Options{Token: "r8_nf", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	client, err := replicate.NewClient(replicate.ClientOptions{BaseURL: simURL, Token: "r8_nf", RateLimit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &notFoundRig{sim: sim, client: client, now: time.Now().UTC()}
	clock := func() time.Time { return r.now }
	policy := poller.Policy{Interval: time.Second, Cap: time.Minute}
	log := slog.New(slog.DiscardHandler)
	r.svc = service.New(service.Options{Store: st, Replicate: client, Logger: log, Now: clock, NextCheck: policy.Next})
	t.Cleanup(r.svc.Close)
	r.unchecked = service.New(service.Options{Store: st, Logger: log, Now: clock, NextCheck: policy.Next})
	t.Cleanup(r.unchecked.Close)
	r.poll = poller.New(poller.Options{API: client, Service: r.svc, Policy: policy, Log: log, Now: clock})
	return r
}

// check moves the clock to the model's next check and runs one tick.
func (r *notFoundRig) check(t *testing.T, id string) service.ModelDetail {
	t.Helper()
	d, err := r.svc.Model(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.NextCheckAt == nil {
		t.Fatalf("model %s (%s) has no next check", id, d.Status)
	}
	if d.NextCheckAt.After(r.now) {
		r.now = *d.NextCheckAt
	}
	if n, err := r.poll.RunOnce(t.Context()); err != nil || n != 1 {
		t.Fatalf("tick: claimed %d, %v; want the one model", n, err)
	}
	d, err = r.svc.Model(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (r *notFoundRig) startOnSim(t *testing.T) replicate.Training {
	t.Helper()
	_, err := r.client.CreateModel(t.Context(), replicate.CreateModelRequest{Owner: fakereplicate.DefaultUsername, Name: "nf", Visibility: "private", Hardware: "cpu"})
	if err != nil && !replicate.IsConflict(err) {
		t.Fatal(err)
	}
	tr, err := r.client.CreateTraining(t.Context(), fakereplicate.FluxTrainer+":"+fakereplicate.FluxTrainerVersion, replicate.CreateTrainingRequest{
		Destination: fakereplicate.DefaultUsername + "/nf", Input: json.RawMessage(`{"input_images":"https://example.com/nf.zip"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// A training id Replicate does not know is refused at registration, and
// nothing is kept; one it knows is registered.
func TestRegisterChecksTheTrainingID(t *testing.T) {
	r := newNotFoundRig(t)
	const unknown = "doesnotexist000000000000aa"
	_, _, err := r.svc.Register(t.Context(), service.RegisterRequest{TrainingID: unknown, IdempotencyKey: "k1"})
	var se *service.Error
	if !errors.As(err, &se) || se.Kind != service.Unprocessable {
		t.Fatalf("register an unknown training: %v; want an Unprocessable error", err)
	}
	if want := service.NotFoundError(unknown); len(se.Msg) < len(want) || se.Msg[:len(want)] != want {
		t.Errorf("message %q, want it to begin %q", se.Msg, want)
	}
	ms, _, err := r.svc.Models(t.Context(), store.ModelFilter{})
	if err != nil || len(ms) != 0 {
		t.Fatalf("after a refused registration: %d models, %v; want none", len(ms), err)
	}

	tr := r.startOnSim(t)
	m, _, err := r.svc.Register(t.Context(), service.RegisterRequest{TrainingID: tr.ID, IdempotencyKey: "k2"})
	if err != nil || m.TrainingID != tr.ID {
		t.Fatalf("register a known training: %+v, %v", m, err)
	}
	// A repeated request is still a replay, even if Replicate now says 404.
	if err := r.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 404, Count: 1}); err != nil {
		t.Fatal(err)
	}
	again, replayed, err := r.svc.Register(t.Context(), service.RegisterRequest{TrainingID: tr.ID, IdempotencyKey: "k2"})
	if err != nil || !replayed || again.ID != m.ID {
		t.Fatalf("replay: %+v replayed=%v, %v; want model %s replayed", again, replayed, err, m.ID)
	}
}

// A tracked training Replicate keeps answering 404 for is Failed once the
// 404s have lasted the grace period over several checks, and not before.
func TestTrainingReplicateDoesNotKnowFails(t *testing.T) {
	r := newNotFoundRig(t)
	const unknown = "doesnotexist000000000000bb"
	m, _, err := r.unchecked.Register(t.Context(), service.RegisterRequest{TrainingID: unknown})
	if err != nil {
		t.Fatal(err)
	}
	first := r.now
	var d service.ModelDetail
	for i := 1; i <= service.DefaultNotFoundChecks; i++ {
		d = r.check(t, m.ID)
		if d.Status != training.Pending || d.NotFoundChecks != i {
			t.Fatalf("after %d 404s within %v: %s with %d counted; want Pending with %d", i, r.now.Sub(first), d.Status, d.NotFoundChecks, i)
		}
	}
	if r.now.Sub(first) >= service.DefaultNotFoundGrace {
		t.Fatalf("test assumes the first checks come within the grace period; they took %v", r.now.Sub(first))
	}
	for d.Status == training.Pending {
		if r.now.Sub(first) > 2*service.DefaultNotFoundGrace {
			t.Fatalf("still Pending %v after the first 404", r.now.Sub(first))
		}
		d = r.check(t, m.ID)
	}
	if r.now.Sub(first) < service.DefaultNotFoundGrace {
		t.Errorf("failed %v after the first 404, before the grace period of %v", r.now.Sub(first), service.DefaultNotFoundGrace)
	}
	if d.Status != training.Failed || d.Error != service.NotFoundError(unknown) {
		t.Fatalf("model is %s with error %q; want Failed with %q", d.Status, d.Error, service.NotFoundError(unknown))
	}
	last := d.History[len(d.History)-1]
	if last.Source != training.SourcePoll || last.To != training.Failed || last.Decision != training.Move {
		t.Errorf("last history entry %+v; want a move to Failed from source poll", last)
	}
	if d.NextCheckAt != nil {
		t.Errorf("a failed model is still scheduled at %v", d.NextCheckAt)
	}
}

// A training that answers again starts the count over: a passing 404 right
// after a create, or during an outage, never adds up to failing it.
func TestPassing404sStartOver(t *testing.T) {
	r := newNotFoundRig(t)
	tr := r.startOnSim(t)
	m, _, err := r.svc.Register(t.Context(), service.RegisterRequest{TrainingID: tr.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 404, Count: 2}); err != nil {
		t.Fatal(err)
	}
	r.check(t, m.ID)
	if d := r.check(t, m.ID); d.NotFoundChecks != 2 || d.NotFoundSince == nil {
		t.Fatalf("after two 404s: %d counted since %v", d.NotFoundChecks, d.NotFoundSince)
	}
	if d := r.check(t, m.ID); d.NotFoundChecks != 0 || d.NotFoundSince != nil || d.Status != training.Training {
		t.Fatalf("after the training answered: %s with %d 404s since %v; want Training and the count reset", d.Status, d.NotFoundChecks, d.NotFoundSince)
	}
	// Long after the first 404s, one more is the first of a new count.
	r.now = r.now.Add(2 * service.DefaultNotFoundGrace)
	if err := r.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 404, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if d := r.check(t, m.ID); d.Status != training.Training || d.NotFoundChecks != 1 {
		t.Fatalf("after a new 404: %s with %d counted; want Training with 1", d.Status, d.NotFoundChecks)
	}
}

// When the API budget has no request free at once, registration does not
// wait for one: the training is registered unchecked (the poller finds out),
// and the check reserves nothing that would delay other calls.
func TestRegisterDoesNotWaitForTheBudget(t *testing.T) {
	ctx := context.Background()
	sim, err := fakereplicate.New(fakereplicate.Options{Token: "r8_budget"})
	if err != nil {
		t.Fatal(err)
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	// One request a minute, and it is spent.
	client, err := replicate.NewClient(replicate.ClientOptions{BaseURL: simURL, Token: "r8_budget", RateLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.GetTraining(ctx, "spends-the-budget"); !replicate.IsNotFound(err) {
		t.Fatalf("first call: %v", err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := service.New(service.Options{Store: st, Replicate: client, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(svc.Close)
	begin := time.Now()
	m, _, err := svc.Register(ctx, service.RegisterRequest{TrainingID: "doesnotexist000000000000cc"})
	if err != nil || m.Status != training.Pending {
		t.Fatalf("register with the budget spent: %+v, %v; want it registered unchecked", m, err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Errorf("registration took %v: it waited for the budget", took)
	}
	if n := sim.Stats().Requests; n != 1 {
		t.Errorf("%d requests reached the simulator, want only the first", n)
	}
}
