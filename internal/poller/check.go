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
		pages, found = p.sweep(ctx, scan, running, maxPages, func(m training.Model, t replicate.Training) {
			jobs <- job{m: m, listed: &t}
		})
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
