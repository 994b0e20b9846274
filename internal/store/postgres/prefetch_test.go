package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// These tests hold the prefetched path (Prefetch, then writes held back
// until the COMMIT) to the guarantees of the plain one.

// trainingModels inserts one model in training per training id, with an
// idempotency key "key-"+id, and returns them by training id.
func trainingModels(t *testing.T, s *Store, tids ...string) map[string]training.Model {
	t.Helper()
	out := map[string]training.Model{}
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error {
		for i, tid := range tids {
			m := training.Model{ID: training.NewID(base.Add(time.Duration(i) * time.Millisecond)), Name: "m " + tid,
				TrainingID: tid, IdempotencyKey: "key-" + tid, Status: training.Pending,
				Input: []byte(`{"steps": 10}`), CreatedAt: base, UpdatedAt: base}
			if err := tx.InsertModel(ctx, &m); err != nil {
				return err
			}
			out[tid] = m
		}
		return nil
	})
	return out
}

// deliver does in tx what the service does for a verified delivery of
// webhook id wid about training tid: it returns whether it was applied
// (not a duplicate), the model as written, and the delivery's id.
func deliver(ctx context.Context, tx store.Tx, tid, wid string, n int) (bool, training.Model, int64, error) {
	m, err := tx.ModelByTrainingID(ctx, tid)
	if err != nil {
		return false, m, 0, err
	}
	at := base.Add(time.Duration(n) * time.Second)
	fresh, err := tx.ClaimWebhookID(ctx, wid, at)
	if err != nil {
		return false, m, 0, err
	}
	d := training.Delivery{WebhookID: wid, ReceivedAt: at, Verified: true, TrainingID: tid, ModelID: m.ID,
		Payload: fmt.Appendf(nil, `{"id":%q,"n":%d}`, tid, n)}
	if !fresh {
		d.Outcome = "duplicate"
		id, err := tx.AddDelivery(ctx, d)
		return false, m, id, err
	}
	from := m.Status
	m.Status, m.RemoteStatus = training.Training, training.RemoteProcessing
	m.Progress = training.Progress{Percent: float64(n), Step: n, Total: 100, ETASeconds: 7}
	m.LogTail, m.LogLen, m.UpdatedAt = fmt.Sprintf("step %d\n", n), 10*n, at.Add(123*time.Nanosecond)
	if err := tx.UpdateModel(ctx, &m); err != nil {
		return false, m, 0, err
	}
	if err := tx.AddHistory(ctx, training.HistoryEntry{ModelID: m.ID, From: from, To: m.Status,
		Decision: training.Move, Source: training.SourceWebhook, SourceRef: wid, At: at}); err != nil {
		return false, m, 0, err
	}
	d.Outcome = "applied"
	id, err := tx.AddDelivery(ctx, d)
	return true, m, id, err
}

// await waits for ch to be closed, or fails the test after 10s: a
// regression that blocks one side of a race must fail the test, not hang it.
func await(t *testing.T, ch chan struct{}, what string) {
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Errorf("timed out waiting for %s", what)
	}
}

func keysFor(tids, wids []string) store.BatchKeys {
	return store.BatchKeys{TrainingIDs: tids, WebhookIDs: wids, Deliveries: len(wids)}
}

