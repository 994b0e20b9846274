package poller

import (
	"context"
	"log/slog"
	"sync/atomic"
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

// Service is what the poller needs of the service. Production passes a
// *service.Service; there is one path, which tests take too.
type Service interface {
	ClaimDue(ctx context.Context, horizon, lease time.Duration, limit int) ([]training.Model, error)
	Observe(ctx context.Context, obs training.Observation) (service.Result, error)
	Reschedule(ctx context.Context, id string, at time.Time) error
	// Defer is Reschedule without counting a failed attempt, which
	// RecoverClaimed counted already.
	Defer(ctx context.Context, id string, at time.Time) error
	// RecoverClaimed recovers a claimed start in doubt, reading the list
	// through the scan a tick shares between its recoveries.
	RecoverClaimed(ctx context.Context, m training.Model, scan *service.TrainingScan) (training.Model, error)
	// ReleaseClaims hands back claims a tick did not get to, due after
	// the given time.
	ReleaseClaims(ctx context.Context, ms []training.Model, after time.Duration) error
	// TrainingNotFound records a 404 for m's training and fails the model
	// once the 404s have lasted the service's grace period.
	TrainingNotFound(ctx context.Context, m training.Model, retryAt time.Time) (failed bool, err error)
	// InFlight returns the models of the given training ids that are not
	// final, claimed or not: a list page's news of them is applied too.
	InFlight(ctx context.Context, trainingIDs []string) ([]training.Model, error)
}

var _ Service = (*service.Service)(nil)

// Options configure a Poller.
type Options struct {
	API     API
	Service Service
	Policy  Policy
	Log     *slog.Logger
	Now     func() time.Time
	// Tick is how often due models are looked for (default 1s).
	Tick time.Duration
	// Budget is the API budget in requests per minute that every call of
	// trainhook to Replicate shares (TRAINHOOK_API_RATE_LIMIT; default
	// replicate.DefaultRateLimit). The poller keeps its own calls to
	// pollShare of it, on average, leaving the rest to starts, cancels and
	// recoveries; the client's limiter enforces the whole.
	Budget int
	// Batch caps the models claimed per tick (default: the trainings the
	// calls of one tick can cover with list pages, 100 per call; 12,000 at
	// 600 requests a minute, at least 1,000 and at most 20,000). Claimed
	// trainings lie all through the list, so a claim of a part of those
	// due costs nearly the pages of all of them; past that size the sweeps
	// of several ticks make one round of the list (see sweep), and each
	// page's news of unclaimed trainings is applied on the way.
	Batch int
	// Workers is how many per-training GETs run at once (default 4); the
	// client's shared rate limiter paces them all. Trainings found on list
	// pages are applied by more workers, as those make no call.
	Workers int
	// Lease is how long a claimed model is hidden from other pollers
	// (default 30s); if this one dies, it is due again afterwards. A tick
	// makes at most the calls its share of Budget pays for in half the
	// lease, so it ends before its claims run out. A lease that runs out
	// mid-check only means another poller may check the same training too,
	// which Apply makes harmless.
	Lease time.Duration
	// ListThreshold: with at least this many due trainings, list pages
	// (100 trainings per call) are read before per-training GETs
	// (default 3).
	ListThreshold int
	// MaxListPages bounds the pages read per tick for status checks
	// (default: the tick's calls, see Lease). A sweep reads pages down to
	// the oldest claimed training, and stops sooner once the pages left
	// would cost more than GETs of the trainings not yet found. Recoveries
	// may read further back (service.TrainingScan).
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

// DefaultLease is Options.Lease's default.
const DefaultLease = 30 * time.Second

// pollShare is the part of the budget the poller spends on average: the
// rest is headroom for starts, cancels and recoveries, which share the
// client's limiter (and, on PostgreSQL, other instances' limiters).
const pollShare = 0.8

// Poller is started by Run and stops when its context ends.
type Poller struct {
	o        Options
	calls    atomic.Int64 // list and get calls made, for Run's pacing
	listTime atomic.Int64 // nanoseconds spent in list calls, which recovery's budget leaves out

	// kept is the last tick's scan, when it recovered starts in doubt: the
	// next tick's recoveries resume it rather than read the list back to
	// the oldest start again (service.TrainingScan.Resume). Only RunOnce
	// uses it, and ticks do not overlap.
	kept   *service.TrainingScan
	keptAt time.Time

	// roll is where the last sweep stopped (the next page's URL) when it
	// spent its pages before it saw every claimed training: the next tick
	// reads on from there, in the same round, instead of from the top, so
	// that every page of the trainings in flight is read once a round. Only
	// RunOnce uses it.
	roll   string
	rollAt time.Time
	round  *round
}

// round is what the sweeps of one read of the list, from its top to past
// the last training in flight, have seen.
type round struct {
	began  time.Time
	seen   map[string]bool // training ids of models in flight read on its pages
	sweeps int             // sweeps of the round so far
	empty  int             // pages in a row, the last read, past the claimed and without a training in flight
}

// rollFor is how long a sweep's place is kept between ticks; after a
// longer pause the next sweep starts again from the top.
const rollFor = 2 * time.Minute

// New returns a poller with defaults filled in.
func New(o Options) *Poller {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Budget <= 0 {
		o.Budget = replicate.DefaultRateLimit
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Batch <= 0 {
		o.Batch = min(max(100*tickCalls(o), 1000), 20000)
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

// tickCalls is how many list and get calls a tick may make: what the
// poller's share of the budget pays for in half a lease, so that a tick's
// calls are made before its claims run out even when the rest of the
// budget is in use. At 600 requests a minute and a 30 s lease it is 120:
// a sweep of 12,000 trainings in flight.
func tickCalls(o Options) int {
	return max(int(float64(o.Budget)*pollShare*float64(o.Lease/2)/float64(time.Minute)), 1)
}

// spacing is how long n calls take at the poller's share of the budget.
func (p *Poller) spacing(n int64) time.Duration {
	return time.Duration(float64(n) * float64(time.Minute) / (float64(p.o.Budget) * pollShare))
}

// Run checks due models every tick until ctx ends. A tick that finds a full
// batch runs again as soon as the pacing allows, so a backlog drains at the
// poller's share of the budget. Ticks are spaced so that the poller's calls stay within its share of the
// budget: a sweep of 100 list pages at 600 requests a minute is followed by
// the next one 12.5 s after it began.
func (p *Poller) Run(ctx context.Context) {
	for {
		begin := time.Now()
		before := p.calls.Load()
		n, err := p.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			p.o.Log.Error("poller: check failed", "err", err)
		}
		wait := time.Until(begin.Add(p.spacing(p.calls.Load() - before)))
		if n < p.o.Batch || err != nil {
			wait = max(wait, time.Until(begin.Add(p.o.Tick)))
		}
		if wait <= 0 {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
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
	begin, calls0 := time.Now(), p.calls.Load()
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
	if len(early) > 0 {
		// No earlier than they were due: at most one interval from the claim.
		if err := p.o.Service.ReleaseClaims(ctx, early, p.o.Policy.Interval); err != nil && ctx.Err() == nil {
			p.o.Log.Warn("poller: could not release starts claimed ahead of time; they are due when their claim runs out", "err", err)
		}
	}

	// Begun after the claims, so it may serve the recoveries too.
	var scan *service.TrainingScan
	if len(running) >= p.o.ListThreshold || len(starts) > 0 {
		scan = service.NewTrainingScan(p.listTrainings)
	}
	left := p.checkRunning(ctx, scan, running)
	if len(left) > 0 && ctx.Err() == nil {
		// Due again at once: the next tick, paced to the budget, goes on
		// with them first (oldest due).
		if err := p.o.Service.ReleaseClaims(ctx, left, 0); err != nil && ctx.Err() == nil {
			p.o.Log.Warn("poller: could not release unchecked trainings; they are due when their claim runs out", "count", len(left), "err", err)
		}
	}
	if len(left) > 0 {
		p.o.Log.Debug("poller: call budget of the tick spent; the rest wait for the next tick", "left", len(left))
	}

	checked := time.Now()
	recovered := p.recover(ctx, starts, scan)
	switch {
	case len(starts) > 0 && scan != nil && scan.Err() == nil && len(scan.Results()) > 0:
		scan.Slim()
		p.kept, p.keptAt = scan, time.Now()
	case p.kept != nil && time.Since(p.keptAt) > keepScan:
		p.kept = nil
	}
	p.o.Log.Debug("poller: tick", "claimed", len(due), "running", len(running), "unchecked", len(left),
		"starts", len(starts), "recovered", recovered, "calls", p.calls.Load()-calls0,
		"check_ms", checked.Sub(begin).Milliseconds(), "recover_ms", time.Since(checked).Milliseconds())
	return len(due), ctx.Err()
}

// listTrainings and getTraining call the API and count the calls.
func (p *Poller) listTrainings(ctx context.Context, pageURL string) (replicate.Page, error) {
	p.calls.Add(1)
	begin := time.Now()
	defer func() { p.listTime.Add(int64(time.Since(begin))) }()
	return p.o.API.ListTrainings(ctx, pageURL)
}

func (p *Poller) getTraining(ctx context.Context, id string) (replicate.Training, error) {
	p.calls.Add(1)
	return p.o.API.GetTraining(ctx, id)
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
