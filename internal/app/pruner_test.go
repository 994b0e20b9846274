package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// syncBuffer is a log destination safe for the app's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run prunes by itself soon after start and then periodically: old rows
// disappear without anyone calling Prune, what went is logged (held reports
// by training id, at warn level), and the loop stops with Run, leaving no
// goroutine behind.
func TestRunPrunesPeriodically(t *testing.T) {
	before := goleak.IgnoreCurrent()
	vars := map[string]string{"DATABASE_URL": freshDatabase(t, "prune.db"), "ADDR": "127.0.0.1:0"}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := Start(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.pruneFirst, a.pruneEvery = 10*time.Millisecond, 20*time.Millisecond

	old := time.Now().Add(-40 * 24 * time.Hour)
	if err := a.Store.Write(ctx, func(tx store.Tx) error {
		if _, err := tx.AddDelivery(ctx, training.Delivery{WebhookID: "msg_old", ReceivedAt: old, Verified: true, Outcome: "held",
			TrainingID: "tr-nobody", Payload: []byte(`{"id":"tr-nobody","status":"starting"}`)}); err != nil {
			return err
		}
		if _, err := tx.ClaimWebhookID(ctx, "msg_old", old); err != nil {
			return err
		}
		if err := tx.HoldObservation(ctx, training.Observation{TrainingID: "tr-nobody", Remote: "starting", Source: training.SourceWebhook, At: old}); err != nil {
			return err
		}
		m := training.Model{ID: training.NewID(old), Name: "notified long ago", Status: training.Ready, CreatedAt: old}
		if err := tx.InsertModel(ctx, &m); err != nil {
			return err
		}
		return tx.AddNotification(ctx, store.NewNotification{EventID: "evt_old", ModelID: m.ID, Type: "model.ready", Sequence: 1,
			At: old, Model: []byte(`{}`), URLs: []string{"http://127.0.0.1:9/hook"}})
	}); err != nil {
		t.Fatal(err)
	}
	// Delivered long ago: retention takes it with the deliveries.
	ns, err := a.Store.ClaimNotifications(ctx, old, old.Add(time.Minute), 10)
	if err != nil || len(ns) != 1 {
		t.Fatalf("claim the old notification: %v, %v", ns, err)
	}
	if err := a.Store.FinishNotification(ctx, ns[0].ID, ns[0].Lease, store.NotificationResult{Status: store.NotifyDelivered,
		Attempt: store.NotificationAttempt{At: old, StatusCode: 200}}); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds, err := a.Store.ListDeliveries(ctx, store.DeliveryFilter{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 && a.pruneMetrics.rows.Value("held") == 1 && a.pruneMetrics.rows.Value("notifications") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old rows not pruned within 10s: %d deliveries left; log:\n%s", len(ds), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ns, err := a.Store.ListNotifications(ctx, store.NotificationFilter{Limit: 10}); err != nil || len(ns) != 0 {
		t.Errorf("notifications after the prunes: %d, %v; want the old delivered one gone", len(ns), err)
	}
	// A few more rounds with nothing to do.
	for a.pruneMetrics.runs.Value("ok") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	log := logs.String()
	for _, want := range []string{
		`level=INFO msg="retention pruned old records" verified_deliveries=1`,
		`level=WARN msg="retention deleted early reports held for training ids that no model claimed`,
		`training_ids=[tr-nobody]`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if n := a.pruneMetrics.rows.Value("webhook_ids"); n != 1 {
		t.Errorf("webhook_ids pruned = %d, want 1", n)
	}
	if n := a.pruneMetrics.runs.Value("error"); n != 0 {
		t.Errorf("%d prunes failed:\n%s", n, log)
	}
	goleak.VerifyNone(t, before)
}

func TestRetentionPolicy(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		cfg  config.Config
		want store.PrunePolicy
	}{
		{"defaults", config.Config{Retention: 30 * day, RefusedRetention: 7 * day, RefusedMax: 100000}, store.PrunePolicy{
			VerifiedBefore: now.Add(-30 * day), RefusedBefore: now.Add(-7 * day), RefusedKeep: 100000,
			ClaimsBefore: now.Add(-30 * day), HeldBefore: now.Add(-30 * day), NotificationsBefore: now.Add(-30 * day)}},
		{"short retention keeps claims and held reports 3 days", config.Config{Retention: time.Hour, RefusedRetention: time.Hour}, store.PrunePolicy{
			VerifiedBefore: now.Add(-time.Hour), RefusedBefore: now.Add(-time.Hour),
			ClaimsBefore: now.Add(-MinClaimRetention), HeldBefore: now.Add(-MinClaimRetention), NotificationsBefore: now.Add(-time.Hour)}},
		{"everything off", config.Config{}, store.PrunePolicy{}},
		{"verified off, refused on", config.Config{RefusedRetention: 7 * day}, store.PrunePolicy{RefusedBefore: now.Add(-7 * day)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetentionPolicy(tc.cfg, now); got != tc.want {
				t.Errorf("RetentionPolicy = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
