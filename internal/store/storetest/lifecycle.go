package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// testModelUpdateLifecycle updates the not-found count and the archive mark
// of a model read in the same transaction, as the service does: a store
// that writes only what reports change (SQLite) must write these too.
func testModelUpdateLifecycle(t *testing.T, s store.Store) {
	m := minimalModel(newID(1))
	m.TrainingID = "tr-lifecycle"
	insert(t, s, &m)
	retry := minimalModel(newID(2))
	retry.RetryOf = m.ID
	insert(t, s, &retry)
	checkModel(t, "retry after insert", getModel(t, s, retry.ID), retry)

	var want training.Model
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ModelByID(ctx, m.ID)
		if err != nil {
			return err
		}
		got.NotFoundSince, got.NotFoundChecks = ptr(at(time.Minute)), 3
		got.WebURL = "https://replicate.com/p/tr-lifecycle"
		if err := tx.UpdateModel(ctx, &got); err != nil {
			return err
		}
		want = got
		return nil
	})
	checkModel(t, "after counting 404s", getModel(t, s, m.ID), want)

	write(t, s, func(ctx context.Context, tx store.Tx) error {
		got, err := tx.ModelByTrainingID(ctx, m.TrainingID)
		if err != nil {
			return err
		}
		got.NotFoundSince, got.NotFoundChecks = nil, 0
		got.Status, got.ArchivedAt = training.Failed, ptr(at(2*time.Minute))
		if err := tx.UpdateModel(ctx, &got); err != nil {
			return err
		}
		want = got
		return nil
	})
	checkModel(t, "after reset and archive", getModel(t, s, m.ID), want)
}

// testListArchived: archived models are left out of lists unless asked for,
// and are still read by id.
func testListArchived(t *testing.T, s store.Store) {
	var all []*training.Model
	for i := range 6 {
		m := minimalModel(newID(i))
		m.Status = training.Failed
		if i%2 == 1 {
			m.ArchivedAt = ptr(at(time.Duration(i) * time.Minute))
		}
		all = append(all, &m)
	}
	insert(t, s, all...)
	want := func(archived bool) []string {
		var out []string
		for i := len(all) - 1; i >= 0; i-- {
			if archived || all[i].ArchivedAt == nil {
				out = append(out, all[i].ID)
			}
		}
		return out
	}
	for _, f := range []store.ModelFilter{
		{Limit: 2}, {Limit: 10}, {Limit: 2, Archived: true}, {Limit: 10, Archived: true},
		{Limit: 10, Status: training.Failed}, {Limit: 10, Status: training.Failed, Archived: true},
		{Limit: 10, Query: "minimal"}, {Limit: 10, Query: "minimal", Archived: true},
	} {
		if got := listAll(t, s, f, nil); !slices.Equal(got, want(f.Archived)) {
			t.Errorf("ListModels(%+v) = %v, want %v", f, got, want(f.Archived))
		}
	}
	checkModel(t, "archived model by id", getModel(t, s, all[1].ID), *all[1])
}
