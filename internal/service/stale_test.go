package service

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/postgres"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// openStores opens each store the service runs on: SQLite always,
// PostgreSQL when a test server is configured (see pgtest).
func openStores(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "trainhook.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"postgres": func(t *testing.T) store.Store {
			url := pgtest.URL(t)
			st, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
}

// racedStore makes the next conditional update of a model lose a race: just
// before the service's write, "another writer" (here, the same transaction)
// moves the model's NextCheckAt and so its version, as a poller on another
// instance would, and the service's update then meets a real ErrStale.
// With failReread set, the re-read that follows fails too.
type racedStore struct {
	store.Store
	armed      atomic.Bool
	failReread atomic.Bool
	reread     atomic.Bool
	// otherTraining, when set, is a training id the racing writer binds.
	otherTraining string
}

func (s *racedStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Write(ctx, func(tx store.Tx) error { return fn(&racedTx{Tx: tx, s: s}) })
}

type racedTx struct {
	store.Tx
	s *racedStore
}

func (t *racedTx) UpdateModel(ctx context.Context, m *training.Model) error {
	if t.s.armed.CompareAndSwap(true, false) {
		other, err := t.Tx.ModelByID(ctx, m.ID)
		if err != nil {
			return err
		}
		later := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
		other.NextCheckAt = &later
		if t.s.otherTraining != "" {
			other.TrainingID = t.s.otherTraining
		}
		if err := t.Tx.UpdateModel(ctx, &other); err != nil {
			return err
		}
		t.s.reread.Store(true)
	}
	return t.Tx.UpdateModel(ctx, m)
}

func (t *racedTx) ModelByID(ctx context.Context, id string) (training.Model, error) {
	if t.s.reread.Load() && t.s.failReread.Load() {
		return training.Model{}, errors.New("the connection broke (a test)")
	}
	return t.Tx.ModelByID(ctx, id)
}

// insertUnbound stores a model whose training id is not known yet, as a
// start whose create's answer was lost leaves it.
func insertUnbound(t *testing.T, st store.Store) training.Model {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	m := training.Model{ID: training.NewID(now), Name: "unbound", Status: training.Pending, CreatedAt: now, UpdatedAt: now}
	if err := st.Write(context.Background(), func(tx store.Tx) error { return tx.InsertModel(context.Background(), &m) }); err != nil {
		t.Fatal(err)
	}
	return m
}

// A report that binds a training id to its model (the per-model webhook URL)
// and whose write loses a race must still bind the id after re-reading, and
// must then apply the reports held for that training id.
func TestBindingSurvivesStaleWrite(t *testing.T) {
	for name, open := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := &racedStore{Store: open(t)}
			svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
			t.Cleanup(svc.Close)
			m := insertUnbound(t, st)

			// A report for the training arrives before anyone knows its model: held.
			held, err := svc.Observe(ctx, training.Observation{
				TrainingID: "tr-bind-stale", Remote: training.RemoteProcessing, Source: training.SourceWebhook,
				Logs: "step 1/10\n",
			})
			if err != nil || held.Outcome != OutcomeHeld {
				t.Fatalf("first report: %+v, %v; want it held", held, err)
			}

			st.armed.Store(true)
			res, err := svc.Observe(ctx, training.Observation{
				ModelID: m.ID, TrainingID: "tr-bind-stale", Remote: training.RemoteSucceeded, Source: training.SourceWebhook,
				Output: json.RawMessage(`{"version":"acme/x:0123","weights":"https://example.com/w.tar"}`),
			})
			if err != nil {
				t.Fatalf("binding report: %v", err)
			}
			if !st.reread.Load() {
				t.Fatal("the update did not meet the raced write: the test tests nothing")
			}
			if res.Model == nil {
				t.Fatalf("binding report: %+v; want a model in the result", res)
			}
			if res.Model.TrainingID != "tr-bind-stale" {
				t.Errorf("the result's model has training id %q; want tr-bind-stale", res.Model.TrainingID)
			}
			got, err := st.GetModel(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.TrainingID != "tr-bind-stale" || got.Status != training.Ready {
				t.Errorf("stored model: training id %q, status %s; want tr-bind-stale, Ready", got.TrainingID, got.Status)
			}
			var left []training.Observation
			if err := st.Write(ctx, func(tx store.Tx) error {
				left, err = tx.TakeHeld(ctx, "tr-bind-stale")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if len(left) != 0 {
				t.Errorf("%d reports still held for tr-bind-stale; want them applied when the id was bound", len(left))
			}
		})
	}
}

// When the re-read after a lost race fails, the error names the model.
func TestStaleRereadErrorNamesModel(t *testing.T) {
	ctx := context.Background()
	st := &racedStore{Store: openStores(t)["sqlite"](t)}
	svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(svc.Close)
	m := insertUnbound(t, st)
	st.armed.Store(true)
	st.failReread.Store(true)
	_, err := svc.Observe(ctx, training.Observation{
		ModelID: m.ID, TrainingID: "tr-reread", Remote: training.RemoteProcessing, Source: training.SourceWebhook,
	})
	if err == nil {
		t.Fatal("the report was applied though the re-read failed")
	}
	if want := "re-read model " + m.ID + ":"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q; want it to contain %q", err, want)
	}
}

// When the racing writer bound another training to the model, the report
// that would bind its own is not applied to a model tracking another
// training.
func TestBindingLosesToAnotherBinding(t *testing.T) {
	ctx := context.Background()
	st := &racedStore{Store: openStores(t)["sqlite"](t), otherTraining: "tr-won-race"}
	svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(svc.Close)
	m := insertUnbound(t, st)
	st.armed.Store(true)
	_, err := svc.Observe(ctx, training.Observation{
		ModelID: m.ID, TrainingID: "tr-lost-race", Remote: training.RemoteSucceeded, Source: training.SourceWebhook,
		Output: json.RawMessage(`{"version":"acme/x:0123","weights":"https://example.com/w.tar"}`),
	})
	if err == nil || !strings.Contains(err.Error(), "tracks training tr-won-race, not tr-lost-race") {
		t.Fatalf("error %v; want the report refused as for another training", err)
	}
	got, err := st.GetModel(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The racing write shares the refused report's transaction here, so it
	// is rolled back with it: the model is as it was.
	if got.TrainingID != "" || got.Status != training.Pending {
		t.Errorf("stored model: training id %q, status %s; want it unchanged (unbound, Pending)", got.TrainingID, got.Status)
	}
}
