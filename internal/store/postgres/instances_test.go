package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// These tests run several Stores on one database, as several trainhook
// instances would: each Store has its own pool, so they meet only in the
// database.

// openInstances opens n stores on one new database.
func openInstances(t *testing.T, n int) []*Store {
	t.Helper()
	url := pgtest.URL(t)
	stores := make([]*Store, n)
	for i := range stores {
		s, err := Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	return stores
}

var base = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func mustWrite(t *testing.T, s *Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := s.Write(ctx, func(tx store.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func dueModels(t *testing.T, s *Store, n int) []string {
	t.Helper()
	ids := make([]string, n)
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range ids {
			next := base.Add(-time.Duration(n-i) * time.Second)
			m := training.Model{ID: training.NewID(base.Add(time.Duration(i) * time.Millisecond)), Name: fmt.Sprint("m", i),
				Status: training.Training, CreatedAt: base, UpdatedAt: base, NextCheckAt: &next}
			if err := tx.InsertModel(ctx, &m); err != nil {
				return err
			}
			ids[i] = m.ID
		}
		return nil
	})
	return ids
}

// Three instances polling at once claim each due model exactly once.
func TestClaimDueAcrossInstances(t *testing.T) {
	stores := openInstances(t, 3)
	ids := dueModels(t, stores[0], 300)
	var (
		mu      sync.Mutex
		claimed []string
		wg      sync.WaitGroup
	)
	for _, s := range stores {
		for range 3 { // pollers per instance
			wg.Go(func() {
				for {
					var got []training.Model
					err := s.Write(t.Context(), func(tx store.Tx) error {
						var err error
						got, err = tx.ClaimDue(t.Context(), base, base.Add(time.Hour), 7)
						return err
					})
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, m := range got {
						claimed = append(claimed, m.ID)
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	slices.Sort(claimed)
	if !slices.Equal(claimed, ids) {
		t.Errorf("claimed %d models (%d distinct), want each of %d once", len(claimed), len(slices.Compact(slices.Clone(claimed))), len(ids))
	}
}

// A claim in progress does not hold up another instance's claim: it passes
// over the locked rows (SKIP LOCKED) and takes the next ones; and a row a
// webhook is updating is passed over too, not waited for.
func TestClaimDueSkipsLockedRows(t *testing.T) {
	stores := openInstances(t, 2)
	a, b := stores[0], stores[1]
	ids := dueModels(t, a, 5)

	holding, release := make(chan []string), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Write(t.Context(), func(tx store.Tx) error {
			got, err := tx.ClaimDue(t.Context(), base, base.Add(time.Hour), 2)
			if err != nil {
				close(holding)
				return err
			}
			// And a webhook's update of another model, uncommitted.
			m, err := tx.ModelByID(t.Context(), ids[4])
			if err != nil {
				close(holding)
				return err
			}
			m.Progress.Percent = 50
			if err := tx.UpdateModel(t.Context(), &m); err != nil {
				close(holding)
				return err
			}
			holding <- modelIDs(got)
			<-release
			return nil
		})
	}()
	first, ok := <-holding
	if !ok {
		t.Fatal(<-done)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	var second []training.Model
	err := b.Write(ctx, func(tx store.Tx) error {
		var err error
		second, err = tx.ClaimDue(ctx, base, base.Add(time.Hour), 10)
		return err
	})
	close(release)
	if err != nil {
		t.Fatalf("claim while another claim is open: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the second claim took %v: it waited for the first", took)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := ids[:2]; !slices.Equal(first, want) {
		t.Errorf("first claim = %v, want %v", first, want)
	}
	if want := ids[2:4]; !slices.Equal(modelIDs(second), want) {
		t.Errorf("second claim = %v, want %v (not the first claim's, not the row being updated)", modelIDs(second), want)
	}
}

func modelIDs(ms []training.Model) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// An instance dies holding leases: another takes its models over when the
// leases run out, not before.
func TestLeaseTakeoverAfterInstanceDies(t *testing.T) {
	stores := openInstances(t, 2)
	dead, alive := stores[0], stores[1]
	ids := dueModels(t, dead, 3)
	lease := base.Add(5 * time.Minute)
	claim := func(s *Store, now time.Time) []string {
		t.Helper()
		var got []training.Model
		mustWrite(t, s, func(ctx context.Context, tx store.Tx) error {
			var err error
			got, err = tx.ClaimDue(ctx, now, now.Add(5*time.Minute), 10)
			return err
		})
		return modelIDs(got)
	}
	if got := claim(dead, base); !slices.Equal(got, ids) {
		t.Fatalf("claim = %v, want %v", got, ids)
	}
	dead.Close()
	if got := claim(alive, base.Add(time.Minute)); len(got) != 0 {
		t.Errorf("claimed %v while the dead instance's lease runs", got)
	}
	if got := claim(alive, lease); !slices.Equal(got, ids) {
		t.Errorf("claim after the lease = %v, want %v", got, ids)
	}
}

// The same webhook delivered to three instances at once is applied once.
func TestClaimWebhookIDAcrossInstances(t *testing.T) {
	stores := openInstances(t, 3)
	const n = 200
	wins := make([]int, n)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, s := range stores {
		wg.Go(func() {
			// Batches of 10, in the same order on every instance (in
			// opposite orders two batches could deadlock, and PostgreSQL
			// would fail one of them; the service then retries each report
			// on its own).
			for lo := 0; lo < n; lo += 10 {
				var got []int
				err := s.Write(t.Context(), func(tx store.Tx) error {
					got = got[:0]
					for i := lo; i < lo+10; i++ {
						ok, err := tx.ClaimWebhookID(t.Context(), fmt.Sprintf("msg_%03d", i), base)
						if err != nil {
							return err
						}
						if ok {
							got = append(got, i)
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, i := range got {
					wins[i]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for i, w := range wins {
		if w != 1 {
			t.Errorf("msg_%03d claimed %d times, want once", i, w)
		}
	}
}

// Two instances give the same training id to two models at once (a bind
// racing a bind, and an insert racing a bind): one wins, the other gets
// ErrDuplicate, and the loser's transaction goes on and commits the rest of
// its batch. Without the advisory locks the loser's statement would fail on
// the unique index and PostgreSQL would abort its whole batch.
func TestUniqueValueRaceKeepsBatches(t *testing.T) {
	stores := openInstances(t, 2)
	const rounds = 30
	for round := range rounds {
		trainingID := fmt.Sprintf("tr-race-%d", round)
		a := training.Model{ID: training.NewID(base), Name: "a", Status: training.Pending, CreatedAt: base}
		b := training.Model{ID: training.NewID(base), Name: "b", Status: training.Pending, CreatedAt: base}
		mustWrite(t, stores[0], func(ctx context.Context, tx store.Tx) error {
			if err := tx.InsertModel(ctx, &a); err != nil {
				return err
			}
			return tx.InsertModel(ctx, &b)
		})
		ready := make(chan struct{})
		var wg sync.WaitGroup
		results := make([]error, 2)
		extras := make([]training.Model, 2)
		for i, s := range stores {
			extras[i] = training.Model{ID: training.NewID(base), Name: "extra", Status: training.Pending, CreatedAt: base}
			wg.Go(func() {
				err := s.Write(t.Context(), func(tx store.Tx) error {
					ctx := t.Context()
					var bindErr error
					if i == 0 || round%2 == 0 {
						m, err := tx.ModelByID(ctx, []string{a.ID, b.ID}[i])
						if err != nil {
							return err
						}
						m.TrainingID = trainingID
						<-ready
						bindErr = tx.UpdateModel(ctx, &m)
					} else {
						m := training.Model{ID: training.NewID(base), Name: "new", TrainingID: trainingID, Status: training.Pending, CreatedAt: base}
						<-ready
						bindErr = tx.InsertModel(ctx, &m)
					}
					results[i] = bindErr
					if bindErr != nil && !errors.Is(bindErr, store.ErrDuplicate) {
						return bindErr
					}
					return tx.InsertModel(ctx, &extras[i]) // the rest of the batch
				})
				if err != nil {
					t.Errorf("round %d, instance %d: Write failed: %v", round, i, err)
				}
			})
		}
		close(ready)
		wg.Wait()
		if t.Failed() {
			return
		}
		wins := 0
		for i, err := range results {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, store.ErrDuplicate):
				t.Errorf("round %d, instance %d: %v", round, i, err)
			}
			if _, err := stores[0].GetModel(t.Context(), extras[i].ID); err != nil {
				t.Errorf("round %d, instance %d: the rest of the batch was lost: %v", round, i, err)
			}
		}
		if wins != 1 {
			t.Errorf("round %d: %d instances set training id %s, want 1 (%v)", round, wins, trainingID, results)
		}
	}
}

// A statement that fails on the server (here: canceled while it waits for a
// row lock) aborts the transaction. Whatever fn does afterwards fails too,
// and Write fails: nothing of it commits.
func TestFailedStatementFailsTheWrite(t *testing.T) {
	stores := openInstances(t, 2)
	a, b := stores[0], stores[1]
	ids := dueModels(t, a, 1)
	locked, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Write(t.Context(), func(tx store.Tx) error {
			m, err := tx.ModelByID(t.Context(), ids[0])
			if err != nil {
				return err
			}
			if err := tx.UpdateModel(t.Context(), &m); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	before := training.Model{ID: training.NewID(base), Name: "before", Status: training.Pending, CreatedAt: base}
	after := training.Model{ID: training.NewID(base), Name: "after", Status: training.Pending, CreatedAt: base}
	var updateErr, afterErr error
	err := b.Write(t.Context(), func(tx store.Tx) error {
		if err := tx.InsertModel(t.Context(), &before); err != nil {
			return err
		}
		m, err := tx.ModelByID(t.Context(), ids[0])
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		updateErr = tx.UpdateModel(ctx, &m) // waits for a's row lock
		afterErr = tx.InsertModel(t.Context(), &after)
		return nil // a careless fn ignores errors
	})
	close(release)
	if e := <-done; e != nil {
		t.Fatal(e)
	}
	if updateErr == nil || afterErr == nil || err == nil {
		t.Fatalf("update: %v; insert after: %v; Write: %v; want all three to fail", updateErr, afterErr, err)
	}
	for _, m := range []training.Model{before, after} {
		if _, err := a.GetModel(t.Context(), m.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("model %q of the failed Write: %v, want ErrNotFound", m.Name, err)
		}
	}
	// The pool is fine afterwards.
	mustWrite(t, b, func(ctx context.Context, tx store.Tx) error { return tx.InsertModel(ctx, &before) })
}

// Text PostgreSQL cannot store (NUL bytes, invalid UTF-8) is stored with
// U+FFFD in their place instead of failing the batch; lookups with the same
// text find it.
func TestUnstorableText(t *testing.T) {
	s, _ := openTest(t)
	bad := "a\x00b\xffc"
	m := training.Model{ID: training.NewID(base), Name: bad, TrainingID: "tr-" + bad, LogTail: bad,
		Status: training.Training, CreatedAt: base, Input: []byte(`{"s":"x\u0000y","raw":"` + "\xff" + `"}`)}
	ok := training.Model{ID: training.NewID(base), Name: "ok", Status: training.Pending, CreatedAt: base}
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertModel(ctx, &m); err != nil {
			return err
		}
		if _, err := tx.AddDelivery(ctx, training.Delivery{WebhookID: bad, Reason: bad, Payload: []byte(bad)}); err != nil {
			return err
		}
		if _, err := tx.ClaimWebhookID(ctx, bad, base); err != nil {
			return err
		}
		return tx.InsertModel(ctx, &ok)
	})
	want := "a\uFFFDb\uFFFDc"
	got, err := s.GetModel(t.Context(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != want || got.LogTail != want || got.TrainingID != "tr-"+want {
		t.Errorf("stored %q, %q, %q; want %q", got.Name, got.LogTail, got.TrainingID, want)
	}
	if !strings.Contains(string(got.Input), `x\u0000y`) {
		t.Errorf("input %s lost its escaped NUL", got.Input)
	}
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.ModelByTrainingID(ctx, "tr-"+bad); err != nil {
			t.Errorf("ModelByTrainingID with the same bad text: %v", err)
		}
		if again, err := tx.ClaimWebhookID(ctx, bad, base); err != nil || again {
			t.Errorf("second claim of the bad webhook id = %v, %v; want false", again, err)
		}
		return nil
	})
	ds, err := s.ListDeliveries(t.Context(), store.DeliveryFilter{Limit: 10})
	if err != nil || len(ds) != 1 || string(ds[0].Payload) != bad {
		t.Errorf("deliveries = %+v, %v; want one, payload kept byte for byte", ds, err)
	}
}

// Invalid JSON is refused before it reaches the server, so the transaction
// goes on.
func TestInvalidJSONKeepsTheTransaction(t *testing.T) {
	s, _ := openTest(t)
	badJSON := training.Model{ID: training.NewID(base), Name: "bad", Status: training.Pending, CreatedAt: base, Input: []byte(`{"a":`)}
	ok := training.Model{ID: training.NewID(base), Name: "ok", Status: training.Pending, CreatedAt: base}
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertModel(ctx, &badJSON); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("InsertModel with invalid JSON: %v", err)
		}
		return tx.InsertModel(ctx, &ok)
	})
	if _, err := s.GetModel(t.Context(), ok.ID); err != nil {
		t.Error(err)
	}
}
