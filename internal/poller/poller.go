package poller

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
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
	// Defer is Reschedule without counting a failed attempt, which
	// RecoverClaimed counted already.
	Defer(ctx context.Context, id string, at time.Time) error
}

// NotFoundRecorder is implemented by a Service (service.Service does) that
// fails a model whose training Replicate keeps answering 404 for, after a
// grace period. Without it, a 404 is retried like any failed check.
type NotFoundRecorder interface {
	TrainingNotFound(ctx context.Context, m training.Model, retryAt time.Time) (failed bool, err error)
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
	// Budget is the API budget in requests per minute that every call of
	// trainhook to Replicate shares (TRAINHOOK_API_RATE_LIMIT; default
	// replicate.DefaultRateLimit). The poller keeps its own calls to
	// pollShare of it, on average, leaving the rest to starts, cancels and
	// recoveries; the client's limiter enforces the whole.
	Budget int
	// Batch caps the models claimed per tick (default: the trainings the
	// calls of one tick can cover with list pages, 100 per call; 12,000 at
	// 600 requests a minute, at least 1,000 and at most 20,000). All that
	// are due should fit in one claim: the claimed trainings lie all
	// through the list, so a claim of a part of them costs nearly the
	// pages of all of them.
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

// skew allows for clock skew between Replicate's created_at and ours.
const skew = time.Minute

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
}

