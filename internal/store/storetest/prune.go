package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

const day = 24 * time.Hour

// allDeliveryIDs lists every delivery's id, oldest first.
func allDeliveryIDs(t *testing.T, s store.Store) []int64 {
	t.Helper()
	var out []int64
	f := store.DeliveryFilter{Limit: 1000}
	for {
		page, err := s.ListDeliveries(t.Context(), f)
		if err != nil {
			t.Fatalf("ListDeliveries: %v", err)
		}
		for _, d := range page {
			out = append(out, d.ID)
		}
		if len(page) < f.Limit {
			break
		}
		f.Before = page[len(page)-1].ID
	}
	slices.Sort(out)
	return out
}

func claim(t *testing.T, s store.Store, webhookID string, when time.Time) bool {
	t.Helper()
	var fresh bool
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		var err error
		fresh, err = tx.ClaimWebhookID(ctx, webhookID, when)
		return err
	})
	return fresh
}

func prune(t *testing.T, s store.Store, p store.PrunePolicy) store.Pruned {
	t.Helper()
	got, err := s.Prune(t.Context(), p)
	if err != nil {
		t.Fatalf("Prune(%+v): %v", p, err)
	}
	return got
}

// checkPruned compares the counts of got with want's (not Batches unless
// want sets it, nor HeldTrainingIDs, which the caller checks).
func checkPruned(t *testing.T, what string, got, want store.Pruned) {
	t.Helper()
	if want.Batches == 0 {
		want.Batches = got.Batches
	}
	got.HeldTrainingIDs, want.HeldTrainingIDs = nil, nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: Prune deleted %+v, want %+v", what, got, want)
	}
}

