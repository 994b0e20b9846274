package poller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// keepScan is how long a kept scan is resumed after its last use. Starts in
// doubt come due a while apart (the start lease, backoff), and a kept scan
// is what lets a crash storm's hundreds of them be recovered at tens a
// second; past this it is dropped, and its memory with it.
const keepScan = 10 * time.Minute

// recover recovers claimed starts in doubt for up to RecoverFor, Workers at
// a time, all reading the list through scan, the tick's. The scan first resumes
// the last tick's (so after a crash storm the list is read back to the
// oldest start once, not every tick); then the starts it already reaches
// are recovered first, oldest due first, and the others newest first, each
// reading the list only a little further back, so that a tick cut short (a
// crash, the budget) still recovers some. Several run at once because a
// recovery mostly waits: for the rate limiter, which the app's own starts
// also queue on, and for a 429's Retry-After.
//
// Time spent reading the list does not count against RecoverFor: it is the
// recoveries' own calls and writes that could hold up the next status
// checks, and a deep read counted would leave one recovery a tick. The
// starts it does not get to are released, due again at once, so the next
// tick (which checks running trainings first) goes on with them. When the
// tick is cut short (ctx ended: shutdown), they are left to their claim,
// which runs out after Lease: a release is a write, and the store may be
// closing.
func (p *Poller) recover(ctx context.Context, starts []training.Model, scan *service.TrainingScan) int {
	if len(starts) == 0 {
		return 0
	}
	begin, listed := time.Now(), p.listTime.Load() // a budget of work time, not of the injectable clock
	worked := func() time.Duration {
		return time.Since(begin) - time.Duration(p.listTime.Load()-listed)
	}
	if scan != nil {
		// A failed read is left in the scan: the first recovery then
		// hands every start back (below).
		_ = scan.Resume(ctx, p.kept)
		slices.SortStableFunc(starts, func(a, b training.Model) int {
			ca, cb := scan.Covers(a), scan.Covers(b)
			switch {
			case ca && cb:
				return 0
			case ca:
				return -1
			case cb:
				return 1
			}
			return b.CreatedAt.Compare(a.CreatedAt)
		})
	}

	var recovered atomic.Int64
	var listFailed atomic.Bool
	jobs := make(chan training.Model)
	var wg sync.WaitGroup
	for range min(p.o.Workers, len(starts)) {
		wg.Go(func() {
			for m := range jobs {
				switch p.recoverOne(ctx, m, scan) {
				case recoveredOK:
					recovered.Add(1)
				case recoveryListFailed:
					listFailed.Store(true)
				}
			}
		})
	}
	left := starts[:0:0]
	for i, m := range starts {
		if ctx.Err() != nil {
			break
		}
		if listFailed.Load() || i > 0 && worked() >= p.o.RecoverFor {
			left = starts[i:]
			break
		}
		// Pages are read here, one at a time, before a worker takes
		// the start's lease, so that a failed read hands every start
		// left back without counting an attempt against any.
		if scan != nil {
			_ = scan.ReadFor(ctx, m) // a start too far back is the worker's to report
			if scan.Err() != nil {
				listFailed.Store(true)
				left = starts[i:]
				break
			}
		}
		jobs <- m
	}
	close(jobs)
	wg.Wait()
	switch {
	case len(left) == 0 || ctx.Err() != nil:
	case listFailed.Load():
		// The shared list read failed (a 429 the client gave up on, an
		// outage): every start left needs it. Hand them back without
		// counting a failed attempt each, which would push a crash
		// storm's starts into ever longer backoff; the next tick reads a
		// new scan.
		retry := p.o.Policy.Retry(0)
		if err := p.o.Service.ReleaseClaims(ctx, left, retry); err != nil && ctx.Err() == nil {
			p.o.Log.Warn("poller: could not release starts in doubt; they are due when their claim runs out", "count", len(left), "err", err)
		}
		p.o.Log.Warn("poller: could not list trainings to recover starts in doubt; retrying them shortly", "count", len(left), "retry_in", retry, "err", scan.Err())
	default:
		if err := p.o.Service.ReleaseClaims(ctx, left, 0); err != nil && ctx.Err() == nil {
			p.o.Log.Warn("poller: could not release starts in doubt; they are due when their claim runs out", "count", len(left), "err", err)
		}
		p.o.Log.Debug("poller: recovery budget spent; the rest of the starts in doubt wait for the next tick", "recovered", recovered.Load(), "left", len(left))
	}
	return int(recovered.Load())
}

type recoveryResult int

const (
	recoveredOK recoveryResult = iota
	recoveryFailed
	recoveryListFailed
)

// recoverOne recovers one claimed start and, when it could not, sets when
// it is tried again.
func (p *Poller) recoverOne(ctx context.Context, m training.Model, scan *service.TrainingScan) recoveryResult {
	_, err := p.o.Service.RecoverClaimed(ctx, m, scan)
	switch {
	case err == nil:
		return recoveredOK
	case errors.Is(err, service.ErrClaimLost):
		p.o.Log.Debug("poller: start in doubt changed since it was claimed; left alone", "model_id", m.ID)
	case scan != nil && scan.Err() != nil:
		// The shared list read failed. This one took its start lease,
		// but failed before any create, so it may be due again as soon
		// as the others recover hands back.
		if err := p.o.Service.Defer(ctx, m.ID, p.o.Now().Add(p.o.Policy.Retry(0))); err != nil && ctx.Err() == nil {
			p.o.Log.Error("poller: could not reschedule", "model_id", m.ID, "err", err)
		}
		return recoveryListFailed
	case ctx.Err() == nil:
		// m is as claimed: its CheckAttempts are the failures before
		// this one, which RecoverClaimed counted.
		p.o.Log.Warn("poller: could not recover a start yet; will retry", "model_id", m.ID, "err", err)
		if err := p.o.Service.Defer(ctx, m.ID, p.o.Now().Add(p.o.Policy.Retry(m.CheckAttempts))); err != nil && ctx.Err() == nil {
			p.o.Log.Error("poller: could not reschedule", "model_id", m.ID, "err", err)
		}
	}
	return recoveryFailed
}
