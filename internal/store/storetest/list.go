package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// maxLimit is the largest page: store.ModelFilter and store.DeliveryFilter
// document Limit as 1..1000, and stores clamp to that range.
const maxLimit = 1000

// listAll pages through ListModels with f and the given page size.
func listAll(t *testing.T, s store.Store, f store.ModelFilter, between func(page int)) []string {
	t.Helper()
	var seen []string
	for page := 0; page < 1000; page++ {
		got, err := s.ListModels(t.Context(), f)
		if err != nil {
			t.Fatalf("ListModels(%+v): %v", f, err)
		}
		if len(got) > f.Limit {
			t.Fatalf("ListModels returned %d models, limit %d", len(got), f.Limit)
		}
		if len(got) == 0 {
			return seen
		}
		seen = append(seen, ids(got)...)
		f.Before = got[len(got)-1].ID
		if between != nil {
			between(page)
		}
	}
	t.Fatal("ListModels paging does not end")
	return nil
}

func testListPagination(t *testing.T, s store.Store) {
	const n = 25
	var all []*training.Model
	for i := range n {
		m := minimalModel(newID(i))
		m.Status = training.Statuses[i%len(training.Statuses)]
		all = append(all, &m)
	}
	// Insert out of order: the list orders by id, not by insertion.
	shuffled := slices.Clone(all)
	slices.Reverse(shuffled[5:15])
	insert(t, s, shuffled...)

	newestFirst := func(pick func(*training.Model) bool) []string {
		var out []string
		for i := len(all) - 1; i >= 0; i-- {
			if pick(all[i]) {
				out = append(out, all[i].ID)
			}
		}
		return out
	}
	// Rows added while paging are newer than the cursor: they do not shift
	// later pages (no repeats) and are not part of this walk.
	extra := 0
	got := listAll(t, s, store.ModelFilter{Limit: 7}, func(page int) {
		if page == 0 {
			extra++
			m := minimalModel(newID(1000 + extra))
			insert(t, s, &m)
		}
	})
	if want := newestFirst(func(*training.Model) bool { return true }); !slices.Equal(got, want) {
		t.Errorf("paging all:\n got %v\nwant %v", got, want)
	}

	got = listAll(t, s, store.ModelFilter{Status: training.Training, Limit: 2}, nil)
	if want := newestFirst(func(m *training.Model) bool { return m.Status == training.Training }); !slices.Equal(got, want) {
		t.Errorf("paging Training:\n got %v\nwant %v", got, want)
	}

	// A cursor need not be an existing id.
	first, err := s.ListModels(t.Context(), store.ModelFilter{Before: all[10].ID + "0", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{all[10].ID, all[9].ID, all[8].ID}; !slices.Equal(ids(first), want) {
		t.Errorf("Before a made-up cursor = %v, want %v", ids(first), want)
	}
	// Every field comes back in a list, as from GetModel.
	for _, m := range first {
		checkModel(t, "listed model", m, getModel(t, s, m.ID))
	}

	got = listAll(t, s, store.ModelFilter{Status: "NoSuchStatus", Limit: 5}, nil)
	if len(got) != 0 {
		t.Errorf("unknown status listed %v", got)
	}
}

func testListLimit(t *testing.T, s store.Store) {
	const n = maxLimit + 5
	ms := make([]*training.Model, n)
	for i := range ms {
		m := minimalModel(newID(i))
		ms[i] = &m
	}
	insert(t, s, ms...)
	for _, tc := range []struct{ limit, want int }{
		{-3, 1}, {0, 1}, {1, 1}, {17, 17}, {maxLimit, maxLimit}, {maxLimit + 1, maxLimit}, {1 << 30, maxLimit},
	} {
		got, err := s.ListModels(t.Context(), store.ModelFilter{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("ListModels(Limit %d) returned %d, want %d", tc.limit, len(got), tc.want)
		}
	}
	// Deliveries clamp the same way.
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for range 3 {
			if _, err := tx.AddDelivery(ctx, training.Delivery{WebhookID: "w", ReceivedAt: base, Verified: true}); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tc := range []struct{ limit, want int }{{0, 1}, {-1, 1}, {2, 2}, {1 << 30, 3}} {
		got, err := s.ListDeliveries(t.Context(), store.DeliveryFilter{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want {
			t.Errorf("ListDeliveries(Limit %d) returned %d, want %d", tc.limit, len(got), tc.want)
		}
	}
}

// The name query is a plain, case-insensitive substring: LIKE wildcards,
// quotes and backslashes in it match only themselves.
func testListNameQuery(t *testing.T, s store.Store) {
	names := []string{
		"100% pure",
		"100 pure",
		"snake_case",
		"snakeXcase",
		"O'Brien's model",
		`say "hi"`,
		`back\slash`,
		"Ünïcode Ärt",
		"plain",
	}
	byName := map[string]string{}
	var ms []*training.Model
	for i, name := range names {
		m := minimalModel(newID(i))
		m.Name = name
		byName[name] = m.ID
		ms = append(ms, &m)
	}
	insert(t, s, ms...)
	for _, tc := range []struct {
		query string
		want  []string // names, in any order
	}{
		{"100%", []string{"100% pure"}},
		{"%", []string{"100% pure"}},
		{"_", []string{"snake_case"}},
		{"e_c", []string{"snake_case"}},
		{"'", []string{"O'Brien's model"}},
		{"o'brien", []string{"O'Brien's model"}},
		{`"`, []string{`say "hi"`}},
		{`\`, []string{`back\slash`}},
		{`k\s`, []string{`back\slash`}},
		{`\%`, nil},
		{"PURE", []string{"100% pure", "100 pure"}},
		{"ünï", []string{"Ünïcode Ärt"}},
		{"ÄRT", []string{"Ünïcode Ärt"}},
		{"1'; DROP TABLE models; --", nil},
		{"' OR '1'='1", nil},
		{"[a-z]", nil},
		{"*", nil},
		{"", names},
	} {
		got, err := s.ListModels(t.Context(), store.ModelFilter{Query: tc.query, Limit: 100})
		if err != nil {
			t.Fatalf("ListModels(Query %q): %v", tc.query, err)
		}
		var want []string
		for _, name := range tc.want {
			want = append(want, byName[name])
		}
		gotIDs := ids(got)
		slices.Sort(gotIDs)
		slices.Sort(want)
		if !slices.Equal(gotIDs, want) {
			var gotNames []string
			for _, m := range got {
				gotNames = append(gotNames, m.Name)
			}
			t.Errorf("Query %q matched %q, want %q", tc.query, gotNames, tc.want)
		}
	}
	// Query combines with status and cursor.
	ms[0].Status = training.Ready
	write(t, s, func(ctx context.Context, tx store.Tx) error { return tx.UpdateModel(ctx, ms[0]) })
	got, err := s.ListModels(t.Context(), store.ModelFilter{Query: "pure", Status: training.Ready, Limit: 10})
	if err != nil || !slices.Equal(ids(got), []string{ms[0].ID}) {
		t.Errorf("Query pure, status Ready = %v, %v; want [%s]", ids(got), err, ms[0].ID)
	}
	got, err = s.ListModels(t.Context(), store.ModelFilter{Query: "pure", Before: ms[1].ID, Limit: 10})
	if err != nil || !slices.Equal(ids(got), []string{ms[0].ID}) {
		t.Errorf("Query pure before %s = %v, %v; want [%s]", ms[1].ID, ids(got), err, ms[0].ID)
	}
}