// Old rows of every kind go, recent ones stay, each kind after its own
// retention; models and their history are never touched, even when every
// cutoff is in the future.
func testPruneByAge(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := fullModel(newID(1))
	insert(t, s, &m)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AddHistory(ctx, training.HistoryEntry{ModelID: m.ID, From: training.Pending, To: training.Training,
			Decision: training.Move, Source: training.SourceWebhook, SourceRef: "msg_old", At: at(-40 * day)})
	})
	history, err := s.History(ctx, m.ID)
	if err != nil || len(history) != 1 {
		t.Fatalf("History = %v, %v", history, err)
	}

	payload := bytes.Repeat([]byte("x"), 300)
	ds := addDeliveries(t, s, []training.Delivery{
		{WebhookID: "msg_old", ReceivedAt: at(-40 * day), Verified: true, Outcome: "applied", ModelID: m.ID, Payload: payload},
		{WebhookID: "bad_old", ReceivedAt: at(-10 * day), Verified: false, Reason: "bad signature", Outcome: "refused", Payload: payload[:100]},
		{WebhookID: "msg_mid", ReceivedAt: at(-10 * day), Verified: true, Outcome: "applied", ModelID: m.ID, Payload: payload},
		{WebhookID: "bad_new", ReceivedAt: at(-time.Hour), Verified: false, Reason: "bad signature", Outcome: "refused", Payload: payload[:100]},
		{WebhookID: "msg_new", ReceivedAt: at(-time.Hour), Verified: true, Outcome: "applied", ModelID: m.ID, Payload: payload},
		// Its time is not known: kept.
		{WebhookID: "bad_unknown", Verified: false, Reason: "bad signature", Outcome: "refused"},
	})
	for _, c := range []struct {
		id   string
		when time.Time
	}{{"msg_old", at(-40 * day)}, {"msg_mid", at(-2 * day)}, {"msg_new", at(-time.Hour)}} {
		if !claim(t, s, c.id, c.when) {
			t.Fatalf("ClaimWebhookID(%s) = false on first claim", c.id)
		}
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, o := range []training.Observation{
			{TrainingID: "tr-old", Remote: "starting", Source: training.SourceWebhook, At: at(-40 * day)},
			{TrainingID: "tr-old", Remote: "processing", Source: training.SourceWebhook, At: at(-35 * day)},
			{TrainingID: "tr-new", Remote: "starting", Source: training.SourceWebhook, At: at(-time.Hour)},
		} {
			if err := tx.HoldObservation(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})

	policy := store.PrunePolicy{
		VerifiedBefore: at(-30 * day), RefusedBefore: at(-7 * day), ClaimsBefore: at(-3 * day), HeldBefore: at(-30 * day),
	}
	got := prune(t, s, policy)
	checkPruned(t, "first prune", got, store.Pruned{Verified: 1, Refused: 1, PayloadBytes: 400, Claims: 1, Held: 2})
	if !slices.Equal(got.HeldTrainingIDs, []string{"tr-old"}) {
		t.Errorf("HeldTrainingIDs = %q, want [tr-old]", got.HeldTrainingIDs)
	}
	if want := []int64{ds[2].ID, ds[3].ID, ds[4].ID, ds[5].ID}; !slices.Equal(allDeliveryIDs(t, s), want) {
		t.Errorf("deliveries left %v, want %v", allDeliveryIDs(t, s), want)
	}
	for _, d := range ds[2:] {
		got, err := s.GetDelivery(ctx, d.ID)
		if err != nil {
			t.Fatalf("GetDelivery(%d): %v", d.ID, err)
		}
		report(t, fmt.Sprintf("delivery %d after the prune", d.ID), diffDelivery(got, d))
	}
	if _, err := s.GetDelivery(ctx, ds[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDelivery of a pruned delivery: %v, want ErrNotFound", err)
	}
	// A pruned claim is forgotten; the recent ones still make duplicates.
	if claim(t, s, "msg_mid", at(0)) || claim(t, s, "msg_new", at(0)) {
		t.Error("a claim younger than ClaimsBefore was pruned: its webhook-id is no longer a duplicate")
	}
	if !claim(t, s, "msg_old", at(0)) {
		t.Error("a claim older than ClaimsBefore is still there")
	}
	var held []training.Observation
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		old, err := tx.TakeHeld(ctx, "tr-old")
		if err != nil {
			return err
		}
		if len(old) != 0 {
			t.Errorf("held observations of tr-old left after the prune: %v", old)
		}
		held, err = tx.TakeHeld(ctx, "tr-new")
		return err
	})
	if len(held) != 1 || held[0].Remote != "starting" {
		t.Errorf("TakeHeld(tr-new) = %v, want the recent observation", held)
	}

	// Nothing left to prune: a second prune deletes nothing. Then cutoffs
	// after everything: every delivery, claim and observation goes, and
	// still the model and its history stay.
	checkPruned(t, "second prune", prune(t, s, policy), store.Pruned{})
	future := at(day)
	got = prune(t, s, store.PrunePolicy{VerifiedBefore: future, RefusedBefore: future, ClaimsBefore: future, HeldBefore: future})
	checkPruned(t, "prune of everything", got, store.Pruned{Verified: 2, Refused: 1, PayloadBytes: 700, Claims: 3})
	checkModel(t, "model after the prunes", getModel(t, s, m.ID), m)
	after, err := s.History(ctx, m.ID)
	if err != nil || len(after) != 1 {
		t.Fatalf("History after the prunes = %v, %v", after, err)
	}
	report(t, "history after the prunes", diffHistory(after[0], history[0]))
	if n, err := s.CountModels(ctx); err != nil || n[m.Status] != 1 {
		t.Errorf("CountModels after the prunes = %v, %v", n, err)
	}
}

// A zero policy deletes nothing and runs no transaction.
func testPruneNothing(t *testing.T, s store.Store) {
	ds := addDeliveries(t, s, []training.Delivery{
		{WebhookID: "a", ReceivedAt: at(-1000 * day), Verified: true, Outcome: "applied"},
		{WebhookID: "b", ReceivedAt: at(-1000 * day), Verified: false, Outcome: "refused"},
	})
	claim(t, s, "a", at(-1000*day))
	got := prune(t, s, store.PrunePolicy{})
	checkPruned(t, "zero policy", got, store.Pruned{})
	if got.Batches != 0 {
		t.Errorf("zero policy ran %d batches, want 0", got.Batches)
	}
	if !slices.Equal(allDeliveryIDs(t, s), deliveryIDs(ds)) {
		t.Errorf("zero policy deleted deliveries")
	}
	if claim(t, s, "a", at(0)) {
		t.Error("zero policy deleted a claim")
	}
}

