package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

func claimDue(t *testing.T, s store.Store, now, lease time.Time, limit int) []training.Model {
	t.Helper()
	var got []training.Model
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		got, err = tx.ClaimDue(ctx, now, lease, limit)
		return err
	})
	return got
}

func testClaimDue(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(i int, st training.Status, next *time.Time) *training.Model {
		m := fullModel(newID(i))
		m.Status, m.NextCheckAt = st, next
		return &m
	}
	now := base
	var (
		a = mk(1, training.Pending, ptr(now.Add(-3*time.Minute)))
		b = mk(2, training.Training, ptr(now.Add(-2*time.Minute)))
		c = mk(3, training.Training, ptr(now.Add(-time.Minute))) // no training id yet: still polled
		d = mk(4, training.Training, ptr(now))                   // due exactly now
		// Not due:
		ready    = mk(5, training.Ready, ptr(now.Add(-5*time.Minute)))
		failed   = mk(6, training.Failed, ptr(now.Add(-5*time.Minute)))
		canceled = mk(7, training.Canceled, ptr(now.Add(-5*time.Minute)))
		never    = mk(8, training.Training, nil)
		later    = mk(9, training.Training, ptr(now.Add(10*time.Minute)))
	)
	c.TrainingID = ""
	insert(t, s, ready, d, later, b, never, failed, a, canceled, c)
	readBefore := getModel(t, s, a.ID)

	lease := now.Add(5 * time.Minute)
	got := claimDue(t, s, now, lease, 10)
	if want := []string{a.ID, b.ID, c.ID, d.ID}; !slices.Equal(ids(got), want) {
		t.Fatalf("ClaimDue ids = %v, want %v (due, non-terminal, oldest first)", ids(got), want)
	}
	for _, m := range got {
		if !timePtrEqual(m.NextCheckAt, &lease) {
			t.Errorf("claimed %s has NextCheckAt %s, want the lease %s", m.ID, fmtTime(m.NextCheckAt), lease)
		}
		// What ClaimDue returns is what is stored.
		checkModel(t, "claimed model as stored", getModel(t, s, m.ID), m)
	}
	for _, m := range []*training.Model{ready, failed, canceled, never, later} {
		checkModel(t, "unclaimed model", getModel(t, s, m.ID), *m)
	}

	// A lease is a write: a copy read before it is stale, the claimed one is not.
	readBefore.Error = "written from a read before the claim"
	err := s.Write(ctx, func(tx store.Tx) error { return tx.UpdateModel(ctx, &readBefore) })
	wantErr(t, "update from a read before the claim", err, store.ErrStale)
	claimedA := got[0]
	claimedA.Error = "written by the poller that claimed it"
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateModel(ctx, &claimedA) })

	// Before the lease runs out nobody else gets them.
	if again := claimDue(t, s, now.Add(time.Minute), now.Add(6*time.Minute), 10); len(again) != 0 {
		t.Errorf("second ClaimDue before the lease ran out got %v, want none", ids(again))
	}
	// When it runs out (the poller died) they are due again; later is not due yet.
	again := claimDue(t, s, lease, lease.Add(5*time.Minute), 10)
	gotIDs := ids(again)
	slices.Sort(gotIDs) // same NextCheckAt: any order
	if want := []string{a.ID, b.ID, c.ID, d.ID}; !slices.Equal(gotIDs, want) {
		t.Errorf("ClaimDue after the lease ran out = %v, want %v", gotIDs, want)
	}

	// A model that reaches a terminal status is never claimed again.
	final := getModel(t, s, b.ID)
	final.Status = training.Ready
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateModel(ctx, &final) })
	late := claimDue(t, s, now.Add(time.Hour), now.Add(2*time.Hour), 10)
	gotIDs = ids(late)
	slices.Sort(gotIDs)
	if want := []string{a.ID, c.ID, d.ID, later.ID}; !slices.Equal(gotIDs, want) {
		t.Errorf("ClaimDue an hour later = %v, want %v", gotIDs, want)
	}
}

func testClaimDueLimit(t *testing.T, s store.Store) {
	var ms []*training.Model
	for i := range 5 {
		m := minimalModel(newID(i))
		m.Status = training.Training
		m.NextCheckAt = ptr(base.Add(-time.Duration(i) * time.Minute)) // the last is the oldest
		ms = append(ms, &m)
	}
	insert(t, s, ms...)
	if got := claimDue(t, s, base, base.Add(time.Minute), 0); len(got) != 0 {
		t.Errorf("ClaimDue with limit 0 claimed %v", ids(got))
	}
	got := claimDue(t, s, base, base.Add(time.Minute), 2)
	if want := []string{ms[4].ID, ms[3].ID}; !slices.Equal(ids(got), want) {
		t.Errorf("ClaimDue limit 2 = %v, want the two oldest %v", ids(got), want)
	}
	got = claimDue(t, s, base, base.Add(time.Minute), 2)
	if want := []string{ms[2].ID, ms[1].ID}; !slices.Equal(ids(got), want) {
		t.Errorf("next ClaimDue limit 2 = %v, want %v", ids(got), want)
	}
	got = claimDue(t, s, base, base.Add(time.Minute), 2)
	if want := []string{ms[0].ID}; !slices.Equal(ids(got), want) {
		t.Errorf("last ClaimDue limit 2 = %v, want %v", ids(got), want)
	}
}

// Many writers doing read-modify-write on one model, retrying on ErrStale,
// lose no update; and a retried attempt leaves nothing behind.
func testConcurrentUpdates(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := minimalModel(newID(1))
	m.Status = training.Training
	insert(t, s, &m)

	const workers, perWorker = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for range perWorker {
				for attempt := 0; ; attempt++ {
					if attempt > 1000 {
						errs <- errors.New("no progress after 1000 attempts")
						return
					}
					var err error
					if w%2 == 0 {
						// Read outside the transaction, as a handler would.
						var cur training.Model
						if cur, err = s.GetModel(ctx, m.ID); err != nil {
							errs <- err
							return
						}
						err = s.Write(ctx, func(tx store.Tx) error { return bump(ctx, tx, cur) })
					} else {
						err = s.Write(ctx, func(tx store.Tx) error {
							cur, err := tx.ModelByID(ctx, m.ID)
							if err != nil {
								return err
							}
							return bump(ctx, tx, cur)
						})
					}
					if errors.Is(err, store.ErrStale) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := getModel(t, s, m.ID)
	if got.CheckAttempts != workers*perWorker || got.Version != 1+workers*perWorker {
		t.Errorf("after %d increments: CheckAttempts %d, Version %d; want %d and %d",
			workers*perWorker, got.CheckAttempts, got.Version, workers*perWorker, 1+workers*perWorker)
	}
	h, err := s.History(ctx, m.ID)
	if err != nil || len(h) != workers*perWorker {
		t.Errorf("History has %d entries, %v; want one per successful increment, %d", len(h), err, workers*perWorker)
	}
}

// bump writes a history row, then the conditional update: when the update
// is stale the whole transaction, history row included, rolls back.
func bump(ctx context.Context, tx store.Tx, m training.Model) error {
	if err := tx.AddHistory(ctx, training.HistoryEntry{ModelID: m.ID, From: m.Status, To: m.Status,
		Decision: training.Refresh, Source: training.SourcePoll, At: base}); err != nil {
		return err
	}
	m.CheckAttempts++
	return tx.UpdateModel(ctx, &m)
}
