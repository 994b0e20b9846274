package service

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// prefetchStore is a store whose transactions read ahead (store.Prefetcher),
// recording the keys they are given, and whose first Write loses a race
// (store.ErrRetry) without storing anything, as a PostgreSQL batch does
// when another instance claims one of its webhook ids first.
type prefetchStore struct {
	store.Store
	mu     sync.Mutex
	writes int
	keys   []store.BatchKeys
}

type prefetchTx struct {
	store.Tx
	s *prefetchStore
}

func (t prefetchTx) Prefetch(_ context.Context, k store.BatchKeys) error {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.s.keys = append(t.s.keys, k)
	return nil
}

func (s *prefetchStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	s.mu.Lock()
	s.writes++
	first := s.writes == 1
	s.mu.Unlock()
	if first {
		// Run the batch, then roll it back as a lost race does.
		_ = s.Store.Write(ctx, func(tx store.Tx) error {
			if err := fn(prefetchTx{tx, s}); err != nil {
				return err
			}
			return store.ErrRetry
		})
		return store.ErrRetry
	}
	return s.Store.Write(ctx, func(tx store.Tx) error { return fn(prefetchTx{tx, s}) })
}

// A delivery's batch tells the store what it will read (training id,
// model id, webhook id, one delivery) before running, and a batch that
// lost a race is run again as a whole: the delivery is applied once.
func TestBatchPrefetchesAndRunsAgainAfterALostRace(t *testing.T) {
	ctx := context.Background()
	base, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	st := &prefetchStore{Store: base}
	svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(svc.Close)
	// Register before counting: it is a batch of its own.
	st.mu.Lock()
	st.writes = 1
	st.mu.Unlock()
	m, _, err := svc.Register(ctx, RegisterRequest{TrainingID: "tr-prefetch"})
	if err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	st.writes, st.keys = 0, nil
	st.mu.Unlock()

	res, err := svc.Deliver(ctx, training.Observation{TrainingID: "tr-prefetch", ModelID: m.ID, Remote: training.RemoteProcessing,
		Source: training.SourceWebhook}, training.Delivery{WebhookID: "msg_prefetch", TrainingID: "tr-prefetch"})
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if res.Outcome == OutcomeDuplicate {
		t.Fatalf("outcome %s: the rolled-back first run counted as a claim", res.Outcome)
	}
	st.mu.Lock()
	writes, keys := st.writes, slices.Clone(st.keys)
	st.mu.Unlock()
	if writes != 2 {
		t.Errorf("%d Writes, want 2 (the lost race, then the batch again)", writes)
	}
	want := store.BatchKeys{TrainingIDs: []string{"tr-prefetch"}, ModelIDs: []string{m.ID}, WebhookIDs: []string{"msg_prefetch"}, Deliveries: 1}
	if len(keys) != 2 {
		t.Fatalf("Prefetch called %d times, want once per run: %+v", len(keys), keys)
	}
	for _, k := range keys {
		if !slices.Equal(k.TrainingIDs, want.TrainingIDs) || !slices.Equal(k.ModelIDs, want.ModelIDs) ||
			!slices.Equal(k.WebhookIDs, want.WebhookIDs) || k.Deliveries != want.Deliveries {
			t.Errorf("Prefetch got %+v, want %+v", k, want)
		}
	}
	d, err := svc.Model(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Model.Status != training.Training || len(d.History) != 2 {
		t.Errorf("model %s with %d history entries; want Training with 2 (registered, started)", d.Model.Status, len(d.History))
	}
	ds, err := base.ListDeliveries(ctx, store.DeliveryFilter{Limit: 10})
	if err != nil || len(ds) != 1 {
		t.Errorf("%d deliveries stored (%v), want 1", len(ds), err)
	}
}
