package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

const (
	urlA = "http://127.0.0.1:9/a"
	urlB = "http://127.0.0.1:9/b"
)

// notifyModelJSON is a payload model with fields in a set order and
// characters a store might rewrite: it must come back byte for byte.
const notifyModelJSON = `{"id":"m","status":"Ready","output":{"version":"o/d:1"},"name":"Ünïcode \"q\" <&>"}`

func event(modelID, evID, typ string, d time.Duration, urls ...string) store.NewNotification {
	return store.NewNotification{EventID: evID, ModelID: modelID, Type: typ, Sequence: 1, At: at(d), Model: []byte(notifyModelJSON), URLs: urls}
}

func addEvent(t *testing.T, s store.Store, ev store.NewNotification) {
	t.Helper()
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.AddNotification(ctx, ev) })
}

func claimN(t *testing.T, s store.Store, now time.Time, lease time.Duration, limit int) []store.Notification {
	t.Helper()
	ns, err := s.ClaimNotifications(t.Context(), now, now.Add(lease), limit)
	if err != nil {
		t.Fatalf("ClaimNotifications: %v", err)
	}
	return ns
}

func eventIDs(ns []store.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.EventID + "@" + n.URL[len(n.URL)-1:]
	}
	return out
}

func finish(t *testing.T, s store.Store, n store.Notification, status string, when time.Time, retryAt time.Time) {
	t.Helper()
	r := store.NotificationResult{Status: status, RetryAt: retryAt,
		Attempt: store.NotificationAttempt{At: when, StatusCode: 500, Latency: 1500 * time.Microsecond, Error: "HTTP 500"}}
	if status == store.NotifyDelivered {
		r.Attempt.StatusCode, r.Attempt.Error = 204, ""
	}
	if err := s.FinishNotification(t.Context(), n.ID, n.Lease, r); err != nil {
		t.Fatalf("FinishNotification(%d, %s): %v", n.ID, status, err)
	}
}

// testNotificationAtomic: the outbox row is part of the transaction of the
// change; a rolled-back change leaves no event.
func testNotificationAtomic(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := minimalModel(newID(1))
	insert(t, s, &m)
	boom := errors.New("boom")
	err := s.Write(ctx, func(tx store.Tx) error {
		next := m
		next.Status = training.Ready
		if err := tx.UpdateModel(ctx, &next); err != nil {
			return err
		}
		if err := tx.AddNotification(ctx, event(m.ID, "evt_rolledback", "model.ready", 0, urlA)); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "Write", err, boom)
	if ns, err := s.ListNotifications(ctx, store.NotificationFilter{Limit: 10}); err != nil || len(ns) != 0 {
		t.Fatalf("after a rolled-back change: %d notifications (%v), want none", len(ns), err)
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		next := m
		next.Status = training.Ready
		if err := tx.UpdateModel(ctx, &next); err != nil {
			return err
		}
		return tx.AddNotification(ctx, event(m.ID, "evt_1", "model.ready", time.Second, urlA, urlB))
	})
	ns, err := s.ListNotifications(ctx, store.NotificationFilter{Limit: 10})
	if err != nil || len(ns) != 2 {
		t.Fatalf("after a committed change: %d notifications (%v), want one per URL (2)", len(ns), err)
	}
	// Newest first: urlB's row was inserted last.
	for i, want := range []string{urlB, urlA} {
		n := ns[i]
		if n.URL != want || n.EventID != "evt_1" || n.ModelID != m.ID || n.Type != "model.ready" || n.Sequence != 1 ||
			n.Status != store.NotifyPending || !n.CreatedAt.Equal(at(time.Second)) || !n.RetrySince.Equal(at(time.Second)) ||
			n.NextAttemptAt == nil || !n.NextAttemptAt.Equal(at(time.Second)) || n.Attempts != 0 || n.DeliveredAt != nil || n.Lease != "" {
			t.Errorf("row %d = %+v", i, n)
		}
		if string(n.Model) != notifyModelJSON {
			t.Errorf("model came back as %s, want byte for byte %s", n.Model, notifyModelJSON)
		}
	}
	// No URL: nothing stored. An id with '.' would break the signed string.
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		return tx.AddNotification(ctx, event(m.ID, "evt_none", "model.ready", 0))
	})
	err = s.Write(ctx, func(tx store.Tx) error {
		return tx.AddNotification(ctx, event(m.ID, "evt.dot", "model.ready", 0, urlA))
	})
	if err == nil {
		t.Error("an event id with '.' was accepted")
	}
	if ns, _ := s.ListNotifications(ctx, store.NotificationFilter{Limit: 10}); len(ns) != 2 {
		t.Errorf("%d notifications, want still 2", len(ns))
	}
}

