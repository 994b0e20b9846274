package poller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

func TestPolicy(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	p := Policy{Interval: 5 * time.Second, ReconcileAfter: 10 * time.Minute, Cap: time.Minute}
	cases := []struct {
		webhook bool
		age     time.Duration
		status  training.Status
		want    time.Duration // -1: never
	}{
		{false, 0, training.Training, 5 * time.Second},
		{false, 2 * time.Minute, training.Training, 5 * time.Second},
		{false, 4 * time.Minute, training.Training, 10 * time.Second},
		{false, 6 * time.Minute, training.Training, 20 * time.Second},
		{false, time.Hour, training.Training, time.Minute},
		{false, 0, training.Pending, 5 * time.Second},
		{true, 0, training.Training, 10 * time.Minute},
		{true, time.Hour, training.Training, 10 * time.Minute},
		{false, 0, training.Ready, -1},
		{true, 0, training.Canceled, -1},
	}
	for _, c := range cases {
		p.Webhook = c.webhook
		got := p.Next(training.Model{Status: c.status, CreatedAt: now.Add(-c.age)}, now, training.SourcePoll)
		switch {
		case c.want < 0 && got != nil:
			t.Errorf("%+v: next check %v for a final model", c, got)
		case c.want >= 0 && (got == nil || got.Sub(now) != c.want):
			t.Errorf("%+v: next check %v, want in %v", c, got, c.want)
		}
	}
	// Jitter stays within ±10%.
	p = Policy{Interval: 10 * time.Second, Cap: time.Minute, Jitter: RandomJitter}
	for i := 0; i < 1000; i++ {
		d := p.Next(training.Model{Status: training.Training, CreatedAt: now}, now, training.SourcePoll).Sub(now)
		if d < 9*time.Second || d > 11*time.Second {
			t.Fatalf("jittered gap %v", d)
		}
	}
	if p.Retry(0) != 5*time.Second || p.Retry(100) != 5*time.Minute {
		t.Fatalf("retry %v %v", p.Retry(0), p.Retry(100))
	}
}

// fakeAPI answers from a fixed list of trainings and counts calls.
type fakeAPI struct {
	mu        sync.Mutex
	trainings []replicate.Training // newest first
	gets      int
	lists     int
	getErr    error
}

func (f *fakeAPI) GetTraining(_ context.Context, id string) (replicate.Training, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.getErr != nil {
		return replicate.Training{}, f.getErr
	}
	for _, t := range f.trainings {
		if t.ID == id {
			return t, nil
		}
	}
	return replicate.Training{}, &replicate.APIError{StatusCode: 404}
}

func (f *fakeAPI) ListTrainings(_ context.Context, page string) (replicate.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	start := 0
	if page != "" {
		fmt.Sscan(page, &start)
	}
	end := min(start+100, len(f.trainings))
	p := replicate.Page{Results: f.trainings[start:end]}
	if end < len(f.trainings) {
		p.Next = fmt.Sprint(end)
	}
	return p, nil
}

type fakeService struct {
	mu          sync.Mutex
	due         []training.Model
	tracked     map[string]training.Model // in flight, not claimed
	observed    map[string]string
	rescheduled map[string]time.Time
}

func (f *fakeService) ClaimDue(context.Context, time.Duration, time.Duration, int) ([]training.Model, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.due
	f.due = nil
	return d, nil
}

func (f *fakeService) Observe(_ context.Context, obs training.Observation) (service.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if obs.Source != training.SourcePoll {
		return service.Result{}, errors.New("not a poll")
	}
	f.observed[obs.TrainingID] = obs.Remote
	return service.Result{Outcome: service.Outcome(training.Move)}, nil
}

func (f *fakeService) Reschedule(_ context.Context, id string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rescheduled[id] = at
	return nil
}

func (f *fakeService) Defer(ctx context.Context, id string, at time.Time) error {
	return f.Reschedule(ctx, id, at)
}

func (f *fakeService) RecoverClaimed(context.Context, training.Model, *service.TrainingScan) (training.Model, error) {
	return training.Model{}, errors.New("unexpected")
}

// ReleaseClaims makes the models due again, as the service does (the fake
// has no clock: they are due at once).
func (f *fakeService) ReleaseClaims(_ context.Context, ms []training.Model, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.due = append(f.due, ms...)
	return nil
}

// TrainingNotFound reschedules the model, as the service does until the
// 404s have lasted its grace period.
func (f *fakeService) TrainingNotFound(ctx context.Context, m training.Model, retryAt time.Time) (bool, error) {
	return false, f.Reschedule(ctx, m.ID, retryAt)
}

// InFlight returns the models of tracked among ids.
func (f *fakeService) InFlight(_ context.Context, ids []string) ([]training.Model, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []training.Model
	for _, id := range ids {
		if m, ok := f.tracked[id]; ok {
			out = append(out, m)
		}
	}
	return out, nil
}

func setup(n, due int) (*fakeAPI, *fakeService) {
	api := &fakeAPI{}
	svc := &fakeService{observed: map[string]string{}, rescheduled: map[string]time.Time{}}
	now := time.Now()
	for i := 0; i < n; i++ {
		created := now.Add(-time.Duration(i) * time.Second)
		status := "processing"
		var out []byte
		if i%2 == 0 {
			status, out = "succeeded", []byte(`{"version":"a/b:c","weights":"w"}`)
		}
		id := fmt.Sprintf("t%04d", i)
		api.trainings = append(api.trainings, replicate.Training{ID: id, Status: status, Output: out, CreatedAt: &created})
		if i < due {
			svc.due = append(svc.due, training.Model{ID: "m" + id, TrainingID: id, Status: training.Training, CreatedAt: created})
		}
	}
	return api, svc
}

func newPoller(api API, svc Service) *Poller {
	return New(Options{API: api, Service: svc, Policy: Policy{Interval: time.Second, Cap: time.Minute}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// Many due trainings are answered by list pages (100 each), not one GET each.
func TestManyDueUseListPages(t *testing.T) {
	api, svc := setup(1000, 1000)
	n, err := newPoller(api, svc).RunOnce(context.Background())
	if err != nil || n != 1000 {
		t.Fatal(n, err)
	}
	if len(svc.observed) != 1000 || api.lists != 10 || api.gets != 0 {
		t.Fatalf("observed %d with %d lists and %d gets", len(svc.observed), api.lists, api.gets)
	}
	if svc.observed["t0000"] != "succeeded" || svc.observed["t0001"] != "processing" {
		t.Fatal("wrong statuses")
	}
}

// A few due trainings are fetched one by one; a listed training missing its
// output is fetched whole; failures reschedule.
func TestFewDueAndFailures(t *testing.T) {
	api, svc := setup(10, 2)
	p := newPoller(api, svc)
	if _, err := p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if api.lists != 0 || api.gets != 2 || len(svc.observed) != 2 {
		t.Fatalf("lists %d gets %d observed %d", api.lists, api.gets, len(svc.observed))
	}
	api.getErr = errors.New("connection refused")
	_, svc2 := setup(10, 2)
	p = newPoller(api, svc2)
	if _, err := p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(svc2.observed) != 0 || len(svc2.rescheduled) != 2 {
		t.Fatalf("failed checks: observed %d rescheduled %d", len(svc2.observed), len(svc2.rescheduled))
	}
	if !complete(replicate.Training{Status: "processing"}) || complete(replicate.Training{Status: "succeeded"}) || complete(replicate.Training{Status: "failed"}) {
		t.Fatal("complete()")
	}
}
