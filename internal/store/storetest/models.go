package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

func testModelRoundTrip(t *testing.T, s store.Store) {
	full, minimal := fullModel(newID(1)), minimalModel(newID(2))
	insert(t, s, &full, &minimal)
	if full.Version != 1 || minimal.Version != 1 {
		t.Fatalf("InsertModel set Version %d and %d, want 1", full.Version, minimal.Version)
	}
	for _, want := range []training.Model{full, minimal} {
		checkModel(t, "GetModel", getModel(t, s, want.ID), want)
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, want := range []training.Model{full, minimal} {
			got, err := tx.ModelByID(ctx, want.ID)
			if err != nil {
				t.Fatalf("ModelByID: %v", err)
			}
			checkModel(t, "ModelByID", got, want)
		}
		got, err := tx.ModelByTrainingID(ctx, full.TrainingID)
		if err != nil {
			t.Fatalf("ModelByTrainingID: %v", err)
		}
		checkModel(t, "ModelByTrainingID", got, full)
		got, err = tx.ModelByIdempotencyKey(ctx, full.IdempotencyKey)
		if err != nil {
			t.Fatalf("ModelByIdempotencyKey: %v", err)
		}
		checkModel(t, "ModelByIdempotencyKey", got, full)
		return nil
	})
}

// An empty training id or key means "none"; it must not find the models
// that have none.
func testModelEmptyKeys(t *testing.T, s store.Store) {
	a, b := minimalModel(newID(1)), minimalModel(newID(2))
	insert(t, s, &a, &b) // two models without training id or key: no conflict
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.ModelByTrainingID(ctx, "")
		wantErr(t, `ModelByTrainingID("")`, err, store.ErrNotFound)
		_, err = tx.ModelByIdempotencyKey(ctx, "")
		wantErr(t, `ModelByIdempotencyKey("")`, err, store.ErrNotFound)
		return nil
	})
}

func testModelDuplicates(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := fullModel(newID(1))
	other := minimalModel(newID(2))
	insert(t, s, &a, &other)

	tryInsert := func(m training.Model) error {
		return s.Write(ctx, func(tx store.Tx) error { return tx.InsertModel(ctx, &m) })
	}
	sameTraining := minimalModel(newID(3))
	sameTraining.TrainingID = a.TrainingID
	wantErr(t, "insert with a taken training id", tryInsert(sameTraining), store.ErrDuplicate)

	sameKey := minimalModel(newID(4))
	sameKey.IdempotencyKey = a.IdempotencyKey
	wantErr(t, "insert with a taken idempotency key", tryInsert(sameKey), store.ErrDuplicate)

	sameID := minimalModel(a.ID)
	wantErr(t, "insert with a taken id", tryInsert(sameID), store.ErrDuplicate)

	for _, id := range []string{sameTraining.ID, sameKey.ID} {
		_, err := s.GetModel(ctx, id)
		wantErr(t, "GetModel of a refused insert", err, store.ErrNotFound)
	}
	checkModel(t, "model whose id was reused", getModel(t, s, a.ID), a)

	// An update may not take another model's training id either.
	steal := other
	steal.TrainingID = a.TrainingID
	err := s.Write(ctx, func(tx store.Tx) error { return tx.UpdateModel(ctx, &steal) })
	wantErr(t, "update to a taken training id", err, store.ErrDuplicate)
	checkModel(t, "model after refused update", getModel(t, s, other.ID), other)
}

func testModelUpdate(t *testing.T, s store.Store) {
	m := minimalModel(newID(1))
	insert(t, s, &m)

	// Set every field to something new.
	changed := fullModel(m.ID)
	changed.Version = m.Version
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateModel(ctx, &changed) })
	if changed.Version != 2 {
		t.Fatalf("UpdateModel set Version %d, want 2", changed.Version)
	}
	checkModel(t, "after first update", getModel(t, s, m.ID), changed)

	// And every optional field back to empty.
	cleared := minimalModel(m.ID)
	cleared.Name = "renamed"
	cleared.Status = training.Failed
	cleared.Version = changed.Version
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateModel(ctx, &cleared) })
	if cleared.Version != 3 {
		t.Fatalf("UpdateModel set Version %d, want 3", cleared.Version)
	}
	checkModel(t, "after clearing update", getModel(t, s, m.ID), cleared)
}

