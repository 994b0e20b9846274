package poller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// applyWorkers is how many poll results found on list pages are applied at
// once: they make no call, and the service commits concurrent ones together.
const applyWorkers = 16

// checkRunning checks the claimed running trainings: those found on list
// pages are applied as each page arrives, the rest are fetched one by one.
// A tick makes at most tickCalls calls for pages and GETs, and at least a
// fifth of them for GETs, so trainings the pages do not reach are not
// starved; it returns the trainings it had no calls left for.
//
// When the last tick's sweep stopped at its page budget with claimed
// trainings unseen, this one goes on from that page rather than from the
// top: with more in flight than a tick's pages cover, sweeps from the top
// would read the same pages over and over and rarely reach the rest. Every
// training in flight that changed is applied from the page it is on,
// claimed or not, so each is seen once a round.
func (p *Poller) checkRunning(ctx context.Context, scan *service.TrainingScan, running []training.Model) []training.Model {
	if len(running) == 0 {
		return nil
	}
	type job struct {
		m      training.Model
		listed *replicate.Training // nil: GET it
	}
	// Buffered by a page, so the sweep reads on while results are applied.
	jobs := make(chan job, 100)
	gets := make(chan struct{}, p.o.Workers) // GETs at once
	var wg sync.WaitGroup
	for range min(max(applyWorkers, p.o.Workers), len(running)) {
		wg.Go(func() {
			for j := range jobs {
				if j.listed != nil {
					p.apply(ctx, j.m, *j.listed)
					continue
				}
				gets <- struct{}{}
				p.fetch(ctx, j.m)
				<-gets
			}
		})
	}
	calls := tickCalls(p.o)
	var found map[string]bool
	pages := 0
	if scan != nil && len(running) >= p.o.ListThreshold {
		maxPages := calls
		if p.o.MaxListPages > 0 {
			maxPages = p.o.MaxListPages
		}
		// Go on with the round the last tick's sweep left unfinished, or
		// begin one from the top through the scan recoveries share.
		var (
			src pager = scan
			rd        = &round{began: time.Now(), seen: map[string]bool{}}
		)
		if p.roll != "" && p.round != nil && time.Since(p.rollAt) < rollFor {
			src, rd = &pageReader{list: p.listTrainings, next: p.roll}, p.round
		}
		var cut bool
		pages, found, cut = p.sweep(ctx, src, rd, running, maxPages, func(m training.Model, t replicate.Training) {
			jobs <- job{m: m, listed: &t}
		})
		p.roll, p.round = "", nil
		if cut {
			p.roll, p.rollAt, p.round = src.Next(), time.Now(), rd
		}
	}
	getsLeft := max(calls-pages, calls/5, 1)
	var left []training.Model
	for _, m := range running {
		if found[m.TrainingID] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if getsLeft == 0 {
			left = append(left, m)
			continue
		}
		getsLeft--
		jobs <- job{m: m}
	}
	close(jobs)
	wg.Wait()
	return left
}

// pager is what a sweep reads: a TrainingScan from the top of the list,
// which recoveries share, or a pageReader from where the last sweep stopped.
type pager interface {
	Results() []replicate.Training
	More(ctx context.Context) ([]replicate.Training, error)
	Done() bool
	Next() string // the page More reads next
}

// pageReader reads the list from a given page on, for a sweep that goes on
// with a round. It keeps only its place: what it reads is applied at once.
type pageReader struct {
	list func(ctx context.Context, pageURL string) (replicate.Page, error)
	next string // "" reads the first page
	end  bool
	err  error
}

func (r *pageReader) Results() []replicate.Training { return nil }

func (r *pageReader) Done() bool { return r.end || r.err != nil }

func (r *pageReader) Next() string { return r.next }

func (r *pageReader) More(ctx context.Context) ([]replicate.Training, error) {
	if r.Done() {
		return nil, r.err
	}
	pg, err := r.list(ctx, r.next)
	if err != nil {
		r.err = err
		return nil, err
	}
	r.next, r.end = pg.Next, pg.Next == ""
	return pg.Results, nil
}

// fetch checks one training with a GET.
func (p *Poller) fetch(ctx context.Context, m training.Model) {
	t, err := p.getTraining(ctx, m.TrainingID)
	if err != nil {
		if ctx.Err() == nil {
			lvl := slog.LevelWarn
			if replicate.IsNotFound(err) && p.o.Now().Sub(m.CreatedAt) < 5*time.Minute {
				lvl = slog.LevelInfo // Replicate sometimes 404s right after a create
			}
			if replicate.IsNotFound(err) {
				p.notFound(ctx, m, lvl)
				return
			}
			p.o.Log.Log(ctx, lvl, "poller: could not get training; will retry", "model_id", m.ID, "training_id", m.TrainingID, "err", err)
			p.retryLater(ctx, m)
		}
		return
	}
	p.apply(ctx, m, t)
}

// apply applies a poll result.
func (p *Poller) apply(ctx context.Context, m training.Model, t replicate.Training) {
	if _, err := p.o.Service.Observe(ctx, t.Observation(training.SourcePoll, "", p.o.Now())); err != nil && !errors.Is(err, context.Canceled) {
		p.o.Log.Error("poller: could not apply a poll result", "model_id", m.ID, "training_id", m.TrainingID, "err", err)
	}
}

func (p *Poller) retryLater(ctx context.Context, m training.Model) {
	at := p.o.Now().Add(p.o.Policy.Retry(m.CheckAttempts))
	if err := p.o.Service.Reschedule(ctx, m.ID, at); err != nil && ctx.Err() == nil {
		p.o.Log.Error("poller: could not reschedule", "model_id", m.ID, "err", err)
	}
}