// A prefetched batch takes two round trips whatever its size: the
// prefetch (with BEGIN) and the writes (with COMMIT). What it stored is
// what the plain path stores, and what it read inside the transaction is
// what a read after the commit returns.
func TestPrefetchedBatchRoundTrips(t *testing.T) {
	s := openInstances(t, 1)[0]
	ctx := t.Context()
	for _, n := range []int{1, 10, 40} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var tids, wids []string
			for i := range n {
				tids = append(tids, fmt.Sprintf("rt%d-%d", n, i))
				wids = append(wids, fmt.Sprintf("msg_rt%d-%d", n, i))
			}
			trainingModels(t, s, tids...)
			inTx := map[string]training.Model{}
			ids := map[string]int64{}
			before := s.roundTrips.Load()
			err := s.Write(ctx, func(tx store.Tx) error {
				if err := tx.(store.Prefetcher).Prefetch(ctx, keysFor(tids, wids)); err != nil {
					return err
				}
				for i, tid := range tids {
					ok, _, id, err := deliver(ctx, tx, tid, wids[i], i+1)
					if err != nil || !ok {
						return fmt.Errorf("deliver %s: %v, %v", wids[i], ok, err)
					}
					ids[wids[i]] = id
					// The read after the update comes from the cache: it
					// must be what the server will hold.
					if inTx[tid], err = tx.ModelByTrainingID(ctx, tid); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.roundTrips.Load() - before; got != 2 {
				t.Errorf("a batch of %d deliveries took %d round trips, want 2", n, got)
			}
			for i, tid := range tids {
				stored, err := s.GetModel(ctx, inTx[tid].ID)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(stored, inTx[tid]) {
					t.Errorf("model %s read in the transaction:\n%+v\nread after the commit:\n%+v", tid, inTx[tid], stored)
				}
				if stored.Version != 2 || stored.Status != training.Training || stored.LogLen != 10*(i+1) {
					t.Errorf("model %s stored as %+v", tid, stored)
				}
				h, err := s.History(ctx, stored.ID)
				if err != nil || len(h) != 1 || h[0].SourceRef != wids[i] {
					t.Errorf("history of %s: %+v, %v; want one entry from %s", tid, h, err, wids[i])
				}
				d, err := s.GetDelivery(ctx, ids[wids[i]])
				if err != nil || d.WebhookID != wids[i] || d.Outcome != "applied" || d.ModelID != stored.ID {
					t.Errorf("delivery %d of %s: %+v, %v", ids[wids[i]], wids[i], d, err)
				}
			}
		})
	}
}

