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

// API is what the poller reads from Replicate.
type API interface {
	GetTraining(ctx context.Context, id string) (replicate.Training, error)
	ListTrainings(ctx context.Context, pageURL string) (replicate.Page, error)
}

// Service is what the poller needs of the service.
type Service interface {
	ClaimDue(ctx context.Context, horizon, lease time.Duration, limit int) ([]training.Model, error)
	Observe(ctx context.Context, obs training.Observation) (service.Result, error)
	Reschedule(ctx context.Context, id string, at time.Time) error
	RecoverStart(ctx context.Context, m training.Model) (training.Model, error)
}

// Options configure a Poller.
type Options struct {
	API     API
	Service Service
	Policy  Policy
	Log     *slog.Logger
	Now     func() time.Time
	// Tick is how often due models are looked for (default 1s).
	Tick time.Duration
	// Batch caps the models claimed per tick (default 1000).
	Batch int
	// Workers is how many checks run at once (default 4); the client's
	// shared rate limiter paces them all.
	Workers int
	// Lease is how long a claimed model is hidden from other pollers
	// (default 30s: a check takes seconds); if this one dies, it is due
	// again afterwards. A lease that runs out mid-check only means another
	// poller may check the same training too, which Apply makes harmless.
	Lease time.Duration
	// ListThreshold: with at least this many due trainings, one list page
	// (100 trainings per call) is read before per-training GETs (default 3).
	ListThreshold int
	// MaxListPages bounds the pages read per tick (default: twice the
	// pages the due trainings would fill, plus three, at most 50).
	MaxListPages int
}

// Poller is started by Run and stops when its context ends.
type Poller struct {
	o Options
}

// New returns a poller with defaults filled in.
func New(o Options) *Poller {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.ListThreshold <= 0 {
		o.ListThreshold = 3
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Poller{o: o}
}

// Run checks due models every tick until ctx ends. A tick that finds a full
// batch runs again at once, so a backlog drains at the rate limit's pace.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.o.Tick)
	defer t.Stop()
	for {
		n, err := p.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			p.o.Log.Error("poller: check failed", "err", err)
		}
		if n >= p.o.Batch && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce claims the models due now and checks them; it returns how many it claimed.
func (p *Poller) RunOnce(ctx context.Context) (int, error) {
	due, err := p.o.Service.ClaimDue(ctx, 0, p.o.Lease, p.o.Batch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	// When enough are due that list pages will be read, check now those due
	// within one polling interval too: they are mostly on the same pages, so
	// sweeps line up instead of each jittered check costing its own pages.
	if !p.o.Policy.Webhook && len(due) >= p.o.ListThreshold && len(due) < p.o.Batch {
		more, err := p.o.Service.ClaimDue(ctx, p.o.Policy.Interval, p.o.Lease, p.o.Batch-len(due))
		if err != nil {
			return len(due), err
		}
		due = append(due, more...)
	}
	var starts, running []training.Model
	for _, m := range due {
		if m.TrainingID == "" {
			starts = append(starts, m)
		} else {
			running = append(running, m)
		}
	}
	for _, m := range starts {
		if ctx.Err() != nil {
			return len(due), ctx.Err()
		}
		if _, err := p.o.Service.RecoverStart(ctx, m); err != nil {
			p.o.Log.Warn("poller: could not recover a start yet; will retry", "model_id", m.ID, "err", err)
			p.retryLater(ctx, m)
		}
	}
	listed := p.list(ctx, running)

	jobs := make(chan training.Model)
	var wg sync.WaitGroup
	for i := 0; i < min(p.o.Workers, len(running)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range jobs {
				p.check(ctx, m, listed)
			}
		}()
	}
	for _, m := range running {
		if ctx.Err() != nil {
			break
		}
		jobs <- m
	}
	close(jobs)
	wg.Wait()
	return len(due), ctx.Err()
}

// list reads up to MaxListPages pages of recent trainings when several are
// due: one call answers for up to 100 of them. It stops early once every due
// training is found or the page reaches trainings older than all of them.
func (p *Poller) list(ctx context.Context, due []training.Model) map[string]replicate.Training {
	if len(due) < p.o.ListThreshold {
		return nil
	}
	want := make(map[string]bool, len(due))
	oldest := due[0].CreatedAt
	for _, m := range due {
		want[m.TrainingID] = true
		if m.CreatedAt.Before(oldest) {
			oldest = m.CreatedAt
		}
	}
	found := map[string]replicate.Training{}
	page := ""
	maxPages := p.o.MaxListPages
	if maxPages <= 0 {
		// Due trainings are spread through the list among others, so allow
		// twice the pages they would fill, and a little more.
		maxPages = min(2*(len(due)/100)+3, 50)
	}
	for i := 0; i < maxPages && len(found) < len(want); i++ {
		pg, err := p.o.API.ListTrainings(ctx, page)
		if err != nil {
			p.o.Log.Warn("poller: list trainings failed; checking one by one", "err", err)
			break
		}
		past := false
		for _, t := range pg.Results {
			if want[t.ID] {
				found[t.ID] = t
			}
			if t.CreatedAt != nil && t.CreatedAt.Before(oldest.Add(-time.Minute)) {
				past = true
			}
		}
		if past || pg.Next == "" {
			break
		}
		page = pg.Next
	}
	return found
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

func (p *Poller) check(ctx context.Context, m training.Model, listed map[string]replicate.Training) {
	t, ok := listed[m.TrainingID]
	if !ok || !complete(t) {
		var err error
		t, err = p.o.API.GetTraining(ctx, m.TrainingID)
		if err != nil {
			if ctx.Err() == nil {
				lvl := slog.LevelWarn
				if replicate.IsNotFound(err) && p.o.Now().Sub(m.CreatedAt) < 5*time.Minute {
					lvl = slog.LevelInfo // Replicate sometimes 404s right after a create
				}
				p.o.Log.Log(ctx, lvl, "poller: could not get training; will retry", "model_id", m.ID, "training_id", m.TrainingID, "err", err)
				p.retryLater(ctx, m)
			}
			return
		}
	}
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
