package service

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// newSQLiteService is a Service on a fresh SQLite file, closed with t.
func newSQLiteService(t *testing.T) *Service {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(svc.Close)
	return svc
}

// A batch whose transaction fails is retried job by job; what a job's first
// attempt counted inside the rolled-back transaction must not count again.
// Here a report that finishes a training shares a batch with a job that
// fails it: the training is counted completed once, not twice.
func TestFailedBatchCountsOnce(t *testing.T) {
	ctx := context.Background()
	svc := newSQLiteService(t)
	m, _, err := svc.Register(ctx, RegisterRequest{TrainingID: "batch-once"})
	if err != nil {
		t.Fatal(err)
	}

	// The writer is busy with the first job while the other two queue, so
	// they go into one batch, the report first.
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = svc.write(ctx, func(context.Context, store.Tx) (Result, []training.Model, error) {
			<-release
			return Result{}, nil, nil
		})
	})
	time.Sleep(50 * time.Millisecond)
	var applied Result
	var applyErr, failErr error
	wg.Go(func() {
		applied, applyErr = svc.Observe(ctx, training.Observation{
			TrainingID: "batch-once", Remote: training.RemoteSucceeded, Source: training.SourcePoll,
			Output: json.RawMessage(`{"version":"acme/x:0123","weights":"https://example.com/w.tar"}`),
		})
	})
	time.Sleep(50 * time.Millisecond)
	wg.Go(func() {
		_, failErr = svc.write(ctx, func(context.Context, store.Tx) (Result, []training.Model, error) {
			return Result{}, nil, errors.New("the disk is full (a test)")
		})
	})
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()

	if applyErr != nil || applied.Model == nil || applied.Model.Status != training.Ready {
		t.Fatalf("the report: %+v, %v; want the model Ready", applied, applyErr)
	}
	if failErr == nil {
		t.Fatal("the failing job did not fail")
	}
	if got := svc.Completed(); got != 1 {
		t.Errorf("%d trainings counted completed, want 1", got)
	}
	d, err := svc.Model(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Model.Status != training.Ready || len(d.History) != 2 {
		t.Errorf("model %s, %d history rows; want Ready with 2 (registered, finished)", d.Model.Status, len(d.History))
	}
}

// Saturated says the writer had reports waiting when it finished a batch,
// and stops saying so once it has kept up for a moment.
func TestSaturated(t *testing.T) {
	ctx := context.Background()
	svc := newSQLiteService(t)
	noop := func(context.Context, store.Tx) (Result, []training.Model, error) { return Result{}, nil, nil }

	// One job at a time: the writer is never behind.
	for range 3 {
		if _, err := svc.write(ctx, noop); err != nil {
			t.Fatal(err)
		}
	}
	if svc.Saturated() {
		t.Fatal("Saturated after jobs that never waited")
	}

	// A job that holds the writer while another queues behind it.
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = svc.write(ctx, func(context.Context, store.Tx) (Result, []training.Model, error) {
			<-release
			return Result{}, nil, nil
		})
	})
	time.Sleep(50 * time.Millisecond)
	wg.Go(func() { _, _ = svc.write(ctx, noop) })
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if !svc.Saturated() {
		t.Fatal("not Saturated right after a batch finished with a report waiting")
	}
	time.Sleep(saturatedFor + 50*time.Millisecond)
	if svc.Saturated() {
		t.Errorf("still Saturated %s after the writer caught up", saturatedFor+50*time.Millisecond)
	}
}
