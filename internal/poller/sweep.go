package poller

import (
	"context"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// sweep reads list pages through scan, newest first, and hands each claimed
// training it finds there, with all Apply needs, to found as soon as its page
// is read. It reads down to the oldest of them (the earliest creation of
// their models), at most maxPages, and stops sooner when every one is found
// or reading on would cost more than GETs of those not found (see
// worthReading); past that oldest creation (trainings created before they
// were registered, or clocks that disagree) it reads on while that is
// cheaper than GETs of those still unseen. A claimed training the pages do not reach is
// fetched by itself. It returns the pages it read and the training ids it
// handed over.
func (p *Poller) sweep(ctx context.Context, scan *service.TrainingScan, due []training.Model, maxPages int, found func(training.Model, replicate.Training)) (int, map[string]bool) {
	want := make(map[string]training.Model, len(due))
	var l listed
	l.target = due[0].CreatedAt
	for _, m := range due {
		want[m.TrainingID] = m
		if m.CreatedAt.Before(l.target) {
			l.target = m.CreatedAt
		}
	}
	handed := make(map[string]bool, len(due))
	seen := make(map[string]bool, len(due)) // on a page, complete or not
	match := func(ts []replicate.Training) {
		l.lastFound = 0
		for _, t := range ts {
			m, ok := want[t.ID]
			if ok && !seen[t.ID] {
				seen[t.ID] = true
				l.lastFound++
			}
			if ok && !handed[t.ID] && complete(t) {
				handed[t.ID] = true
				found(m, t)
			}
			l.read++
			if t.CreatedAt == nil {
				continue
			}
			if l.newest.IsZero() || t.CreatedAt.After(l.newest) {
				l.newest = *t.CreatedAt
			}
			if l.oldest.IsZero() || t.CreatedAt.Before(l.oldest) {
				l.oldest = *t.CreatedAt
			}
		}
	}
	// Pages a previous reader of the scan read count too.
	match(scan.Results())
	pages := 0
	for pages < maxPages && len(seen) < len(want) && !scan.Done() && ctx.Err() == nil {
		if (pages > 0 || l.read > 0) && !l.worthReading(len(want)-len(seen), pages) {
			p.o.Log.Debug("poller: the list pages left would cost more than GETs of the trainings not found", "pages", pages, "left", len(want)-len(handed))
			break
		}
		pg, err := scan.More(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.o.Log.Warn("poller: list trainings failed; checking the rest one by one", "err", err)
			}
			break
		}
		pages++
		match(pg)
	}
	return pages, handed
}

// listed is what a sweep has read of the list so far.
type listed struct {
	read           int       // trainings read
	lastFound      int       // claimed trainings first seen on the last page
	newest, oldest time.Time // their creation times
	target         time.Time // the earliest creation of a claimed model
}

// worthReading reports whether reading another page is expected to cost no
// more than GETs of the missing trainings (claimed, not yet seen on a page),
// after pages read in this sweep. A page that found one of them paid for
// itself, so the next is read too. Otherwise, until the sweep reaches
// target, the pages left down to it are estimated from how many trainings
// the list held per second of creation time in the part read, and read if
// they are fewer than the missing trainings.
//
// Past target the missing trainings were created before their models were
// registered (an app that creates many trainings, then registers them), and
// nothing says how much further down they are. Pages are then read while
// fewer pages than missing trainings have been read: if they are found, a
// page each hundred was the cheap way; if not, the GETs cost at most as
// much again as the pages spent looking.
func (l listed) worthReading(missing, pages int) bool {
	if l.lastFound > 0 {
		return true
	}
	if l.read == 0 || !l.oldest.After(l.target) {
		return pages < missing
	}
	covered := l.newest.Sub(l.oldest)
	if covered <= 0 {
		return false
	}
	left := float64(l.read) * float64(l.oldest.Sub(l.target)) / float64(covered)
	return float64(missing) >= left/100
}

// complete reports whether a listed training carries all Apply needs, so no
// GET is spent on it. Lists may leave out logs or output: a finished training
// without its output or error is fetched whole.
func complete(t replicate.Training) bool {
	switch t.Status {
	case training.RemoteSucceeded:
		return len(t.Output) > 0
	case training.RemoteFailed:
		return t.ErrorText() != ""
	}
	return true
}
