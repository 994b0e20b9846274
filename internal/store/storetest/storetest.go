// Package storetest is the conformance suite for store.Store: every
// implementation (SQLite, PostgreSQL) runs the same Run from its own tests,
// so the service can rely on the same behaviour from each.
//
// Besides what store.go says, the suite pins these, which the service
// relies on:
//   - A store error inside Write (ErrDuplicate, ErrStale, ErrNotFound) leaves
//     the transaction usable: group commit must survive one bad delivery.
//   - ClaimDue's lease is a write: it increments Version, and the models it
//     returns carry the stored Version and NextCheckAt.
//   - AddHistory for a model that does not exist is ErrNotFound; deliveries
//     are not tied to models or to the delivery they replay (no foreign key).
//   - ModelByTrainingID("") and ModelByIdempotencyKey("") find nothing.
//   - ListModels' Query is a literal, case-insensitive (Unicode) substring.
//   - Limit is clamped to 1..1000 (0 gives one row).
//   - ListDeliveries returns whole deliveries, payload included.
//   - Times come back Equal to those written, to the microsecond.
//   - A failed Write, including a canceled one, leaves nothing behind.
//   - Prune counts each row it deletes once, even when prunes run at once,
//     and keeps rows whose time is unknown.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Run runs the suite. open must return a new, empty, migrated store and
// arrange its closing with t.Cleanup; it is called once per subtest, and
// subtests run in parallel.
//
// Times in the suite have microsecond precision, the finest PostgreSQL keeps;
// stores return times that are Equal to those written, in any location.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	checkFieldCounts(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"ModelRoundTrip", testModelRoundTrip},
		{"ModelEmptyKeysFindNothing", testModelEmptyKeys},
		{"ModelDuplicates", testModelDuplicates},
		{"ModelUpdateEveryField", testModelUpdate},
		{"ModelUpdateStale", testModelUpdateStale},
		{"ModelUpdateLifecycle", testModelUpdateLifecycle},
		{"ListModelsArchived", testListArchived},
		{"NotFound", testNotFound},
		{"WriteRollsBackOnError", testWriteRollback},
		{"WriteRollsBackOnPanic", testWritePanic},
		{"WriteCanceledContext", testWriteCanceled},
		{"WriteIsolatedFromReads", testWriteIsolation},
		{"TxUsableAfterErrors", testTxUsableAfterErrors},
		{"History", testHistory},
		{"Deliveries", testDeliveries},
		{"DeliveryCursor", testDeliveryCursor},
		{"ClaimWebhookID", testClaimWebhookID},
		{"HeldObservations", testHeld},
		{"ModelsByTrainingID", testModelsByTrainingID},
		{"ClaimDue", testClaimDue},
		{"ClaimDueLimit", testClaimDueLimit},
		{"ListModelsPagination", testListPagination},
		{"ListModelsLimit", testListLimit},
		{"ListModelsNameQuery", testListNameQuery},
		{"Settings", testSettings},
		{"CountModels", testCountModels},
		{"ConcurrentUpdatesLoseNothing", testConcurrentUpdates},
		{"PingAndMigrated", testPingMigrated},
		{"PruneByAge", testPruneByAge},
		{"PruneNothing", testPruneNothing},
		{"PruneBatches", testPruneBatches},
		{"PruneRefusedCap", testPruneRefusedCap},
		{"PruneConcurrent", testPruneConcurrent},
		{"PruneCanceled", testPruneCanceled},
		{"PruneNotifications", testPruneNotifications},
		{"NotificationWrittenWithTheChange", testNotificationAtomic},
		{"NotificationSequence", testNotificationSequence},
		{"NotificationClaimLease", testNotificationClaim},
		{"NotificationOrderPerModelURL", testNotificationOrder},
		{"NotificationFinishResend", testNotificationFinishResend},
		{"NotificationConcurrentClaims", testNotificationConcurrentClaims},
		{"ModelNotifyURL", testModelNotifyURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// checkFieldCounts fails when a persisted type gains a field the suite does
// not check yet: add it to the fixtures and the comparisons below.
func checkFieldCounts(t *testing.T) {
	t.Helper()
	for _, c := range []struct {
		typ  reflect.Type
		want int
	}{
		{reflect.TypeFor[training.Model](), 28},
		{reflect.TypeFor[training.HistoryEntry](), 10},
		{reflect.TypeFor[training.Delivery](), 13},
		{reflect.TypeFor[training.Observation](), 12},
	} {
		if n := c.typ.NumField(); n != c.want {
			t.Fatalf("%v has %d fields, storetest checks %d: extend the suite", c.typ, n, c.want)
		}
	}
}

// base is the suite's "now": microsecond precision, away from any boundary.
var base = time.Date(2025, 6, 1, 12, 0, 0, 123456000, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func ptr[T any](v T) *T { return &v }

// newID returns a model id that sorts after newID(i-1).
func newID(i int) string { return training.NewID(base.Add(time.Duration(i) * time.Millisecond)) }

// fullModel sets every field, with values that are awkward to store: JSON
// with nesting and escapes, text with quotes and non-ASCII, a time in a
// zone other than UTC.
func fullModel(id string) training.Model {
	cest := time.FixedZone("CEST", 2*60*60)
	return training.Model{
		ID:             id,
		Name:           `Llama "fine" tune – Ünïcode's 100%_`,
		TrainingID:     "tr-" + id,
		Trainer:        "owner/trainer:0123abcd",
		Destination:    "owner/dest",
		Input:          json.RawMessage(`{"train_data": "https://example.com/data.zip", "steps": 1000, "nested": {"a": [1, 2.5, null, "x\"y"]}}`),
		Status:         training.Training,
		RemoteStatus:   training.RemoteProcessing,
		Output:         json.RawMessage(`{"version":"abc","weights":"https://example.com/w.tar"}`),
		Error:          "it's an error: \"quoted\"",
		Progress:       training.Progress{Percent: 42.5, Step: 425, Total: 1000},
		LogTail:        "step 424\nstep 425 ✓\n",
		LogLen:         123456,
		Metadata:       json.RawMessage(`{"team":"vision","tags":["a","b"]}`),
		Flagged:        true,
		IdempotencyKey: "key-" + id,
		CreatedAt:      base.In(cest),
		StartedAt:      ptr(at(time.Minute)),
		CompletedAt:    ptr(at(2 * time.Minute)),
		UpdatedAt:      at(3 * time.Minute),
		NextCheckAt:    ptr(at(4 * time.Minute)),
		CheckAttempts:  7,
		NotFoundSince:  ptr(at(5 * time.Minute).In(cest)),
		NotFoundChecks: 2,
		ArchivedAt:     ptr(at(6 * time.Minute)),
		RetryOf:        "01kretryof0000000000000000",
		WebURL:         "https://replicate.com/p/tr-" + id,
	}
}

// minimalModel leaves every optional field empty.
func minimalModel(id string) training.Model {
	return training.Model{
		ID:        id,
		Name:      "minimal " + id,
		Status:    training.Pending,
		CreatedAt: base,
		UpdatedAt: base,
	}
}

func write(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := s.Write(ctx, func(tx store.Tx) error { return fn(ctx, tx) }); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func insert(t *testing.T, s store.Store, ms ...*training.Model) {
	t.Helper()
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, m := range ms {
			if err := tx.InsertModel(ctx, m); err != nil {
				return err
			}
		}
		return nil
	})
}

func getModel(t *testing.T, s store.Store, id string) training.Model {
	t.Helper()
	m, err := s.GetModel(t.Context(), id)
	if err != nil {
		t.Fatalf("GetModel(%s): %v", id, err)
	}
	return m
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func checkModel(t *testing.T, what string, got, want training.Model) {
	t.Helper()
	if d := diffModel(got, want); len(d) > 0 {
		t.Errorf("%s: model differs:", what)
		for _, line := range d {
			t.Errorf("    %s", line)
		}
	}
}

// diffModel lists the fields that differ. Times compare with Equal, JSON by
// value (a store may normalise spacing and key order).
func diffModel(got, want training.Model) []string {
	var d []string
	check := func(field string, ok bool, g, w any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("Name", got.Name == want.Name, got.Name, want.Name)
	check("TrainingID", got.TrainingID == want.TrainingID, got.TrainingID, want.TrainingID)
	check("Trainer", got.Trainer == want.Trainer, got.Trainer, want.Trainer)
	check("Destination", got.Destination == want.Destination, got.Destination, want.Destination)
	check("Input", jsonEqual(got.Input, want.Input), string(got.Input), string(want.Input))
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("RemoteStatus", got.RemoteStatus == want.RemoteStatus, got.RemoteStatus, want.RemoteStatus)
	check("Output", jsonEqual(got.Output, want.Output), string(got.Output), string(want.Output))
	check("Error", got.Error == want.Error, got.Error, want.Error)
	check("Progress", got.Progress == want.Progress, got.Progress, want.Progress)
	check("LogTail", got.LogTail == want.LogTail, got.LogTail, want.LogTail)
	check("LogLen", got.LogLen == want.LogLen, got.LogLen, want.LogLen)
	check("Metadata", jsonEqual(got.Metadata, want.Metadata), string(got.Metadata), string(want.Metadata))
	check("Flagged", got.Flagged == want.Flagged, got.Flagged, want.Flagged)
	check("IdempotencyKey", got.IdempotencyKey == want.IdempotencyKey, got.IdempotencyKey, want.IdempotencyKey)
	check("CreatedAt", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("StartedAt", timePtrEqual(got.StartedAt, want.StartedAt), fmtTime(got.StartedAt), fmtTime(want.StartedAt))
	check("CompletedAt", timePtrEqual(got.CompletedAt, want.CompletedAt), fmtTime(got.CompletedAt), fmtTime(want.CompletedAt))
	check("UpdatedAt", got.UpdatedAt.Equal(want.UpdatedAt), got.UpdatedAt, want.UpdatedAt)
	check("NextCheckAt", timePtrEqual(got.NextCheckAt, want.NextCheckAt), fmtTime(got.NextCheckAt), fmtTime(want.NextCheckAt))
	check("CheckAttempts", got.CheckAttempts == want.CheckAttempts, got.CheckAttempts, want.CheckAttempts)
	check("NotFoundSince", timePtrEqual(got.NotFoundSince, want.NotFoundSince), fmtTime(got.NotFoundSince), fmtTime(want.NotFoundSince))
	check("NotFoundChecks", got.NotFoundChecks == want.NotFoundChecks, got.NotFoundChecks, want.NotFoundChecks)
	check("ArchivedAt", timePtrEqual(got.ArchivedAt, want.ArchivedAt), fmtTime(got.ArchivedAt), fmtTime(want.ArchivedAt))
	check("RetryOf", got.RetryOf == want.RetryOf, got.RetryOf, want.RetryOf)
	check("WebURL", got.WebURL == want.WebURL, got.WebURL, want.WebURL)
	check("Version", got.Version == want.Version, got.Version, want.Version)
	return d
}

func diffObservation(got, want training.Observation) []string {
	var d []string
	check := func(field string, ok bool, g, w any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w))
		}
	}
	check("TrainingID", got.TrainingID == want.TrainingID, got.TrainingID, want.TrainingID)
	check("ModelID", got.ModelID == want.ModelID, got.ModelID, want.ModelID)
	check("Remote", got.Remote == want.Remote, got.Remote, want.Remote)
	check("Output", jsonEqual(got.Output, want.Output), string(got.Output), string(want.Output))
	check("Error", got.Error == want.Error, got.Error, want.Error)
	check("Logs", got.Logs == want.Logs, got.Logs, want.Logs)
	check("StartedAt", timePtrEqual(got.StartedAt, want.StartedAt), fmtTime(got.StartedAt), fmtTime(want.StartedAt))
	check("CompletedAt", timePtrEqual(got.CompletedAt, want.CompletedAt), fmtTime(got.CompletedAt), fmtTime(want.CompletedAt))
	check("Source", got.Source == want.Source, got.Source, want.Source)
	check("SourceRef", got.SourceRef == want.SourceRef, got.SourceRef, want.SourceRef)
	check("At", got.At.Equal(want.At), got.At, want.At)
	check("WebURL", got.WebURL == want.WebURL, got.WebURL, want.WebURL)
	return d
}

func diffHistory(got, want training.HistoryEntry) []string {
	var d []string
	check := func(field string, ok bool, g, w any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w))
		}
	}
	// ID is assigned by the store; callers check it separately.
	check("ModelID", got.ModelID == want.ModelID, got.ModelID, want.ModelID)
	check("From", got.From == want.From, got.From, want.From)
	check("To", got.To == want.To, got.To, want.To)
	check("RemoteStatus", got.RemoteStatus == want.RemoteStatus, got.RemoteStatus, want.RemoteStatus)
	check("Decision", got.Decision == want.Decision, got.Decision, want.Decision)
	check("Source", got.Source == want.Source, got.Source, want.Source)
	check("SourceRef", got.SourceRef == want.SourceRef, got.SourceRef, want.SourceRef)
	check("Note", got.Note == want.Note, got.Note, want.Note)
	check("At", got.At.Equal(want.At), got.At, want.At)
	return d
}

