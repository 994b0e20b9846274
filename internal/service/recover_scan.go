package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
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
// recovery holds it (RecoverClaimed). Safe for concurrent use: a poller
// recovers several starts at once, and one page is read at a time.
//
// A scan begun for a later tick may Resume an earlier one: it reads from the
// top only down to the trainings the earlier scan read, and takes the rest
// from it. After a crash storm that spares each tick the hundred pages back
// to the oldest start in doubt.
type TrainingScan struct {
	mu      sync.Mutex
	list    func(ctx context.Context, pageURL string) (replicate.Page, error)
	results []replicate.Training
	seen    map[string]bool
	oldest  *time.Time // the oldest created_at read so far
	next    string
	end     bool  // the last page was read
	err     error // a failed read ends the scan for this tick
	capped  bool  // Resume left out what lies beyond maxRecoveryDepth: nothing older may be read
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
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.more(ctx)
}

func (sc *TrainingScan) more(ctx context.Context) ([]replicate.Training, error) {
	if sc.err != nil || sc.end {
		return nil, sc.err
	}
	if sc.capped {
		// Reading on from the earlier scan's cursor would leave a gap.
		return nil, fmt.Errorf("only the last %d trainings were kept from earlier reads", len(sc.results))
	}
	p, err := sc.list(ctx, sc.next)
	if err != nil {
		sc.err = err
		return nil, err
	}
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

// Next is the URL of the page the scan would read next: "" before the
// first page and after the last. A later reader may go on from it.
func (sc *TrainingScan) Next() string {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.next
}

// Done reports whether the scan can read no further: it read the last page,
// or a read failed.
func (sc *TrainingScan) Done() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.done()
}

func (sc *TrainingScan) done() bool { return sc.end || sc.err != nil || sc.capped }

// Err is the error of the read that ended the scan, if one did.
func (sc *TrainingScan) Err() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.err
}

// Results returns every training read so far, newest first.
// The slice is not written to afterwards (only appended to, beyond its
// length), except by Slim.
func (sc *TrainingScan) Results() []replicate.Training {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.results[:len(sc.results):len(sc.results)]
}

// Covers reports whether the scan has read every training a recovery of
// m's start would look at, so that recovering it reads no more pages.
func (sc *TrainingScan) Covers(m training.Model) bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.reaches(m.CreatedAt.Add(-recoverySkew))
}

// ReadFor reads pages until the scan Covers m, as a recovery of m's start
// would; the error is the read's, or that m is further back than a recovery
// looks.
func (sc *TrainingScan) ReadFor(ctx context.Context, m training.Model) error {
	return sc.readBack(ctx, m.CreatedAt.Add(-recoverySkew))
}

// reaches reports whether the scan has read every training created at or
// after t: it has seen an older one, or the end of the list.
func (sc *TrainingScan) reaches(t time.Time) bool {
	return sc.end || sc.oldest != nil && sc.oldest.Before(t)
}

// Resume makes this scan, begun after earlier, go on where earlier stopped:
// it reads pages from the top until it meets a training earlier read, then
// takes earlier's older results and its place in the list, so that reading
// further back continues from there. It reads no more than it would to
// reach the oldest training earlier read; if the list was read to its end
// first, or earlier read nothing, there is nothing to take.
//
// It is sound because earlier's results run without a gap from the top of
// the list when it began down to its oldest, and the list is newest first:
// every training older than the first one the two have in common was read
// by earlier. Only immutable fields of what it takes may be relied on
// (trainer, input, webhook URL); a status is as old as earlier's read.
func (sc *TrainingScan) Resume(ctx context.Context, earlier *TrainingScan) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if earlier == nil || earlier == sc {
		return nil
	}
	earlier.mu.Lock()
	defer earlier.mu.Unlock()
	if len(earlier.results) == 0 {
		return nil
	}
	checked := 0
	for {
		for i := checked; i < len(sc.results); i++ {
			if earlier.seen[sc.results[i].ID] {
				sc.take(earlier, sc.results[i].ID)
				return nil
			}
		}
		checked = len(sc.results)
		if sc.done() || len(sc.results) >= maxRecoveryDepth ||
			sc.oldest != nil && earlier.oldest != nil && sc.oldest.Before(*earlier.oldest) {
			return sc.err
		}
		if _, err := sc.more(ctx); err != nil {
			return fmt.Errorf("list trainings: %w", err)
		}
	}
}

// take appends earlier's results from the training with the given id on.
func (sc *TrainingScan) take(earlier *TrainingScan, from string) {
	at := 0
	for i, t := range earlier.results {
		if t.ID == from {
			at = i
			break
		}
	}
	// No more than a recovery looks back at is kept, so that a scan
	// resumed tick after tick on a busy account does not grow without end.
	for _, t := range earlier.results[at:] {
		if sc.seen[t.ID] {
			continue
		}
		if len(sc.results) >= maxRecoveryDepth {
			sc.capped = true
			break
		}
		sc.seen[t.ID] = true
		sc.results = append(sc.results, t)
		if t.CreatedAt != nil && (sc.oldest == nil || t.CreatedAt.Before(*sc.oldest)) {
			c := *t.CreatedAt
			sc.oldest = &c
		}
	}
	if sc.capped {
		return
	}
	sc.capped = earlier.capped
	sc.next, sc.end = earlier.next, earlier.end
}

// Slim drops what recoveries do not use (logs, output, error, metrics) from
// the trainings read so far, for a scan kept to be resumed. No slice
// Results returned may be in use.
func (sc *TrainingScan) Slim() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for i := range sc.results {
		t := &sc.results[i]
		t.Logs, t.Output, t.Error, t.Metrics, t.URLs = "", nil, nil, nil, nil
	}
}

// readBack reads pages until the scan reaches t, having read at most
// maxRecoveryDepth trainings.
func (sc *TrainingScan) readBack(ctx context.Context, t time.Time) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for !sc.reaches(t) {
		if len(sc.results) >= maxRecoveryDepth {
			return fmt.Errorf("no trace of it in the last %d trainings, and older ones were not read; not creating another", len(sc.results))
		}
		if _, err := sc.more(ctx); err != nil {
			return fmt.Errorf("list trainings: %w", err)
		}
	}
	return nil
}
