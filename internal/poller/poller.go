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

// SharedRecoverer is implemented by a Service (service.Service does) that
// recovers claimed starts from one TrainingScan shared by a tick, and hands
// back the claims a tick did not get to. Without it, each start is recovered
// by RecoverStart, which reads the list itself, and starts a tick did not get
// to wait for their claim to run out, as do starts claimed ahead of their
// due time.
type SharedRecoverer interface {
	RecoverClaimed(ctx context.Context, m training.Model, scan *service.TrainingScan) (training.Model, error)
	ReleaseClaims(ctx context.Context, ms []training.Model, after time.Duration) error
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
	// MaxListPages bounds the pages read per tick for status checks
	// (default: twice the pages the due trainings would fill, plus three,
	// at most 50). Recoveries may read further back (service.TrainingScan).
	MaxListPages int
	// RecoverFor bounds the time a tick spends recovering starts in doubt
	// (default 2s). Running trainings are checked first; then starts are
	// recovered, oldest due first, until RecoverFor has passed (at least one
	// per tick), and the rest are released to be claimed again next tick.
	// Each recovery costs a few calls, so without a bound a crash that left
	// hundreds of starts in doubt would hold up every status check behind
	// them.
	RecoverFor time.Duration
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
	if o.RecoverFor <= 0 {
		o.RecoverFor = 2 * time.Second
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

// RunOnce claims the models due now and checks them; it returns how many it
// claimed. Running trainings are checked first, from list pages when several
// are due; then starts in doubt are recovered for up to RecoverFor, from the
// same list pages read further back as needed (service.TrainingScan).
func (p *Poller) RunOnce(ctx context.Context) (int, error) {
	due, err := p.o.Service.ClaimDue(ctx, 0, p.o.Lease, p.o.Batch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	starts, running := split(due)
	// When enough are due that list pages will be read, check now those due
	// within one polling interval too: they are mostly on the same pages, so
	// sweeps line up instead of each jittered check costing its own pages.
	var early []training.Model
	if !p.o.Policy.Webhook && len(due) >= p.o.ListThreshold && len(due) < p.o.Batch {
		more, err := p.o.Service.ClaimDue(ctx, p.o.Policy.Interval, p.o.Lease, p.o.Batch-len(due))
		if err != nil {
			return len(due), err
		}
		due = append(due, more...)
		// A start is not recovered before it is due: until then its first
		// create may still be running.
		var r []training.Model
		early, r = split(more)
		running = append(running, r...)
	}
	rec, shared := p.o.Service.(SharedRecoverer)
	if shared && len(early) > 0 {
		// No earlier than they were due: at most one interval from the claim.
		if err := rec.ReleaseClaims(ctx, early, p.o.Policy.Interval); err != nil && ctx.Err() == nil {
			p.o.Log.Warn("poller: could not release starts claimed ahead of time; they are due when their claim runs out", "err", err)
		}
	}

	// Begun after the claims, so it may serve the recoveries too.
	var scan *service.TrainingScan
	if len(running) >= p.o.ListThreshold || shared && len(starts) > 0 {
		scan = service.NewTrainingScan(p.o.API.ListTrainings)
	}
	listed := p.list(ctx, scan, running)

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

	p.recover(ctx, starts, scan)
	return len(due), ctx.Err()
}

// split separates starts in doubt (no training id yet) from running trainings.
func split(ms []training.Model) (starts, running []training.Model) {
	for _, m := range ms {
		if m.TrainingID == "" {
			starts = append(starts, m)
		} else {
			running = append(running, m)
		}
	}
	return starts, running
}

// recover recovers claimed starts in doubt, oldest due first, for up to
// RecoverFor, from scan when the service can share it. The starts it does
// not get to are released, due again at once, so the next tick (which checks
// running trainings first) goes on with them. When the tick is cut short
// (ctx ended: shutdown), they are left to their claim, which runs out after
// Lease: a release is a write, and the store may be closing.
func (p *Poller) recover(ctx context.Context, starts []training.Model, scan *service.TrainingScan) {
	rec, shared := p.o.Service.(SharedRecoverer)
	begin := time.Now() // a budget of work time, not of the injectable clock
	for i, m := range starts {
		if ctx.Err() != nil {
			return
		}
		if i > 0 && time.Since(begin) >= p.o.RecoverFor {
			if !shared {
				return
			}
			if err := rec.ReleaseClaims(ctx, starts[i:], 0); err != nil && ctx.Err() == nil {
				p.o.Log.Warn("poller: could not release starts in doubt; they are due when their claim runs out", "count", len(starts)-i, "err", err)
			}
			p.o.Log.Debug("poller: recovery budget spent; the rest of the starts in doubt wait for the next tick", "recovered", i, "left", len(starts)-i)
			return
		}
		var err error
		if shared {
			_, err = rec.RecoverClaimed(ctx, m, scan)
		} else {
			_, err = p.o.Service.RecoverStart(ctx, m)
		}
		switch {
		case errors.Is(err, service.ErrClaimLost):
			p.o.Log.Debug("poller: start in doubt changed since it was claimed; left alone", "model_id", m.ID)
		case err != nil:
			p.o.Log.Warn("poller: could not recover a start yet; will retry", "model_id", m.ID, "err", err)
			p.retryLater(ctx, m)
		}
	}
}

// list reads up to MaxListPages pages of recent trainings through scan when
// several are due: one call answers for up to 100 of them. It stops early
// once every due training is found or the page reaches trainings older than
// all of them. scan is nil when no page is worth reading.
func (p *Poller) list(ctx context.Context, scan *service.TrainingScan, due []training.Model) map[string]replicate.Training {
	if scan == nil || len(due) == 0 {
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
	maxPages := p.o.MaxListPages
	if maxPages <= 0 {
		// Due trainings are spread through the list among others, so allow
		// twice the pages they would fill, and a little more.
		maxPages = min(2*(len(due)/100)+3, 50)
	}
	// Pages a previous reader of the scan read count too.
	past := false
	for _, t := range scan.Results() {
		if want[t.ID] {
			found[t.ID] = t
		}
		if t.CreatedAt != nil && t.CreatedAt.Before(oldest.Add(-time.Minute)) {
			past = true
		}
	}
	for i := 0; i < maxPages && !past && len(found) < len(want) && !scan.Done(); i++ {
		pg, err := scan.More(ctx)
		if err != nil {
			p.o.Log.Warn("poller: list trainings failed; checking one by one", "err", err)
			break
		}
		for _, t := range pg {
			if want[t.ID] {
				found[t.ID] = t
			}
			if t.CreatedAt != nil && t.CreatedAt.Before(oldest.Add(-time.Minute)) {
				past = true
			}
		}
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