func diffDelivery(got, want training.Delivery) []string {
	var d []string
	check := func(field string, ok bool, g, w any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("WebhookID", got.WebhookID == want.WebhookID, got.WebhookID, want.WebhookID)
	check("ReceivedAt", got.ReceivedAt.Equal(want.ReceivedAt), got.ReceivedAt, want.ReceivedAt)
	check("Verified", got.Verified == want.Verified, got.Verified, want.Verified)
	check("Reason", got.Reason == want.Reason, got.Reason, want.Reason)
	check("Outcome", got.Outcome == want.Outcome, got.Outcome, want.Outcome)
	check("TrainingID", got.TrainingID == want.TrainingID, got.TrainingID, want.TrainingID)
	check("ModelID", got.ModelID == want.ModelID, got.ModelID, want.ModelID)
	check("RemoteStatus", got.RemoteStatus == want.RemoteStatus, got.RemoteStatus, want.RemoteStatus)
	check("Timestamp", got.Timestamp == want.Timestamp, got.Timestamp, want.Timestamp)
	check("Signature", got.Signature == want.Signature, got.Signature, want.Signature)
	check("ReplayOf", got.ReplayOf == want.ReplayOf, got.ReplayOf, want.ReplayOf)
	check("Payload", bytes.Equal(got.Payload, want.Payload), fmt.Sprintf("%d bytes", len(got.Payload)), fmt.Sprintf("%d bytes", len(want.Payload)))
	return d
}

func report(t *testing.T, what string, diff []string) {
	t.Helper()
	if len(diff) > 0 {
		t.Errorf("%s differs:", what)
		for _, line := range diff {
			t.Errorf("    %s", line)
		}
	}
}

// jsonEqual compares JSON by value; empty (nil) equals only empty.
func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func timePtrEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return t.Format(time.RFC3339Nano)
}

func ids(ms []training.Model) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}