// Two instances deliver the same webhook id, each having found it
// unclaimed in its prefetch. The second to commit must not apply it: its
// Write fails with ErrRetry and stores nothing, and run again it finds a
// duplicate. The first claim is either committed before the second
// commits, or still in flight (the second's insert then waits for it).
func TestPrefetchedClaimRace(t *testing.T) {
	for _, inFlight := range []bool{false, true} {
		t.Run(fmt.Sprintf("inFlight=%v", inFlight), func(t *testing.T) {
			stores := openInstances(t, 2)
			a, b := stores[0], stores[1]
			ctx := t.Context()
			models := trainingModels(t, a, "race-a", "race-b")
			const wid = "msg_race"
			aPrefetched, aFlushed, aDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
			bPrefetched, bCommitting := make(chan struct{}), make(chan struct{})
			var (
				wg               sync.WaitGroup
				errA, errB       error
				lostID           int64
				aCommits, bEnded time.Time
			)
			wg.Go(func() {
				defer close(aDone)
				errA = a.Write(ctx, func(tx store.Tx) error {
					if err := tx.(store.Prefetcher).Prefetch(ctx, keysFor([]string{"race-a"}, []string{wid})); err != nil {
						return err
					}
					if ok, _, _, err := deliver(ctx, tx, "race-a", wid, 1); err != nil || !ok {
						return fmt.Errorf("a: %v, %v", ok, err)
					}
					close(aPrefetched)
					await(t, bPrefetched, "b to prefetch")
					if inFlight {
						// A read the cache does not cover sends the held
						// writes: the claim is made, not committed.
						if _, err := tx.ModelByIdempotencyKey(ctx, "key-race-a"); err != nil {
							return err
						}
						close(aFlushed)
						await(t, bCommitting, "b to commit")
						time.Sleep(300 * time.Millisecond) // b's insert now waits for this transaction
					}
					aCommits = time.Now()
					return nil
				})
			})
			wg.Go(func() {
				await(t, aPrefetched, "a to prefetch")
				errB = b.Write(ctx, func(tx store.Tx) error {
					if err := tx.(store.Prefetcher).Prefetch(ctx, keysFor([]string{"race-b"}, []string{wid, "msg_extra"})); err != nil {
						return err
					}
					if inFlight {
						// Two claims go as one statement: the check
						// covers both.
						if ok, err := tx.ClaimWebhookID(ctx, "msg_extra", base); err != nil || !ok {
							return fmt.Errorf("claim msg_extra: %v, %v", ok, err)
						}
					}
					ok, _, id, err := deliver(ctx, tx, "race-b", wid, 2)
					if err != nil || !ok {
						return fmt.Errorf("b found %s claimed in its prefetch (%v, %v): the race did not happen", wid, ok, err)
					}
					lostID = id
					close(bPrefetched)
					if inFlight {
						await(t, aFlushed, "a's claim")
					} else {
						await(t, aDone, "a to commit")
					}
					close(bCommitting)
					return nil
				})
				bEnded = time.Now()
			})
			wg.Wait()
			if errA != nil {
				t.Fatalf("a: %v", errA)
			}
			if !errors.Is(errB, store.ErrRetry) {
				t.Fatalf("b: %v; want ErrRetry", errB)
			}
			if inFlight && bEnded.Before(aCommits) {
				t.Errorf("b's commit returned before a committed: it did not wait for a's claim")
			}
			if _, err := b.GetDelivery(ctx, lostID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the delivery of b's rolled-back batch: %v; want ErrNotFound", err)
			}
			// Run again, as the service does: now a duplicate.
			mustWrite(t, b, func(ctx context.Context, tx store.Tx) error {
				if err := tx.(store.Prefetcher).Prefetch(ctx, keysFor([]string{"race-b"}, []string{wid})); err != nil {
					return err
				}
				ok, _, _, err := deliver(ctx, tx, "race-b", wid, 2)
				if err == nil && ok {
					err = errors.New("applied again")
				}
				return err
			})
			mustWrite(t, b, func(ctx context.Context, tx store.Tx) error {
				if ok, err := tx.ClaimWebhookID(ctx, "msg_extra", base); err != nil || !ok {
					return fmt.Errorf("msg_extra, claimed only in b's rolled-back batch: %v, %v; want it unclaimed", ok, err)
				}
				return nil
			})
			for tid, want := range map[string]int64{"race-a": 2, "race-b": 1} {
				m, err := a.GetModel(ctx, models[tid].ID)
				if err != nil || m.Version != want {
					t.Errorf("model of %s at version %d (%v), want %d", tid, m.Version, err, want)
				}
				h, _ := a.History(ctx, m.ID)
				if len(h) != int(want-1) {
					t.Errorf("model of %s has %d history entries, want %d", tid, len(h), want-1)
				}
			}
		})
	}
}

// The prefetch locks the models it reads: another instance's update of one
// waits for the commit and then finds it stale. An update at a version
// other than the locked one is stale at once, without a round trip.
func TestPrefetchLocksModels(t *testing.T) {
	stores := openInstances(t, 2)
	a, b := stores[0], stores[1]
	ctx := t.Context()
	m := trainingModels(t, a, "lock-a")["lock-a"]
	prefetched := make(chan struct{})
	var (
		wg        sync.WaitGroup
		errB      error
		bReturned time.Time
		aCommits  time.Time
	)
	wg.Go(func() {
		await(t, prefetched, "a to prefetch")
		other := m
		other.Error = "written by b"
		errB = b.Write(ctx, func(tx store.Tx) error { return tx.UpdateModel(ctx, &other) })
		bReturned = time.Now()
	})
	mustWrite(t, a, func(ctx context.Context, tx store.Tx) error {
		if err := tx.(store.Prefetcher).Prefetch(ctx, keysFor([]string{"lock-a"}, nil)); err != nil {
			return err
		}
		close(prefetched)
		time.Sleep(300 * time.Millisecond) // b's update is waiting for the lock
		got, err := tx.ModelByTrainingID(ctx, "lock-a")
		if err != nil {
			return err
		}
		trips := a.roundTrips.Load()
		old := got
		old.Version--
		if err := tx.UpdateModel(ctx, &old); !errors.Is(err, store.ErrStale) {
			return fmt.Errorf("update at an old version: %v; want ErrStale", err)
		}
		if n := a.roundTrips.Load() - trips; n != 0 {
			return fmt.Errorf("the stale update took %d round trips, want 0", n)
		}
		got.Error = "written by a"
		if err := tx.UpdateModel(ctx, &got); err != nil {
			return err
		}
		aCommits = time.Now()
		return nil
	})
	wg.Wait()
	if !errors.Is(errB, store.ErrStale) {
		t.Fatalf("b's update of the locked model: %v; want ErrStale", errB)
	}
	if bReturned.Before(aCommits) {
		t.Error("b's update returned before a committed: the prefetch did not lock the model")
	}
	stored, err := a.GetModel(ctx, m.ID)
	if err != nil || stored.Version != 2 || stored.Error != "written by a" {
		t.Errorf("stored %+v, %v; want a's write at version 2", stored, err)
	}
}

