package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
)

// The claim walks the due index and checks order with one lookup per row:
// a plan that sorts or scans every pending row makes each claim cost the
// whole backlog.
func TestClaimNotificationsPlan(t *testing.T) {
	s, _ := openTemp(t)
	for _, q := range []struct{ name, sql string }{
		{"claim", claimNotificationsSQL},
		{"any due", anyDueNotificationSQL},
	} {
		rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q.sql, 1, 1, 8)
		if err != nil {
			t.Fatalf("%s: %v", q.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		all := strings.Join(plan, "\n")
		if !strings.Contains(all, "USING INDEX notifications_due") || strings.Contains(all, "TEMP B-TREE") ||
			strings.Contains(all, "SCAN notifications") {
			t.Errorf("%s: plan does not walk notifications_due in order:\n%s", q.name, all)
		}
		if q.name == "claim" && !strings.Contains(all, "INDEX notifications_model_seq (model_id=?)") {
			t.Errorf("claim: the ordering check does not look up the model's rows in notifications_model_seq:\n%s", all)
		}
	}
}

// A notification's lease and outcome commit without a flush, and the next
// durable Write flushes again: synchronous is FULL inside every Write,
// NORMAL only inside the bookkeeping ones.
func TestUnsyncedBookkeepingThenDurable(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	syncMode := func(ctx context.Context) int {
		t.Helper()
		var mode int
		if err := s.wc.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		return mode
	}
	const full, normal = 2, 1
	durable := func() {
		t.Helper()
		if err := s.Write(ctx, func(store.Tx) error {
			if got := syncMode(ctx); got != full {
				t.Errorf("synchronous inside Write = %d, want %d (FULL)", got, full)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	durable()
	for range 2 {
		if err := s.writeUnsynced(ctx, func(store.Tx) error {
			if got := syncMode(ctx); got != normal {
				t.Errorf("synchronous inside writeUnsynced = %d, want %d (NORMAL)", got, normal)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	durable()

	// Through the outbox's own methods: claim and finish are unsynced, and
	// a Write after them is durable.
	now := time.Now()
	if _, err := s.ClaimNotifications(ctx, now, now.Add(time.Minute), 8); err != nil {
		t.Fatal(err)
	}
	durable()
}