// Each transaction deletes at most BatchRows rows and, beyond its first
// row, at most BatchBytes of payload; the loop goes on until all is gone.
func testPruneBatches(t *testing.T, s store.Store) {
	var in []training.Delivery
	for i := range 10 {
		in = append(in,
			training.Delivery{WebhookID: fmt.Sprintf("v%d", i), ReceivedAt: at(time.Duration(i) * time.Second), Verified: true,
				Outcome: "applied", Payload: bytes.Repeat([]byte{'v'}, 100)},
			training.Delivery{WebhookID: fmt.Sprintf("r%d", i), ReceivedAt: at(time.Duration(i) * time.Second), Verified: false,
				Outcome: "refused", Payload: []byte("r")})
	}
	// Two payloads, each bigger than a batch's bytes on its own.
	in = append(in,
		training.Delivery{WebhookID: "big1", ReceivedAt: at(20 * time.Second), Verified: true, Outcome: "applied", Payload: incompressible(1000, 1)},
		training.Delivery{WebhookID: "big2", ReceivedAt: at(21 * time.Second), Verified: true, Outcome: "applied", Payload: incompressible(1000, 2)},
		training.Delivery{WebhookID: "keep", ReceivedAt: at(time.Hour), Verified: true, Outcome: "applied"})
	ds := addDeliveries(t, s, in)
	for i := range 7 {
		claim(t, s, fmt.Sprintf("claim%d", i), at(time.Duration(i)*time.Second))
	}

	// Refused by rows: 3 + 3 + 3 + 1.
	got := prune(t, s, store.PrunePolicy{RefusedBefore: at(time.Minute), BatchRows: 3})
	checkPruned(t, "refused in batches of 3 rows", got, store.Pruned{Refused: 10, PayloadBytes: 10, Batches: 4})
	// Verified by bytes: 100-byte payloads in batches of 300 bytes take
	// 3 + 3 + 3 + 1 (the next one would overflow); then each 1000-byte one
	// alone.
	got = prune(t, s, store.PrunePolicy{VerifiedBefore: at(time.Minute), BatchBytes: 300})
	checkPruned(t, "verified in batches of 300 bytes", got, store.Pruned{Verified: 12, PayloadBytes: 3000, Batches: 6})
	if left := allDeliveryIDs(t, s); !slices.Equal(left, []int64{ds[len(ds)-1].ID}) {
		t.Errorf("deliveries left %v, want only %d", left, ds[len(ds)-1].ID)
	}
	// Claims by rows: 3 + 3 + 1.
	got = prune(t, s, store.PrunePolicy{ClaimsBefore: at(time.Minute), BatchRows: 3})
	checkPruned(t, "claims in batches of 3", got, store.Pruned{Claims: 7, Batches: 3})
}

// RefusedKeep keeps the newest refused deliveries, whatever their age, and
// deletes the rest; verified deliveries do not count.
func testPruneRefusedCap(t *testing.T, s store.Store) {
	var in []training.Delivery
	for i := range 10 {
		in = append(in,
			training.Delivery{WebhookID: fmt.Sprintf("r%d", i), ReceivedAt: at(time.Duration(i) * time.Second), Verified: false,
				Outcome: "refused", Payload: []byte("forged")},
			training.Delivery{WebhookID: fmt.Sprintf("v%d", i), ReceivedAt: at(time.Duration(i) * time.Second), Verified: true, Outcome: "applied"})
	}
	ds := addDeliveries(t, s, in)
	checkPruned(t, "cap above the count", prune(t, s, store.PrunePolicy{RefusedKeep: 10}), store.Pruned{})
	got := prune(t, s, store.PrunePolicy{RefusedKeep: 4, BatchRows: 4})
	checkPruned(t, "cap of 4", got, store.Pruned{RefusedOver: 6, PayloadBytes: 36, Batches: 2})
	var want []int64
	for i, d := range ds {
		if d.Verified || i >= 12 {
			want = append(want, d.ID)
		}
	}
	if left := allDeliveryIDs(t, s); !slices.Equal(left, want) {
		t.Errorf("deliveries left %v, want %v (every verified one and the newest 4 refused)", left, want)
	}
	checkPruned(t, "cap of 4 again", prune(t, s, store.PrunePolicy{RefusedKeep: 4}), store.Pruned{})
}