// testNotificationSequence: the event's sequence is stored as given, shared
// by its URLs, also for several events in one transaction; one that is not
// positive is refused and nothing of it is stored.
func testNotificationSequence(t *testing.T, s store.Store) {
	ctx := t.Context()
	m1, m2 := minimalModel(newID(1)), minimalModel(newID(2))
	insert(t, s, &m1, &m2)
	withSeq := func(ev store.NewNotification, seq int64) store.NewNotification {
		ev.Sequence = seq
		return ev
	}
	addEvent(t, s, withSeq(event(m1.ID, "e1", "model.training", 0, urlA, urlB), 2))
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.AddNotification(ctx, withSeq(event(m2.ID, "e2", "model.training", 0, urlA), 3)); err != nil {
			return err
		}
		return tx.AddNotification(ctx, withSeq(event(m2.ID, "e3", "model.ready", 0, urlA), 4))
	})
	addEvent(t, s, withSeq(event(m1.ID, "e4", "model.ready", 0, urlA, urlB), 7))
	for _, seq := range []int64{0, -1} {
		err := s.Write(ctx, func(tx store.Tx) error {
			return tx.AddNotification(ctx, withSeq(event(m1.ID, "e5", "model.canceled", 0, urlA), seq))
		})
		if err == nil || !strings.Contains(err.Error(), "sequence") {
			t.Errorf("sequence %d: err = %v, want one naming the sequence", seq, err)
		}
	}
	got := map[string]int64{}
	for _, id := range []string{m1.ID, m2.ID} {
		ns, err := s.ListNotifications(ctx, store.NotificationFilter{ModelID: id, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.ModelID != id {
				t.Errorf("filter by model %s returned %s", id, n.ModelID)
			}
			got[n.EventID+"@"+n.URL] = n.Sequence
		}
	}
	want := map[string]int64{"e1@" + urlA: 2, "e1@" + urlB: 2, "e4@" + urlA: 7, "e4@" + urlB: 7, "e2@" + urlA: 3, "e3@" + urlA: 4}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sequences %v, want %v", got, want)
	}
}

// testNotificationClaim: due rows only, oldest first, leased; a lease keeps
// them from a second claim until it runs out.
func testNotificationClaim(t *testing.T, s store.Store) {
	m1, m2, m3 := minimalModel(newID(1)), minimalModel(newID(2)), minimalModel(newID(3))
	insert(t, s, &m1, &m2, &m3)
	addEvent(t, s, event(m1.ID, "e1", "model.ready", 2*time.Second, urlA))
	addEvent(t, s, event(m2.ID, "e2", "model.ready", time.Second, urlA))
	addEvent(t, s, event(m3.ID, "e3", "model.ready", time.Hour, urlA)) // not due yet
	got := claimN(t, s, at(time.Minute), 30*time.Second, 10)
	if ids := eventIDs(got); !slices.Equal(ids, []string{"e2@a", "e1@a"}) {
		t.Fatalf("claimed %v, want [e2@a e1@a] (due ones, oldest first)", ids)
	}
	for _, n := range got {
		if n.Lease == "" {
			t.Errorf("claimed row %d has no lease token", n.ID)
		}
	}
	if again := claimN(t, s, at(time.Minute+time.Second), 30*time.Second, 10); len(again) != 0 {
		t.Fatalf("claimed %v again within the lease", eventIDs(again))
	}
	// The lease runs out (a dead sender): the rows are claimable again,
	// and the old lease no longer finishes them.
	again := claimN(t, s, at(2*time.Minute), 30*time.Second, 1)
	if ids := eventIDs(again); !slices.Equal(ids, []string{"e2@a"}) {
		t.Fatalf("after the lease: claimed %v with limit 1, want [e2@a]", ids)
	}
	err := s.FinishNotification(t.Context(), got[0].ID, got[0].Lease, store.NotificationResult{Status: store.NotifyDelivered,
		Attempt: store.NotificationAttempt{At: at(2 * time.Minute), StatusCode: 200}})
	wantErr(t, "FinishNotification with a lost lease", err, store.ErrStale)
	n, attempts, err := s.GetNotification(t.Context(), got[0].ID)
	if err != nil || n.Status != store.NotifyPending || n.Attempts != 1 || len(attempts) != 1 {
		t.Errorf("after a stale finish: %+v, %d attempts, %v; want still pending, the attempt recorded", n, len(attempts), err)
	}
	finish(t, s, again[0], store.NotifyDelivered, at(2*time.Minute), time.Time{})
}

