package poller_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/poller"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// failingAPI answers every call with an error, as Replicate does when it is
// unreachable for a moment.
type failingAPI struct{}

func (failingAPI) GetTraining(context.Context, string) (replicate.Training, error) {
	return replicate.Training{}, errors.New("trainings.get: connection reset by peer")
}

func (failingAPI) ListTrainings(context.Context, string) (replicate.Page, error) {
	return replicate.Page{}, errors.New("trainings.list: connection reset by peer")
}

// dueService hands the poller one model and records when it is rescheduled.
type dueService struct {
	due         training.Model
	rescheduled time.Time
}

func (s *dueService) ClaimDue(context.Context, time.Duration, time.Duration, int) ([]training.Model, error) {
	return []training.Model{s.due}, nil
}

func (s *dueService) Observe(context.Context, training.Observation) (service.Result, error) {
	return service.Result{}, nil
}

func (s *dueService) InFlight(context.Context, []string) ([]training.Model, error) { return nil, nil }

func (s *dueService) Reschedule(_ context.Context, _ string, at time.Time) error {
	s.rescheduled = at
	return nil
}

func (s *dueService) Defer(_ context.Context, _ string, at time.Time) error {
	s.rescheduled = at
	return nil
}

func (s *dueService) RecoverClaimed(_ context.Context, m training.Model, _ *service.TrainingScan) (training.Model, error) {
	return m, errors.New("trainings.list: connection reset by peer")
}

func (s *dueService) ReleaseClaims(context.Context, []training.Model, time.Duration) error {
	return nil
}

// TrainingNotFound reschedules the model, as the service does until the
// 404s have lasted its grace period.
func (s *dueService) TrainingNotFound(_ context.Context, _ training.Model, retryAt time.Time) (bool, error) {
	s.rescheduled = retryAt
	return false, nil
}

// The first failed check of a training is retried after Policy.Retry(0)
// (5 s), whatever the training's history. CheckAttempts once counted every
// check, so a training polled for a minute waited the 5-minute cap after one
// failed GET; now it counts failed checks in a row (a poll that works resets
// it: service.apply), and a training polled successfully for a minute has 0.
func TestFirstFailedCheckIsRetriedSoon(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	// Polled every second for a minute, each poll finding it still running.
	svc := &dueService{due: training.Model{ID: "m1", TrainingID: "t1", Status: training.Training, CreatedAt: now.Add(-time.Minute), CheckAttempts: 0}}
	p := poller.New(poller.Options{
		API: failingAPI{}, Service: svc, Now: func() time.Time { return now },
		Policy: poller.Policy{Interval: time.Second, Cap: time.Minute},
		Log:    slog.New(slog.DiscardHandler),
	})
	if _, err := p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if wait := svc.rescheduled.Sub(now); wait <= 0 || wait > 10*time.Second {
		t.Errorf("after its first failed check the training is checked again in %s, want at most 10s (Policy.Retry(0) is 5s)", wait)
	}
}