func testModelUpdateStale(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := fullModel(newID(1))
	insert(t, s, &m)

	first, second := getModel(t, s, m.ID), getModel(t, s, m.ID)
	first.Error = "first writer"
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateModel(ctx, &first) })

	second.Error = "second writer"
	err := s.Write(ctx, func(tx store.Tx) error { return tx.UpdateModel(ctx, &second) })
	wantErr(t, "update from a stale read", err, store.ErrStale)
	if second.Version != 1 {
		t.Errorf("a refused update changed m.Version to %d, want 1", second.Version)
	}
	checkModel(t, "after stale update", getModel(t, s, m.ID), first)

	// A version from the future is as stale as one from the past.
	future := first
	future.Version += 5
	err = s.Write(ctx, func(tx store.Tx) error { return tx.UpdateModel(ctx, &future) })
	wantErr(t, "update with a future version", err, store.ErrStale)
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	missing := newID(99)
	_, err := s.GetModel(ctx, missing)
	wantErr(t, "GetModel", err, store.ErrNotFound)
	_, err = s.GetDelivery(ctx, 424242)
	wantErr(t, "GetDelivery", err, store.ErrNotFound)

	h, err := s.History(ctx, missing)
	if err != nil || len(h) != 0 {
		t.Errorf("History of a missing model = %v, %v; want empty, nil", h, err)
	}

	err = s.Write(ctx, func(tx store.Tx) error {
		_, err := tx.ModelByID(ctx, missing)
		wantErr(t, "ModelByID", err, store.ErrNotFound)
		_, err = tx.ModelByTrainingID(ctx, "tr-missing")
		wantErr(t, "ModelByTrainingID", err, store.ErrNotFound)
		_, err = tx.ModelByIdempotencyKey(ctx, "key-missing")
		wantErr(t, "ModelByIdempotencyKey", err, store.ErrNotFound)
		_, err = tx.Setting(ctx, "missing")
		wantErr(t, "Setting", err, store.ErrNotFound)
		m := minimalModel(missing)
		m.Version = 1
		wantErr(t, "UpdateModel", tx.UpdateModel(ctx, &m), store.ErrNotFound)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// History must belong to a model.
	err = s.Write(ctx, func(tx store.Tx) error {
		return tx.AddHistory(ctx, training.HistoryEntry{ModelID: missing, From: training.Pending, To: training.Training,
			Decision: training.Move, Source: training.SourcePoll, At: base})
	})
	wantErr(t, "AddHistory for a missing model", err, store.ErrNotFound)
}

var errSentinel = errors.New("sentinel from fn")

// writeEverything writes one of each kind of row, for tests that check
// whether a transaction's writes are all there or all gone.
func writeEverything(ctx context.Context, tx store.Tx, m *training.Model) error {
	if err := tx.InsertModel(ctx, m); err != nil {
		return err
	}
	if err := tx.AddHistory(ctx, training.HistoryEntry{ModelID: m.ID, From: training.Pending, To: training.Training,
		Decision: training.Move, Source: training.SourceWebhook, At: base}); err != nil {
		return err
	}
	if _, err := tx.AddDelivery(ctx, training.Delivery{WebhookID: "wh-all", ReceivedAt: base, Verified: true, ModelID: m.ID}); err != nil {
		return err
	}
	if ok, err := tx.ClaimWebhookID(ctx, "wh-all", base); err != nil || !ok {
		return errors.Join(err, errors.New("first claim of wh-all refused"))
	}
	if err := tx.HoldObservation(ctx, training.Observation{TrainingID: "tr-held", Remote: "starting", At: base}); err != nil {
		return err
	}
	_, err := tx.PutSettingIfAbsent(ctx, "all", "v")
	return err
}

// checkNothingWritten checks that none of writeEverything's rows exist.
func checkNothingWritten(t *testing.T, s store.Store, modelID string) {
	t.Helper()
	ctx := t.Context()
	_, err := s.GetModel(ctx, modelID)
	wantErr(t, "GetModel after rollback", err, store.ErrNotFound)
	if h, err := s.History(ctx, modelID); err != nil || len(h) != 0 {
		t.Errorf("History after rollback = %d entries, %v; want none", len(h), err)
	}
	if ds, err := s.ListDeliveries(ctx, store.DeliveryFilter{Limit: 10}); err != nil || len(ds) != 0 {
		t.Errorf("ListDeliveries after rollback = %d, %v; want none", len(ds), err)
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if ok, err := tx.ClaimWebhookID(ctx, "wh-all", base); err != nil || !ok {
			t.Errorf("ClaimWebhookID after rollback = %v, %v; want true (the claim was rolled back)", ok, err)
		}
		if obs, err := tx.TakeHeld(ctx, "tr-held"); err != nil || len(obs) != 0 {
			t.Errorf("TakeHeld after rollback = %d, %v; want none", len(obs), err)
		}
		_, err := tx.Setting(ctx, "all")
		wantErr(t, "Setting after rollback", err, store.ErrNotFound)
		return nil
	})
}