// testNotificationOrder: per model and URL, a later event is not claimable
// while an earlier one is pending (in flight or waiting for a retry);
// another URL or model is not held up.
func testNotificationOrder(t *testing.T, s store.Store) {
	m1, m2 := minimalModel(newID(1)), minimalModel(newID(2))
	insert(t, s, &m1, &m2)
	addEvent(t, s, event(m1.ID, "train", "model.training", 0, urlA, urlB))
	addEvent(t, s, event(m1.ID, "ready", "model.ready", time.Second, urlA, urlB))
	addEvent(t, s, event(m2.ID, "other", "model.ready", time.Second, urlA))
	now := at(time.Minute)
	got := claimN(t, s, now, 30*time.Second, 10)
	if ids := eventIDs(got); !slices.Equal(ids, []string{"train@a", "train@b", "other@a"}) {
		t.Fatalf("claimed %v, want [train@a train@b other@a]: ready must wait for train", ids)
	}
	// train@a fails and waits for a retry; train@b is delivered.
	finish(t, s, got[0], store.NotifyPending, now, now.Add(time.Hour))
	finish(t, s, got[1], store.NotifyDelivered, now, time.Time{})
	finish(t, s, got[2], store.NotifyDelivered, now, time.Time{})
	got = claimN(t, s, now.Add(time.Second), 30*time.Second, 10)
	if ids := eventIDs(got); !slices.Equal(ids, []string{"ready@b"}) {
		t.Fatalf("claimed %v, want [ready@b]: ready@a waits while train@a is retried", ids)
	}
	finish(t, s, got[0], store.NotifyDelivered, now, time.Time{})
	// The retry comes due, is claimed, fails for good; then ready@a goes.
	got = claimN(t, s, now.Add(time.Hour), 30*time.Second, 10)
	if ids := eventIDs(got); !slices.Equal(ids, []string{"train@a"}) {
		t.Fatalf("claimed %v, want [train@a]", ids)
	}
	finish(t, s, got[0], store.NotifyFailed, now.Add(time.Hour), time.Time{})
	got = claimN(t, s, now.Add(time.Hour), 30*time.Second, 10)
	if ids := eventIDs(got); !slices.Equal(ids, []string{"ready@a"}) {
		t.Fatalf("claimed %v, want [ready@a] once train@a is settled", ids)
	}
}

