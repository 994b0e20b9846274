package service

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// fakeList is an account's list of trainings, newest first, 100 a page,
// with a cursor; it counts the pages read.
type fakeList struct {
	all   []replicate.Training // newest first
	pages int
}

func (f *fakeList) add(n int, at time.Time) {
	fresh := make([]replicate.Training, n, n+len(f.all))
	for i := range n { // the newest, created last, first
		c := at.Add(time.Duration(i) * time.Millisecond)
		fresh[n-1-i] = replicate.Training{ID: fmt.Sprintf("t%06d", len(f.all)+i), CreatedAt: &c}
	}
	f.all = append(fresh, f.all...)
}

func (f *fakeList) list(_ context.Context, pageURL string) (replicate.Page, error) {
	f.pages++
	from := 0
	if pageURL != "" {
		from, _ = strconv.Atoi(pageURL)
	}
	to := min(from+100, len(f.all))
	p := replicate.Page{Results: f.all[from:to]}
	if to < len(f.all) {
		p.Next = strconv.Itoa(to)
	}
	return p, nil
}

// A scan resumed tick after tick keeps no more than a recovery looks back
// at (maxRecoveryDepth trainings), however many the account creates, and
// never reads on past what it left out: a start older than that is
// reported as too far back, not taken for one without a training.
func TestResumedScanIsCapped(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f := &fakeList{}
	f.add(maxRecoveryDepth-50, base)
	first := NewTrainingScan(f.list)
	if err := first.readBack(ctx, base.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !first.end || len(first.results) != maxRecoveryDepth-50 {
		t.Fatalf("the first scan read %d trainings (end %v); want all %d", len(first.results), first.end, maxRecoveryDepth-50)
	}

	f.add(250, base.Add(time.Hour))
	f.pages = 0
	second := NewTrainingScan(f.list)
	if err := second.Resume(ctx, first); err != nil {
		t.Fatal(err)
	}
	if f.pages != 3 {
		t.Errorf("resuming read %d pages; want the 3 that hold the 250 new trainings", f.pages)
	}
	if n := len(second.Results()); n != maxRecoveryDepth {
		t.Errorf("the resumed scan holds %d trainings; want %d at most", n, maxRecoveryDepth)
	}
	// The oldest 200 were left out: a start among them is not covered, and
	// looking for it reads nothing and fails rather than find no training.
	old := training.Model{ID: "m-old", CreatedAt: base.Add(time.Minute)}
	recent := training.Model{ID: "m-recent", CreatedAt: base.Add(time.Hour)}
	if second.Covers(old) || !second.Covers(recent) {
		t.Errorf("covers the oldest start: %v, a recent one: %v; want false, true", second.Covers(old), second.Covers(recent))
	}
	f.pages = 0
	if err := second.ReadFor(ctx, old); err == nil {
		t.Error("looking for a start beyond the kept trainings succeeded; want an error")
	}
	if _, err := second.More(ctx); err == nil || f.pages != 0 {
		t.Errorf("reading on from a capped scan: %v, %d pages; want an error and no read", err, f.pages)
	}
	if second.Err() != nil {
		t.Errorf("a capped scan reports a failed read: %v", second.Err())
	}
}