func testWriteRollback(t *testing.T, s store.Store) {
	m := fullModel(newID(1))
	err := s.Write(t.Context(), func(tx store.Tx) error {
		if err := writeEverything(t.Context(), tx, &m); err != nil {
			t.Fatalf("writeEverything: %v", err)
		}
		return errSentinel
	})
	wantErr(t, "Write", err, errSentinel)
	checkNothingWritten(t, s, m.ID)
}

func testWritePanic(t *testing.T, s store.Store) {
	m := fullModel(newID(1))
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the panic from fn", p)
			}
		}()
		_ = s.Write(t.Context(), func(tx store.Tx) error {
			if err := writeEverything(t.Context(), tx, &m); err != nil {
				t.Fatalf("writeEverything: %v", err)
			}
			panic("boom")
		})
	}()
	// The store is still usable (no transaction left holding the writer).
	checkNothingWritten(t, s, m.ID)
}

func testWriteCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m := fullModel(newID(1))
	err := s.Write(ctx, func(tx store.Tx) error { return writeEverything(ctx, tx, &m) })
	wantErr(t, "Write with a canceled context", err, context.Canceled)
	checkNothingWritten(t, s, m.ID)
}

// Reads outside a transaction see only committed writes, and do not wait
// for an open transaction to end.
func testWriteIsolation(t *testing.T, s store.Store) {
	m := fullModel(newID(1))
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertModel(ctx, &m); err != nil {
			return err
		}
		if _, err := tx.ModelByID(ctx, m.ID); err != nil {
			t.Errorf("the transaction does not see its own insert: %v", err)
		}
		rctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := s.GetModel(rctx, m.ID)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("GetModel waited for the open write transaction")
		}
		wantErr(t, "GetModel of an uncommitted insert", err, store.ErrNotFound)
		counts, err := s.CountModels(rctx)
		if err != nil || counts[training.Training] != 0 {
			t.Errorf("CountModels during the transaction = %v, %v; want no Training model", counts, err)
		}
		return nil
	})
	checkModel(t, "after commit", getModel(t, s, m.ID), m)
}