// Prunes running at once (instances sharing one PostgreSQL) delete each row
// once between them, and fail nothing.
func testPruneConcurrent(t *testing.T, s store.Store) {
	var in []training.Delivery
	for i := range 60 {
		in = append(in, training.Delivery{WebhookID: fmt.Sprintf("v%d", i), ReceivedAt: at(time.Duration(i) * time.Second),
			Verified: i%3 != 0, Outcome: "applied", Payload: []byte("0123456789")})
	}
	addDeliveries(t, s, in)
	for i := range 30 {
		claim(t, s, fmt.Sprintf("c%d", i), at(time.Duration(i)*time.Second))
	}
	policy := store.PrunePolicy{VerifiedBefore: at(time.Hour), RefusedBefore: at(time.Hour), ClaimsBefore: at(time.Hour), BatchRows: 4}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total store.Pruned
	)
	for range 4 {
		wg.Go(func() {
			got, err := s.Prune(t.Context(), policy)
			if err != nil {
				t.Errorf("concurrent Prune: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			total.Verified += got.Verified
			total.Refused += got.Refused
			total.PayloadBytes += got.PayloadBytes
			total.Claims += got.Claims
		})
	}
	wg.Wait()
	// A prune that found the others' rows locked may stop early: a last
	// one finds whatever is left.
	rest := prune(t, s, policy)
	total.Verified += rest.Verified
	total.Refused += rest.Refused
	total.PayloadBytes += rest.PayloadBytes
	total.Claims += rest.Claims
	checkPruned(t, "concurrent prunes together", total, store.Pruned{Verified: 40, Refused: 20, PayloadBytes: 600, Claims: 30})
	if left := allDeliveryIDs(t, s); len(left) != 0 {
		t.Errorf("deliveries left after the prunes: %v", left)
	}
}

// A canceled prune stops with ctx's error and deletes nothing more.
func testPruneCanceled(t *testing.T, s store.Store) {
	ds := addDeliveries(t, s, []training.Delivery{{WebhookID: "a", ReceivedAt: at(-day), Verified: true, Outcome: "applied"}})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Prune(ctx, store.PrunePolicy{VerifiedBefore: at(0)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Prune with a canceled context: %v, want context.Canceled", err)
	}
	if left := allDeliveryIDs(t, s); !slices.Equal(left, deliveryIDs(ds)) {
		t.Errorf("a canceled prune deleted deliveries: %v left", left)
	}
}

// incompressible returns n bytes no store can compress (a store may keep
// payloads compressed, and PayloadBytes counts the bytes stored).
func incompressible(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// testPruneNotifications: delivered and failed notifications go after the
// cutoff with their attempts; a pending one stays however old, and so does
// every newer row.
func testPruneNotifications(t *testing.T, s store.Store) {
	ctx := t.Context()
	ms := make([]training.Model, 4)
	for i := range ms {
		ms[i] = minimalModel(newID(i + 1))
		insert(t, s, &ms[i])
	}
	addEvent(t, s, event(ms[0].ID, "evt_old_delivered", "model.ready", -40*day, urlA))
	addEvent(t, s, event(ms[1].ID, "evt_old_failed", "model.failed", -40*day, urlA))
	addEvent(t, s, event(ms[2].ID, "evt_old_pending", "model.ready", -40*day, urlA))
	addEvent(t, s, event(ms[3].ID, "evt_new_delivered", "model.ready", -time.Hour, urlA))
	now := at(0)
	byEvent := map[string]store.Notification{}
	for _, n := range claimN(t, s, now, time.Minute, 10) {
		byEvent[n.EventID] = n
	}
	if len(byEvent) != 4 {
		t.Fatalf("claimed %d notifications, want 4", len(byEvent))
	}
	finish(t, s, byEvent["evt_old_delivered"], store.NotifyDelivered, now, time.Time{})
	finish(t, s, byEvent["evt_old_failed"], store.NotifyFailed, now, time.Time{})
	finish(t, s, byEvent["evt_old_pending"], store.NotifyPending, now, at(day))
	finish(t, s, byEvent["evt_new_delivered"], store.NotifyDelivered, now, time.Time{})

	policy := store.PrunePolicy{NotificationsBefore: at(-30 * day), BatchRows: 1}
	checkPruned(t, "first prune", prune(t, s, policy), store.Pruned{Notifications: 2})
	for ev, gone := range map[string]bool{"evt_old_delivered": true, "evt_old_failed": true, "evt_old_pending": false, "evt_new_delivered": false} {
		n, attempts, err := s.GetNotification(ctx, byEvent[ev].ID)
		switch {
		case gone && !errors.Is(err, store.ErrNotFound):
			t.Errorf("%s after the prune: %+v, %v; want ErrNotFound", ev, n, err)
		case !gone && (err != nil || len(attempts) != 1 || n.EventID != ev):
			t.Errorf("%s after the prune: %+v, %d attempts, %v; want it kept with its attempt", ev, n, len(attempts), err)
		}
	}
	checkPruned(t, "second prune", prune(t, s, policy), store.Pruned{})
	// The pending one is still sent when it is due.
	if got := claimN(t, s, at(2*day), time.Minute, 10); len(got) != 1 || got[0].EventID != "evt_old_pending" {
		t.Errorf("claim after the prunes = %v, want evt_old_pending", eventIDs(got))
	}
}
