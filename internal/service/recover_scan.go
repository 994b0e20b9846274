package service

import (
	"context"
	"fmt"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

// A TrainingScan reads Replicate's list of trainings, newest first, one page
// at a time, and keeps what it read, so that one read of the list answers a
// poller tick's status checks and all its recoveries of starts in doubt
// instead of each recovery reading the same pages again.
//
// Sharing it is sound for the starts the caller claimed before the scan
// began (ClaimDue): a claimed start's earlier create had ended before it was
// due (the start lease, or startFailed's reschedule once the create
// answered), so its training, if any, was listed before the first page was
// read. A training created after that is newer than every page, and is
// never a claimed start's: no create for a claimed start runs until its
// recovery holds it (RecoverClaimed). Not safe for concurrent use.
type TrainingScan struct {
	list    func(ctx context.Context, pageURL string) (replicate.Page, error)
	results []replicate.Training
	seen    map[string]bool
	oldest  *time.Time // the oldest created_at read so far
	next    string
	pages   int
	end     bool  // the last page was read
	err     error // a failed read ends the scan for this tick
}

// NewTrainingScan begins a scan; nothing is read until asked. list is the
// client's ListTrainings.
func NewTrainingScan(list func(ctx context.Context, pageURL string) (replicate.Page, error)) *TrainingScan {
	return &TrainingScan{list: list, seen: map[string]bool{}}
}

// More reads the next page and returns its results; none once the list
// is read to its end. A failed read is returned again on every later call,
// without asking the API again.
func (sc *TrainingScan) More(ctx context.Context) ([]replicate.Training, error) {
	if sc.err != nil || sc.end {
		return nil, sc.err
	}
	p, err := sc.list(ctx, sc.next)
	if err != nil {
		sc.err = err
		return nil, err
	}
	sc.pages++
	var fresh []replicate.Training
	for _, t := range p.Results {
		// A cursor never repeats a training; an offset-paged list may, when
		// trainings are created between two reads.
		if sc.seen[t.ID] {
			continue
		}
		sc.seen[t.ID] = true
		fresh = append(fresh, t)
		if t.CreatedAt != nil && (sc.oldest == nil || t.CreatedAt.Before(*sc.oldest)) {
			c := *t.CreatedAt
			sc.oldest = &c
		}
	}
	sc.results = append(sc.results, fresh...)
	sc.next = p.Next
	sc.end = p.Next == ""
	return fresh, nil
}

// Done reports whether the scan can read no further: it read the last page,
// or a read failed.
func (sc *TrainingScan) Done() bool { return sc.end || sc.err != nil }

// Err is the error of the read that ended the scan, if one did.
func (sc *TrainingScan) Err() error { return sc.err }

// Pages is how many pages were read.
func (sc *TrainingScan) Pages() int { return sc.pages }

// Results returns every training read so far, newest first.
func (sc *TrainingScan) Results() []replicate.Training { return sc.results }

// reaches reports whether the scan has read every training created at or
// after t: it has seen an older one, or the end of the list.
func (sc *TrainingScan) reaches(t time.Time) bool {
	return sc.end || sc.oldest != nil && sc.oldest.Before(t)
}

// readBack reads pages until the scan reaches t, reading at most
// maxRecoveryPages in all.
func (sc *TrainingScan) readBack(ctx context.Context, t time.Time) error {
	for !sc.reaches(t) {
		if sc.pages >= maxRecoveryPages {
			return fmt.Errorf("no trace of it in the last %d pages of trainings, and older ones were not read; not creating another", maxRecoveryPages)
		}
		if _, err := sc.More(ctx); err != nil {
			return fmt.Errorf("list trainings: %w", err)
		}
	}
	return nil
}