// A store error inside a transaction does not spoil the transaction: a
// batch of deliveries in one Write must survive one bad delivery.
// (PostgreSQL aborts a transaction on any failed statement, so its store
// must avoid failing statements, e.g. with ON CONFLICT DO NOTHING, or
// wrap them in savepoints.)
func testTxUsableAfterErrors(t *testing.T, s store.Store) {
	existing := fullModel(newID(1))
	insert(t, s, &existing)
	a, b := minimalModel(newID(2)), minimalModel(newID(3))
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		if err := tx.InsertModel(ctx, &a); err != nil {
			return err
		}
		dupe := minimalModel(newID(4))
		dupe.TrainingID = existing.TrainingID
		wantErr(t, "InsertModel duplicate", tx.InsertModel(ctx, &dupe), store.ErrDuplicate)
		dupeID := minimalModel(existing.ID)
		wantErr(t, "InsertModel duplicate id", tx.InsertModel(ctx, &dupeID), store.ErrDuplicate)
		stale := existing
		stale.Version = 99
		wantErr(t, "UpdateModel stale", tx.UpdateModel(ctx, &stale), store.ErrStale)
		steal := a
		steal.TrainingID = existing.TrainingID
		wantErr(t, "UpdateModel duplicate", tx.UpdateModel(ctx, &steal), store.ErrDuplicate)
		_, err := tx.ModelByID(ctx, newID(5))
		wantErr(t, "ModelByID missing", err, store.ErrNotFound)
		err = tx.AddHistory(ctx, training.HistoryEntry{ModelID: newID(5), From: training.Pending, To: training.Training,
			Decision: training.Move, Source: training.SourcePoll, At: base})
		wantErr(t, "AddHistory missing model", err, store.ErrNotFound)
		if err := tx.InsertModel(ctx, &b); err != nil {
			t.Fatalf("InsertModel after errors: %v", err)
		}
		a.Name = "updated after errors"
		return tx.UpdateModel(ctx, &a)
	})
	checkModel(t, "model inserted before the errors", getModel(t, s, a.ID), a)
	checkModel(t, "model inserted after the errors", getModel(t, s, b.ID), b)
	checkModel(t, "model the errors were about", getModel(t, s, existing.ID), existing)
}

func testHistory(t *testing.T, s store.Store) {
	m, other := minimalModel(newID(1)), minimalModel(newID(2))
	insert(t, s, &m, &other)
	entries := []training.HistoryEntry{
		{ModelID: m.ID, From: training.Pending, To: training.Training, RemoteStatus: "starting", Decision: training.Move,
			Source: training.SourceWebhook, SourceRef: "msg_1", Note: "first", At: at(time.Second)},
		// Written later but with an earlier At: history keeps write order.
		{ModelID: m.ID, From: training.Training, To: training.Training, RemoteStatus: "processing", Decision: training.Refresh,
			Source: training.SourcePoll, At: at(0)},
		{ModelID: other.ID, From: training.Pending, To: training.Canceled, Decision: training.Move, Source: training.SourceAPI,
			Note: `user said "stop"`, At: at(2 * time.Second)},
		{ModelID: m.ID, From: training.Training, To: training.Ready, RemoteStatus: "succeeded", Decision: training.Move,
			Source: training.SourceWebhook, SourceRef: "msg_3", At: at(3 * time.Second)},
	}
	// Two transactions, to check the order holds across commits.
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, h := range entries[:2] {
			if err := tx.AddHistory(ctx, h); err != nil {
				return err
			}
		}
		return nil
	})
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, h := range entries[2:] {
			if err := tx.AddHistory(ctx, h); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := s.History(t.Context(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []training.HistoryEntry{entries[0], entries[1], entries[3]}
	if len(got) != len(want) {
		t.Fatalf("History returned %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		report(t, "history entry", diffHistory(got[i], want[i]))
		if got[i].ID <= 0 || (i > 0 && got[i].ID <= got[i-1].ID) {
			t.Errorf("history ids %d then %d: want positive and increasing", got[max(i-1, 0)].ID, got[i].ID)
		}
	}
	got, err = s.History(t.Context(), other.ID)
	if err != nil || len(got) != 1 {
		t.Fatalf("History(other) = %d entries, %v; want 1", len(got), err)
	}
	report(t, "other model's entry", diffHistory(got[0], entries[2]))
}

func testSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Setting(ctx, "webhook_key")
		wantErr(t, "Setting before put", err, store.ErrNotFound)
		v, err := tx.PutSettingIfAbsent(ctx, "webhook_key", "first")
		if err != nil || v != "first" {
			t.Errorf("first PutSettingIfAbsent = %q, %v; want first", v, err)
		}
		v, err = tx.PutSettingIfAbsent(ctx, "webhook_key", "second")
		if err != nil || v != "first" {
			t.Errorf("second PutSettingIfAbsent = %q, %v; want the stored first", v, err)
		}
		return nil
	})
	// A rolled-back put leaves nothing.
	err := s.Write(ctx, func(tx store.Tx) error {
		if _, err := tx.PutSettingIfAbsent(ctx, "rolled_back", "x"); err != nil {
			return err
		}
		return errSentinel
	})
	wantErr(t, "Write", err, errSentinel)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		v, err := tx.Setting(ctx, "webhook_key")
		if err != nil || v != "first" {
			t.Errorf("Setting = %q, %v; want first", v, err)
		}
		v, err = tx.PutSettingIfAbsent(ctx, "webhook_key", "third")
		if err != nil || v != "first" {
			t.Errorf("PutSettingIfAbsent in a later transaction = %q, %v; want first", v, err)
		}
		_, err = tx.Setting(ctx, "rolled_back")
		wantErr(t, "Setting of a rolled-back put", err, store.ErrNotFound)
		// Values are kept exactly, including an empty one.
		v, err = tx.PutSettingIfAbsent(ctx, "empty", "")
		if err != nil || v != "" {
			t.Errorf("PutSettingIfAbsent(empty) = %q, %v", v, err)
		}
		return nil
	})
}