// A read the prefetch does not cover goes to the server after the held
// writes, so it sees them; reads it covers see them from the cache, claims
// included, and nothing of it is visible outside before the commit.
func TestUncoveredReadSeesHeldWrites(t *testing.T) {
	stores := openInstances(t, 2)
	s, other := stores[0], stores[1]
	ctx := t.Context()
	models := trainingModels(t, s, "read-a", "read-b")
	mustWrite(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.(store.Prefetcher).Prefetch(ctx, keysFor([]string{"read-a"}, []string{"msg_read"})); err != nil {
			return err
		}
		ok, written, _, err := deliver(ctx, tx, "read-a", "msg_read", 5)
		if err != nil || !ok {
			return fmt.Errorf("deliver: %v, %v", ok, err)
		}
		if dup, err := tx.ClaimWebhookID(ctx, "msg_read", base); err != nil || dup {
			return fmt.Errorf("second claim of msg_read in the batch: %v, %v; want false", dup, err)
		}
		if m, err := other.GetModel(ctx, written.ID); err != nil || m.Version != 1 {
			return fmt.Errorf("another instance sees version %d (%v) before the commit, want 1", m.Version, err)
		}
		trips := s.roundTrips.Load()
		// By idempotency key: not prefetched.
		got, err := tx.ModelByIdempotencyKey(ctx, "key-read-a")
		if err != nil {
			return err
		}
		if n := s.roundTrips.Load() - trips; n != 1 {
			return fmt.Errorf("the uncovered read took %d round trips, want 1", n)
		}
		if got.Version != 2 || got.LogTail != written.LogTail || got.Status != training.Training {
			return fmt.Errorf("the uncovered read returned version %d %q %s; want the held update (version 2)", got.Version, got.LogTail, got.Status)
		}
		// Not prefetched either: read from the server, and unchanged.
		if b, err := tx.ModelByID(ctx, models["read-b"].ID); err != nil || b.Version != 1 {
			return fmt.Errorf("read-b: version %d, %v", b.Version, err)
		}
		return nil
	})
	m, err := other.GetModel(ctx, models["read-a"].ID)
	if err != nil || m.Version != 2 {
		t.Errorf("after the commit: version %d, %v; want 2", m.Version, err)
	}
}

// The prefetch finds its models through the two unique indexes, so its
// cost follows the batch, not the table. (Bitmap scans are how PostgreSQL
// serves an OR of two indexed conditions.)
func TestPrefetchQueryPlan(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "RESET enable_seqscan")
	for _, q := range []string{prefetchModels, prefetchNotifyURLs} {
		rows, err := conn.Query(ctx, "EXPLAIN "+q, []string{"t1", "t2"}, []string{"m1"})
		if err != nil {
			t.Fatalf("EXPLAIN: %v", err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "models_training_id") || !strings.Contains(plan, "models_pkey") || strings.Contains(plan, "Seq Scan on models") {
			t.Errorf("plan of\n%s\n%s\nwant the models_training_id and models_pkey indexes, no sequential scan of models", q, plan)
		}
	}
}
