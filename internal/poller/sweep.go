package poller

import (
	"context"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// sweep reads list pages through scan, newest first, and hands each claimed
// training it finds there, with all Apply needs, to found as soon as its page
// is read. It reads down to the oldest of them (the earliest creation of
// their models), at most maxPages, and stops sooner when every one is found
// or reading on would cost more than GETs of those not found (see
// worthReading); past that oldest creation (trainings created before they
// were registered, or clocks that disagree) it reads on while that is
// cheaper than GETs of those still unseen. A claimed training the pages do
// not reach is fetched by itself.
//
// Every page also brings news of trainings in flight that were not
// claimed (due later, or beyond the claim): each whose listed status
// differs from the model's is handed to found too, so a training that
// finished is applied from the first page that shows it.
//
// A sweep belongs to a round (rd): one read of the list from the top down
// past the last training in flight, over as many ticks as it takes when
// the claimed trainings lie deeper than one tick's pages reach. A claimed
// training the round has read already is not looked for again (if due, it
// is fetched, or waits for the next round). Past the oldest claimed
// creation, two pages in a row without a training in flight end the
// round: the end of those in flight. Trainings that finished can leave
// such a gap higher up, so while claimed trainings older than the round
// have not been seen in it, the sweep reads on through as many pages
// without trainings in flight as there are of them, at most what their
// GETs would cost.
//
// It returns the pages it read, the training ids it handed over, and
// whether it stopped at maxPages with claimed trainings unseen and more of
// the list to read: the next tick's sweep then goes on from there.
func (p *Poller) sweep(ctx context.Context, scan pager, rd *round, due []training.Model, maxPages int, found func(training.Model, replicate.Training)) (int, map[string]bool, bool) {
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
	news := 0
	// unseen: claimed trainings the round has not read; unseenOld: those of
	// them it may still reach, all in its first sweep, and in a later one
	// those registered before it began (the newer lie above its place).
	old := func(m training.Model) bool { return rd.sweeps == 0 || m.CreatedAt.Before(rd.began) }
	unseen, unseenOld := 0, 0
	for _, m := range due {
		if !rd.seen[m.TrainingID] {
			unseen++
			if old(m) {
				unseenOld++
			}
		}
	}
	defer func() { rd.sweeps++ }()
	match := func(ts []replicate.Training) {
		l.lastFound, l.lastInFlight = 0, 0
		var others []string
		for _, t := range ts {
			m, ok := want[t.ID]
			if ok && !rd.seen[t.ID] {
				rd.seen[t.ID] = true
				l.lastFound++
				unseen--
				if old(m) {
					unseenOld--
				}
			}
			if ok && !handed[t.ID] && complete(t) {
				handed[t.ID] = true
				found(m, t)
			}
			if !ok && !handed[t.ID] {
				others = append(others, t.ID)
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
		l.lastInFlight = l.lastFound
		if len(others) == 0 || ctx.Err() != nil {
			return
		}
		ms, err := p.o.Service.InFlight(ctx, others)
		if err != nil {
			if ctx.Err() == nil {
				p.o.Log.Warn("poller: could not look up the trainings of a list page; they are checked when due", "err", err)
			}
			return
		}
		listed := make(map[string]replicate.Training, len(others))
		for _, t := range ts {
			listed[t.ID] = t
		}
		for _, m := range ms {
			t := listed[m.TrainingID]
			l.lastInFlight++
			rd.seen[t.ID] = true
			if t.Status != string(m.RemoteStatus) && complete(t) && !handed[t.ID] {
				handed[t.ID] = true
				news++
				found(m, t)
			}
		}
	}
	// Pages a previous reader of the scan read count too.
	match(scan.Results())
	pages := 0
	for pages < maxPages && unseen > 0 && !scan.Done() && ctx.Err() == nil {
		if rd.empty >= 2 && rd.empty > unseenOld {
			p.o.Log.Debug("poller: the sweep read past the trainings in flight", "pages", pages, "unseen", unseen)
			break
		}
		if (pages > 0 || l.read > 0) && !l.worthReading(unseen, pages) {
			p.o.Log.Debug("poller: the list pages left would cost more than GETs of the trainings not found", "pages", pages, "unseen", unseen)
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
		if l.lastInFlight == 0 && !l.oldest.After(l.target) {
			rd.empty++
		} else {
			rd.empty = 0
		}
	}
	if news > 0 {
		p.o.Log.Debug("poller: applied news of unclaimed trainings from list pages", "count", news)
	}
	return pages, handed, pages >= maxPages && unseen > 0 && !scan.Done()
}

// listed is what a sweep has read of the list so far.
type listed struct {
	read           int       // trainings read
	lastFound      int       // claimed trainings first seen on the last page
	lastInFlight   int       // trainings in flight on the last page, claimed or not
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