// keepScan is how long a kept scan is resumed after its last use. Starts in
// doubt come due a while apart (the start lease, backoff), and a kept scan
// is what lets a crash storm's hundreds of them be recovered at tens a
// second; past this it is dropped, and its memory with it.
const keepScan = 10 * time.Minute

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
		scan = service.NewTrainingScan(p.listTrainings)
	}
	left := p.checkRunning(ctx, scan, running)
	if len(left) > 0 && shared && ctx.Err() == nil {
		// Due again at once: the next tick, paced to the budget, goes on
		// with them first (oldest due).
		if err := rec.ReleaseClaims(ctx, left, 0); err != nil && ctx.Err() == nil {
			p.o.Log.Warn("poller: could not release unchecked trainings; they are due when their claim runs out", "count", len(left), "err", err)
		}
	}
	if len(left) > 0 {
		p.o.Log.Debug("poller: call budget of the tick spent; the rest wait for the next tick", "left", len(left))
	}

	checked := time.Now()
	recovered := p.recover(ctx, starts, scan)
	switch {
	case shared && len(starts) > 0 && scan != nil && scan.Err() == nil && len(scan.Results()) > 0:
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

// recover recovers claimed starts in doubt for up to RecoverFor, Workers at
// a time, from scan when the service can share it. The scan first resumes
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
	rec, shared := p.o.Service.(SharedRecoverer)
	begin, listed := time.Now(), p.listTime.Load() // a budget of work time, not of the injectable clock
	worked := func() time.Duration {
		return time.Since(begin) - time.Duration(p.listTime.Load()-listed)
	}
	if shared && scan != nil {
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
		if shared && scan != nil {
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
	case len(left) == 0 || !shared || ctx.Err() != nil:
	case listFailed.Load():
		// The shared list read failed (a 429 the client gave up on, an
		// outage): every start left needs it. Hand them back without
		// counting a failed attempt each, which would push a crash
		// storm's starts into ever longer backoff; the next tick reads a
		// new scan.
		retry := p.o.Policy.Retry(0)
		if err := rec.ReleaseClaims(ctx, left, retry); err != nil && ctx.Err() == nil {
			p.o.Log.Warn("poller: could not release starts in doubt; they are due when their claim runs out", "count", len(left), "err", err)
		}
		p.o.Log.Warn("poller: could not list trainings to recover starts in doubt; retrying them shortly", "count", len(left), "retry_in", retry, "err", scan.Err())
	default:
		if err := rec.ReleaseClaims(ctx, left, 0); err != nil && ctx.Err() == nil {
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
	rec, shared := p.o.Service.(SharedRecoverer)
	var err error
	if shared {
		_, err = rec.RecoverClaimed(ctx, m, scan)
	} else {
		_, err = p.o.Service.RecoverStart(ctx, m)
	}
	switch {
	case err == nil:
		return recoveredOK
	case errors.Is(err, service.ErrClaimLost):
		p.o.Log.Debug("poller: start in doubt changed since it was claimed; left alone", "model_id", m.ID)
	case shared && scan != nil && scan.Err() != nil:
		// The shared list read failed. This one took its start lease,
		// but failed before any create, so it may be due again as soon
		// as the others recover hands back.
		if err := rec.Defer(ctx, m.ID, p.o.Now().Add(p.o.Policy.Retry(0))); err != nil && ctx.Err() == nil {
			p.o.Log.Error("poller: could not reschedule", "model_id", m.ID, "err", err)
		}
		return recoveryListFailed
	case ctx.Err() == nil && shared:
		// m is as claimed: its CheckAttempts are the failures before
		// this one, which RecoverClaimed counted.
		p.o.Log.Warn("poller: could not recover a start yet; will retry", "model_id", m.ID, "err", err)
		if err := rec.Defer(ctx, m.ID, p.o.Now().Add(p.o.Policy.Retry(m.CheckAttempts))); err != nil && ctx.Err() == nil {
			p.o.Log.Error("poller: could not reschedule", "model_id", m.ID, "err", err)
		}
	case ctx.Err() == nil:
		p.o.Log.Warn("poller: could not recover a start yet; will retry", "model_id", m.ID, "err", err)
		p.retryLater(ctx, m)
	}
	return recoveryFailed
}

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

// sweep reads list pages through scan, newest first, and hands each claimed
// training it finds there, with all Apply needs, to found as soon as its page
// is read. It reads down to the oldest of them (the earliest creation of
// their models, less the clock skew), at most maxPages, and stops sooner when
// every one is found or reading on would cost more than GETs of those not
// found (see worthReading): a claimed training the pages do not reach (it was
// created long before it was registered, or was deleted) is fetched by
// itself. It returns the pages it read and the training ids it handed over.
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
	past := false
	match := func(ts []replicate.Training) {
		l.lastFound = 0
		for _, t := range ts {
			if m, ok := want[t.ID]; ok && !handed[t.ID] && complete(t) {
				handed[t.ID] = true
				l.lastFound++
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
			if t.CreatedAt.Before(l.target.Add(-skew)) {
				past = true
			}
		}
	}
	// Pages a previous reader of the scan read count too.
	match(scan.Results())
	pages := 0
	for pages < maxPages && !past && len(handed) < len(want) && !scan.Done() && ctx.Err() == nil {
		if pages > 0 && !l.worthReading(len(want)-len(handed)) {
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
	lastFound      int       // claimed trainings found on the last page
	newest, oldest time.Time // their creation times
	target         time.Time // the earliest creation of a claimed model
}

// worthReading reports whether reading another page is expected to cost no
// more than GETs of the missing trainings. A page that found one of them
// paid for itself, so the next is read too. Otherwise, until the sweep
// reaches target, the pages left down to it are estimated from how many
// trainings the list held per second of creation time in the part read, and
// read if they are fewer than the missing trainings; past target (trainings
// created before their model was registered, or clock skew) only pages that
// keep finding them are read.
func (l listed) worthReading(missing int) bool {
	if l.lastFound > 0 {
		return true
	}
	covered := l.newest.Sub(l.oldest)
	if covered <= 0 || !l.oldest.After(l.target) {
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

// fetch checks one training with a GET.
func (p *Poller) fetch(ctx context.Context, m training.Model) {
	t, err := p.getTraining(ctx, m.TrainingID)
	if err != nil {
		if ctx.Err() == nil {
			lvl := slog.LevelWarn
			if replicate.IsNotFound(err) && p.o.Now().Sub(m.CreatedAt) < 5*time.Minute {
				lvl = slog.LevelInfo // Replicate sometimes 404s right after a create
			}
			if nf, ok := p.o.Service.(NotFoundRecorder); ok && replicate.IsNotFound(err) {
				p.notFound(ctx, nf, m, lvl)
				return
			}
			p.o.Log.Log(ctx, lvl, "poller: could not get training; will retry", "model_id", m.ID, "training_id", m.TrainingID, "err", err)
			p.retryLater(ctx, m)
		}
		return
	}
	p.apply(ctx, m, t)
}

// notFound records a 404 for m's training, which fails the model once the
// 404s have lasted the service's grace period.
func (p *Poller) notFound(ctx context.Context, nf NotFoundRecorder, m training.Model, lvl slog.Level) {
	failed, err := nf.TrainingNotFound(ctx, m, p.o.Now().Add(p.o.Policy.Retry(m.CheckAttempts)))
	switch {
	case err != nil && ctx.Err() == nil:
		p.o.Log.Error("poller: could not record a 404", "model_id", m.ID, "training_id", m.TrainingID, "err", err)
	case failed:
		p.o.Log.Warn("poller: Replicate keeps answering 404 for the training; model failed", "model_id", m.ID, "training_id", m.TrainingID)
	case err == nil:
		p.o.Log.Log(ctx, lvl, "poller: Replicate answered 404 for the training; will check again", "model_id", m.ID, "training_id", m.TrainingID, "not_found_checks", m.NotFoundChecks+1)
	}
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
