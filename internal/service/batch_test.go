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

// A batch whose transaction fails is retried job by job; what a job's first
// attempt counted inside the rolled-back transaction must not count again.
// Here a report that finishes a training shares a batch with a job that
// fails it: the training is counted completed once, not twice.
func TestFailedBatchCountsOnce(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(svc.Close)
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

// A delivery's model is read before it is queued (Deliver), and may be
// stale when the writer gets to it. Deciding on the stale read must come to
// what deciding on the stored model would: a late processing is stale, a
// repeat of the outcome changes nothing, a different outcome is flagged.
func TestStaleReadBeforeTheWriter(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(svc.Close)
	m, _, err := svc.Register(ctx, RegisterRequest{TrainingID: "stale-read"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Observe(ctx, training.Observation{TrainingID: "stale-read", Remote: training.RemoteProcessing, Source: training.SourcePoll}); err != nil {
		t.Fatal(err)
	}
	stale, err := st.ModelByTrainingID(ctx, "stale-read") // Training
	if err != nil {
		t.Fatal(err)
	}
	output := json.RawMessage(`{"version":"acme/x:0123","weights":"https://example.com/w.tar"}`)
	if _, err := svc.Observe(ctx, training.Observation{TrainingID: "stale-read", Remote: training.RemoteSucceeded, Source: training.SourcePoll, Output: output}); err != nil {
		t.Fatal(err)
	}
	ready, err := st.GetModel(ctx, m.ID)
	if err != nil || ready.Status != training.Ready {
		t.Fatalf("model %+v, %v; want Ready", ready, err)
	}

	deliver := func(id, remote string, stale training.Model) Result {
		t.Helper()
		obs := training.Observation{TrainingID: "stale-read", Remote: remote, Source: training.SourceWebhook, SourceRef: id, Output: output}
		if remote == training.RemoteFailed {
			obs.Output, obs.Error = nil, "out of memory"
		}
		read := stale
		res, err := svc.wait(ctx, &job{ctx: ctx, obs: obs, read: &read, done: make(chan jobResult, 1),
			delivery: &training.Delivery{WebhookID: id, ReceivedAt: time.Now(), Verified: true, TrainingID: "stale-read", RemoteStatus: remote, Payload: []byte(`{}`)}})
		if err != nil {
			t.Fatalf("deliver %s: %v", remote, err)
		}
		return res
	}
	for _, c := range []struct {
		remote, outcome string
		flagged         bool
	}{
		{training.RemoteProcessing, string(training.Stale), false},
		{training.RemoteSucceeded, string(training.Same), false},
		{training.RemoteFailed, string(training.Conflict), true},
	} {
		res := deliver("msg_stale_"+c.remote, c.remote, stale)
		got, err := st.GetModel(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome != c.outcome || got.Status != training.Ready || got.Flagged != c.flagged || string(got.Output) != string(output) {
			t.Errorf("%s on a stale read: outcome %q, model %s flagged %v output %s; want %q, Ready, flagged %v, the output kept",
				c.remote, res.Outcome, got.Status, got.Flagged, got.Output, c.outcome, c.flagged)
		}
		if res.Model == nil || res.Model.Status != training.Ready {
			t.Errorf("%s on a stale read answered with model %+v; want it as stored (Ready)", c.remote, res.Model)
		}
	}
	// Read when it was Ready and not yet flagged: a late processing changes
	// nothing, and the answer shows the model as stored, flagged.
	res := deliver("msg_stale_late", training.RemoteProcessing, ready)
	if res.Outcome != string(training.Stale) || res.Model == nil || !res.Model.Flagged {
		t.Errorf("a late processing on a stale read of the Ready model: %q, %+v; want %q with the model flagged", res.Outcome, res.Model, training.Stale)
	}
	d, err := svc.Model(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Registered, Training, Ready, and the flagged conflict.
	if len(d.History) != 4 {
		t.Errorf("%d history rows, want 4: %+v", len(d.History), d.History)
	}
}