// testNotificationFinishResend: outcomes, attempts, filters, resend.
func testNotificationFinishResend(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := minimalModel(newID(1))
	insert(t, s, &m)
	addEvent(t, s, event(m.ID, "e1", "model.ready", 0, urlA))
	now := at(time.Minute)
	n := claimN(t, s, now, 30*time.Second, 10)[0]
	finish(t, s, n, store.NotifyPending, now, now.Add(5*time.Second))
	n = claimN(t, s, now.Add(5*time.Second), 30*time.Second, 10)[0]
	finish(t, s, n, store.NotifyDelivered, now.Add(6*time.Second), time.Time{})
	got, attempts, err := s.GetNotification(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.NotifyDelivered || got.Attempts != 2 || got.LastStatus != 204 || got.LastError != "" ||
		got.DeliveredAt == nil || !got.DeliveredAt.Equal(now.Add(6*time.Second)) || got.NextAttemptAt != nil {
		t.Errorf("delivered: %+v", got)
	}
	if len(attempts) != 2 || attempts[0].StatusCode != 500 || attempts[0].Error != "HTTP 500" || !attempts[0].At.Equal(now) ||
		attempts[0].Latency != 1500*time.Microsecond || attempts[1].StatusCode != 204 {
		t.Errorf("attempts %+v", attempts)
	}
	for status, want := range map[string]int{store.NotifyDelivered: 1, store.NotifyPending: 0, store.NotifyFailed: 0} {
		if ns, err := s.ListNotifications(ctx, store.NotificationFilter{Status: status, Limit: 10}); err != nil || len(ns) != want {
			t.Errorf("status=%s: %d (%v), want %d", status, len(ns), err, want)
		}
	}
	if st, err := s.NotificationStats(ctx); err != nil || st.Pending != 0 || !st.OldestPending.IsZero() {
		t.Errorf("stats %+v, %v; want none pending", st, err)
	}
	// Resend: pending again, due now, a new retry window, sent again.
	later := now.Add(time.Hour)
	r, err := s.ResendNotification(ctx, n.ID, later)
	if err != nil || r.Status != store.NotifyPending || r.NextAttemptAt == nil || !r.NextAttemptAt.Equal(later) ||
		!r.RetrySince.Equal(later) || r.DeliveredAt != nil || r.EventID != "e1" {
		t.Fatalf("resend: %+v, %v", r, err)
	}
	if st, err := s.NotificationStats(ctx); err != nil || st.Pending != 1 || !st.OldestPending.Equal(at(0)) {
		t.Errorf("stats %+v, %v; want 1 pending since %v", st, err, at(0))
	}
	if again := claimN(t, s, later, 30*time.Second, 10); len(again) != 1 || again[0].ID != n.ID {
		t.Fatalf("after resend claimed %v", eventIDs(again))
	}
	_, err = s.ResendNotification(ctx, 1<<40, later)
	wantErr(t, "ResendNotification(unknown)", err, store.ErrNotFound)
	_, _, err = s.GetNotification(ctx, 1<<40)
	wantErr(t, "GetNotification(unknown)", err, store.ErrNotFound)
}

// testNotificationConcurrentClaims: claims racing (instances sharing
// PostgreSQL, or goroutines on SQLite) never hand out a row twice.
func testNotificationConcurrentClaims(t *testing.T, s store.Store) {
	const models = 40
	for i := range models {
		m := minimalModel(newID(i))
		insert(t, s, &m)
		addEvent(t, s, event(m.ID, fmt.Sprintf("e%d", i), "model.ready", 0, urlA))
	}
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				ns, err := s.ClaimNotifications(context.Background(), at(time.Minute), at(time.Hour), 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ns) == 0 {
					return
				}
				mu.Lock()
				for _, n := range ns {
					seen[n.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != models {
		t.Errorf("%d rows claimed, want %d", len(seen), models)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("row %d claimed %d times", id, c)
		}
	}
}

// testModelNotifyURL: a model's own URL is kept in the transaction, can be
// replaced, and is "" for a model without one.
func testModelNotifyURL(t *testing.T, s store.Store) {
	m1, m2 := minimalModel(newID(1)), minimalModel(newID(2))
	insert(t, s, &m1, &m2)
	get := func(id string) string {
		var u string
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			var err error
			u, err = tx.ModelNotifyURL(ctx, id)
			return err
		})
		return u
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.SetModelNotifyURL(ctx, m1.ID, urlA) })
	if got := get(m1.ID); got != urlA {
		t.Errorf("ModelNotifyURL = %q, want %q", got, urlA)
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.SetModelNotifyURL(ctx, m1.ID, urlB) })
	if got := get(m1.ID); got != urlB {
		t.Errorf("after replacing: %q, want %q", got, urlB)
	}
	if got := get(m2.ID); got != "" {
		t.Errorf("a model without one: %q", got)
	}
	boom := errors.New("boom")
	err := s.Write(t.Context(), func(tx store.Tx) error {
		if err := tx.SetModelNotifyURL(t.Context(), m2.ID, urlA); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "Write", err, boom)
	if got := get(m2.ID); got != "" {
		t.Errorf("after a rollback: %q", got)
	}
}