func testCountModels(t *testing.T, s store.Store) {
	ctx := t.Context()
	counts, err := s.CountModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for st, n := range counts {
		if n != 0 {
			t.Errorf("empty store counts %d %s models", n, st)
		}
	}
	want := map[training.Status]int{training.Pending: 2, training.Training: 3, training.Ready: 1, training.Canceled: 1}
	var ms []*training.Model
	i := 0
	for st, n := range want {
		for range n {
			i++
			m := minimalModel(newID(i))
			m.Status = st
			ms = append(ms, &m)
		}
	}
	insert(t, s, ms...)
	counts, err = s.CountModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range training.Statuses {
		if counts[st] != want[st] {
			t.Errorf("CountModels()[%s] = %d, want %d", st, counts[st], want[st])
		}
	}
}

func testPingMigrated(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	applied, latest, err := s.Migrated(ctx)
	if err != nil || latest < 1 || applied != latest {
		t.Errorf("Migrated = %d, %d, %v; want applied == latest >= 1", applied, latest, err)
	}
}

// testModelsByTrainingID: one lookup for many training ids; ids no model
// has, and the empty id of models without a training, match nothing.
func testModelsByTrainingID(t *testing.T, s store.Store) {
	ctx := t.Context()
	var ms []training.Model
	for i, tid := range []string{"tr-a", "tr-b", "tr-c", ""} {
		m := minimalModel(newID(i + 1))
		m.TrainingID = tid
		ms = append(ms, m)
	}
	for i := range ms {
		insert(t, s, &ms[i])
	}
	got, err := s.ModelsByTrainingID(ctx, []string{"tr-c", "tr-unknown", "", "tr-a"})
	if err != nil {
		t.Fatal(err)
	}
	byTraining := map[string]training.Model{}
	for _, m := range got {
		byTraining[m.TrainingID] = m
	}
	if len(got) != 2 || len(byTraining) != 2 {
		t.Fatalf("ModelsByTrainingID = %d models %v, want those of tr-a and tr-c", len(got), byTraining)
	}
	checkModel(t, "model of tr-a", byTraining["tr-a"], ms[0])
	checkModel(t, "model of tr-c", byTraining["tr-c"], ms[2])
	if got, err := s.ModelsByTrainingID(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("ModelsByTrainingID(nil) = %v, %v; want none", got, err)
	}
}
