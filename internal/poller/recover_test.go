package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// rig is the real thing on loopback: the simulator behind an HTTP client, a
// SQLite file, the service; it counts the API calls by endpoint.
type rig struct {
	t      *testing.T
	sim    *fakereplicate.Server
	client *replicate.Client
	store  *sqlite.Store
	svc    *service.Service
	policy Policy

	mu    sync.Mutex
	calls map[string]int
}

const (
	testTrainer = fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion
	dueNow      = time.Millisecond
)

// newRig starts a rig. Trainings run for ten minutes unless completed by
// hand; starts in doubt are due recoverAfter after their create failed, and
// running trainings are due as soon as they are observed.
func newRig(t *testing.T, recoverAfter time.Duration, policy Policy) *rig {
	t.Helper()
	sim, err := fakereplicate.New(fakereplicate.Options{Token: "r8_rig", Duration: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	r := &rig{t: t, sim: sim, policy: policy, calls: map[string]int{}}
	r.client, err = replicate.NewClient(replicate.ClientOptions{
		BaseURL: simURL, Token: "r8_rig", RateLimit: 1 << 20,
		OnCall: func(endpoint, _ string, _ time.Duration) {
			r.mu.Lock()
			r.calls[endpoint]++
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.store, err = sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "poller.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.store.Close() })
	r.svc = service.New(service.Options{
		Store: r.store, Replicate: r.client, Logger: slog.New(slog.DiscardHandler), RecoverAfter: recoverAfter,
		NextCheck: func(m training.Model, now time.Time, _ training.Source) *time.Time {
			if m.Status.Terminal() {
				return nil
			}
			at := now.Add(dueNow)
			return &at
		},
	})
	t.Cleanup(r.svc.Close)
	return r
}

func (r *rig) count(endpoint string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[endpoint]
}

func (r *rig) resetCalls() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = map[string]int{}
}

func (r *rig) poller(svc Service, o Options) *Poller {
	o.API, o.Service, o.Policy = r.client, svc, r.policy
	o.Log = slog.New(slog.DiscardHandler)
	return New(o)
}

// startInDoubt starts a training whose create answers 502: made on the
// simulator when created is true (the answer was lost), or not at all.
func (r *rig) startInDoubt(name string, created bool) training.Model {
	r.t.Helper()
	if err := r.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 502, After: created}); err != nil {
		r.t.Fatal(err)
	}
	m, _, err := r.svc.Start(r.t.Context(), service.StartRequest{
		Trainer: testTrainer, Destination: fakereplicate.DefaultUsername + "/" + name,
		Input: json.RawMessage(fmt.Sprintf(`{"input_images":"https://example.com/%s.zip"}`, name)),
	})
	var se *service.Error
	if !errors.As(err, &se) || se.Kind != service.Upstream || m.Status != training.Pending {
		r.t.Fatalf("start %s: %+v, %v; want a start in doubt", name, m, err)
	}
	return m
}

// startRunning starts a training that goes through.
func (r *rig) startRunning(name string) training.Model {
	r.t.Helper()
	m, _, err := r.svc.Start(r.t.Context(), service.StartRequest{
		Trainer: testTrainer, Destination: fakereplicate.DefaultUsername + "/" + name,
		Input: json.RawMessage(fmt.Sprintf(`{"input_images":"https://example.com/%s.zip"}`, name)),
	})
	if err != nil || m.Status != training.Training {
		r.t.Fatalf("start %s: %+v, %v", name, m, err)
	}
	return m
}

// busy makes n more trainings on the account, into a destination no model
// of the rig has: other apps, other users.
func (r *rig) busy(n int) {
	r.t.Helper()
	other, err := replicate.NewClient(replicate.ClientOptions{BaseURL: r.sim.BaseURL(), Token: "r8_rig", RateLimit: 1 << 20})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx := r.t.Context()
	if _, err := other.CreateModel(ctx, replicate.CreateModelRequest{Owner: fakereplicate.DefaultUsername, Name: "busy", Visibility: "private", Hardware: "cpu"}); err != nil && !replicate.IsConflict(err) {
		r.t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := other.CreateTraining(ctx, testTrainer, replicate.CreateTrainingRequest{
			Destination: fakereplicate.DefaultUsername + "/busy", Input: json.RawMessage(`{"steps":1}`),
		}); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rig) model(id string) training.Model {
	r.t.Helper()
	m, err := r.store.GetModel(r.t.Context(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// bound counts the models that track a training.
func (r *rig) bound(models []training.Model) int {
	n := 0
	for _, m := range models {
		if r.model(m.ID).TrainingID != "" {
			n++
		}
	}
	return n
}

// checkRecovered asserts that every model tracks a training into its own
// destination, the only one there.
func (r *rig) checkRecovered(models []training.Model) {
	r.t.Helper()
	perDest := map[string]int{}
	for _, tr := range r.sim.Trainings() {
		perDest[tr.Destination]++
	}
	for _, m := range models {
		got := r.model(m.ID)
		if got.TrainingID == "" {
			r.t.Errorf("model %s was not recovered", m.ID)
			continue
		}
		truth, ok := r.sim.Training(got.TrainingID)
		if !ok || truth.Destination != m.Destination {
			r.t.Errorf("model %s (destination %s) tracks training %s, which trains %s", m.ID, m.Destination, got.TrainingID, truth.Destination)
		}
		if n := perDest[m.Destination]; n != 1 {
			r.t.Errorf("destination %s got %d trainings, want 1", m.Destination, n)
		}
	}
}

// watching is the service with a note of the calls made when each poll
// result that finished a training was applied.
type watching struct {
	*service.Service
	r *rig

	mu      sync.Mutex
	creates map[string]int // training id → trainings.create calls made before it was seen final
}

func (w *watching) Observe(ctx context.Context, obs training.Observation) (service.Result, error) {
	res, err := w.Service.Observe(ctx, obs)
	if err == nil && obs.Source == training.SourcePoll && res.Outcome == service.Outcome(training.Move) && res.Model != nil && res.Model.Status.Terminal() {
		w.mu.Lock()
		w.creates[obs.TrainingID] = w.r.count(replicate.EndpointTrainingsCreate)
		w.mu.Unlock()
	}
	return res, err
}

// Running trainings that finished are checked before the starts in doubt
// claimed in the same batch are recovered, though those come first in the
// claim (oldest due). Recovering a start costs several calls (its lease,
// list pages, candidates, the destination and the create): after a crash
// storm the poller recovered about 75 starts a minute while every finished
// training waited behind them.
func TestFinishedTrainingsAreCheckedBeforeStartsInDoubt(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	var starts []training.Model
	for i := 0; i < 20; i++ {
		starts = append(starts, r.startInDoubt(fmt.Sprintf("doubt-%02d", i), i%2 == 0))
	}
	var running []training.Model
	for i := 0; i < 10; i++ {
		m := r.startRunning(fmt.Sprintf("running-%02d", i))
		if err := r.sim.Complete(m.TrainingID, "succeeded", ""); err != nil {
			t.Fatal(err)
		}
		running = append(running, m)
	}
	time.Sleep(5 * dueNow)
	r.resetCalls()

	w := &watching{Service: r.svc, r: r, creates: map[string]int{}}
	if _, err := r.poller(w, Options{}).RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, m := range running {
		if got := r.model(m.ID); got.Status != training.Ready {
			t.Errorf("finished training %s: model %s is %s after a tick, want Ready", m.TrainingID, m.ID, got.Status)
		}
		if n, ok := w.creates[m.TrainingID]; ok && n > 0 {
			t.Errorf("finished training %s was seen only after %d creates by recoveries; running trainings must be checked first", m.TrainingID, n)
		}
	}
	// The starts are recovered in the same or the next ticks.
	for i := 0; i < 20 && r.bound(starts) < len(starts); i++ {
		if _, err := r.poller(r.svc, Options{}).RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	r.checkRecovered(starts)
}

// Many starts in doubt are recovered from one shared read of the list per
// tick, not each from its own: here every recovery must read back past 350
// trainings started since (4 pages), and 20 recoveries once cost 80 list
// calls. Each start still gets exactly one training, its own.
func TestStartsInDoubtShareOneListScan(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	var starts []training.Model
	for i := 0; i < 20; i++ {
		starts = append(starts, r.startInDoubt(fmt.Sprintf("doubt-%02d", i), i%2 == 0))
	}
	r.busy(350)
	time.Sleep(5 * dueNow)
	r.resetCalls()

	ticks := 0
	for ; ticks < 20; ticks++ {
		if _, err := r.poller(r.svc, Options{}).RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		if r.bound(starts) == len(starts) {
			break
		}
	}
	ticks++
	r.checkRecovered(starts)
	const pages = 4 // 350 + 20 trainings, 100 a page
	lists := r.count(replicate.EndpointTrainingsList)
	if lists > pages*ticks {
		t.Errorf("%d list calls in %d ticks to recover %d starts; want at most %d a tick (one shared scan)", lists, ticks, len(starts), pages)
	}
	// Per start: the GET of its candidate when one was made, else the create.
	if gets, creates := r.count(replicate.EndpointTrainingsGet), r.count(replicate.EndpointTrainingsCreate); gets != 10 || creates != 10 {
		t.Errorf("%d candidate GETs and %d creates, want 10 and 10", gets, creates)
	}
	t.Logf("%d starts recovered in %d tick(s) with %d list calls", len(starts), ticks, lists)
}

// A start claimed ahead of its due time (the claim with a horizon of one
// polling interval that lines up list sweeps) is not recovered then: until
// it is due, its first create may still be running, and a second create
// would give the model two trainings.
func TestStartClaimedEarlyIsNotRecovered(t *testing.T) {
	const due = 30 * time.Second
	r := newRig(t, due, Policy{Interval: time.Minute, Cap: time.Minute})
	doubt := r.startInDoubt("doubt-early", false)
	for i := 0; i < 3; i++ {
		r.startRunning(fmt.Sprintf("running-%02d", i))
	}
	time.Sleep(5 * dueNow)
	r.resetCalls()
	before := time.Now()
	if _, err := r.poller(r.svc, Options{}).RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := r.count(replicate.EndpointTrainingsCreate); n != 0 {
		t.Errorf("%d creates: a start not yet due was recovered", n)
	}
	got := r.model(doubt.ID)
	if got.TrainingID != "" || got.NextCheckAt == nil || got.NextCheckAt.Before(before.Add(due-time.Second)) {
		t.Errorf("start claimed early: training %q, next check %v; want none yet, and not due before %v", got.TrainingID, got.NextCheckAt, before.Add(due))
	}
}

// With its recovery budget spent, a tick releases the starts it did not get
// to: they are due again at once, their failed-check count untouched, and
// the next ticks go on with them after checking running trainings.
func TestUnrecoveredStartsAreReleased(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	var starts []training.Model
	for i := 0; i < 6; i++ {
		starts = append(starts, r.startInDoubt(fmt.Sprintf("doubt-%02d", i), i%2 == 0))
	}
	time.Sleep(5 * dueNow)
	attempts := map[string]int{}
	for _, m := range starts {
		attempts[m.ID] = r.model(m.ID).CheckAttempts
	}
	p := r.poller(r.svc, Options{RecoverFor: time.Nanosecond}) // one recovery a tick
	n, err := p.RunOnce(t.Context())
	if err != nil || n != len(starts) {
		t.Fatal(n, err)
	}
	after := time.Now()
	recovered := 0
	for _, m := range starts {
		got := r.model(m.ID)
		switch {
		case got.TrainingID != "":
			recovered++
		case got.NextCheckAt == nil || got.NextCheckAt.After(after) || got.CheckAttempts != attempts[m.ID]:
			t.Errorf("unrecovered start %s: next check %v, %d failed checks; want due now, %d", m.ID, got.NextCheckAt, got.CheckAttempts, attempts[m.ID])
		}
	}
	if recovered != 1 {
		t.Errorf("%d starts recovered in a tick with a spent budget, want 1", recovered)
	}
	for i := 0; i < 2*len(starts) && r.bound(starts) < len(starts); i++ {
		if _, err := p.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	r.checkRecovered(starts)
}

// A claimed start that was written since the claim (another poller claimed
// it when this one's claim ran out) is left alone: no list, no create.
func TestRecoverClaimedLeavesAChangedModel(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	r.startInDoubt("doubt-taken", false)
	time.Sleep(5 * dueNow)
	claimed, err := r.svc.ClaimDue(t.Context(), 0, time.Second, 10)
	if err != nil || len(claimed) != 1 {
		t.Fatal(claimed, err)
	}
	// Another poller's hold.
	theirs := time.Now().Add(3 * time.Minute).UTC()
	if err := r.svc.Reschedule(t.Context(), claimed[0].ID, theirs); err != nil {
		t.Fatal(err)
	}
	r.resetCalls()
	scan := service.NewTrainingScan(r.client.ListTrainings)
	if _, err := r.svc.RecoverClaimed(t.Context(), claimed[0], scan); !errors.Is(err, service.ErrClaimLost) {
		t.Fatalf("recover a start changed since its claim: %v, want ErrClaimLost", err)
	}
	if err := r.svc.ReleaseClaims(t.Context(), claimed, 0); err != nil {
		t.Fatal(err)
	}
	got := r.model(claimed[0].ID)
	if r.count(replicate.EndpointTrainingsList)+r.count(replicate.EndpointTrainingsCreate) != 0 || got.NextCheckAt == nil || !got.NextCheckAt.Equal(theirs) {
		t.Errorf("calls %v, next check %v; want no call and the other poller's hold (%v) kept", r.calls, got.NextCheckAt, theirs)
	}
}

// slowLists delays every list page, as a busy account's do when the window
// of starts in doubt is thousands of trainings deep.
type slowLists struct {
	API
	delay time.Duration
}

func (s slowLists) ListTrainings(ctx context.Context, pageURL string) (replicate.Page, error) {
	time.Sleep(s.delay)
	return s.API.ListTrainings(ctx, pageURL)
}

// Reading the shared scan back to the oldest start in doubt does not spend
// the tick's recovery budget: once it is read, the other starts need no
// more pages, and one tick recovers many of them, not one.
func TestDeepScanDoesNotSpendRecoveryBudget(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	var starts []training.Model
	for i := 0; i < 20; i++ {
		starts = append(starts, r.startInDoubt(fmt.Sprintf("deep-%02d", i), i%2 == 0))
	}
	r.busy(350)
	time.Sleep(5 * dueNow)

	p := r.poller(r.svc, Options{RecoverFor: 300 * time.Millisecond})
	p.o.API = slowLists{API: p.o.API, delay: 150 * time.Millisecond} // 4 pages: 600 ms, twice the budget
	if _, err := p.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := r.bound(starts); n < 5 {
		t.Errorf("one tick recovered %d of %d starts in doubt; want most of them once the scan was read", n, len(starts))
	}
}

// A failed list read (an outage, 429s the client gave up on) ends the
// tick's recoveries: the starts go back, due again shortly, without a
// failed attempt counted for each, so a crash storm's starts do not drift
// into long backoff; the next tick recovers them.
func TestFailedListReadHandsStartsBack(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	var starts []training.Model
	for i := 0; i < 10; i++ {
		starts = append(starts, r.startInDoubt(fmt.Sprintf("outage-%02d", i), i%2 == 0))
	}
	time.Sleep(5 * dueNow)
	if err := r.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.list", Status: 503, Count: 20}); err != nil {
		t.Fatal(err)
	}
	attempts := map[string]int{}
	for _, s := range starts {
		attempts[s.ID] = r.model(s.ID).CheckAttempts
	}
	if _, err := r.poller(r.svc, Options{}).RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	counted := 0
	for _, s := range starts {
		m := r.model(s.ID)
		if m.TrainingID != "" {
			t.Fatalf("start %s recovered while listing failed", s.ID)
		}
		if m.CheckAttempts > attempts[s.ID] {
			counted++
		}
		if m.NextCheckAt == nil || m.NextCheckAt.After(after.Add(Policy{}.Retry(0))) {
			t.Errorf("start %s due at %v; want within %v", s.ID, m.NextCheckAt, Policy{}.Retry(0))
		}
	}
	if counted > 1 {
		t.Errorf("%d of %d starts counted a failed attempt; want at most the one whose recovery hit the failure", counted, len(starts))
	}
}

// A tick resumes the last tick's scan instead of reading the list back to
// the oldest start in doubt again: after a crash storm that re-read was
// about a hundred pages a tick, and one instance recovered some 25 starts a
// minute. What was created since the last
// tick, a start in doubt among it, is read from the top of the list, and no
// start gets a second training.
func TestNextTickResumesTheScan(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	var starts []training.Model
	for i := 0; i < 6; i++ {
		starts = append(starts, r.startInDoubt(fmt.Sprintf("resume-%02d", i), i%2 == 0))
	}
	r.busy(350) // the starts are four pages down
	time.Sleep(5 * dueNow)

	// A tiny budget: each tick recovers the one start it must. Recovered
	// trainings are due at once; they are fetched, not swept, so that
	// every list page read is recovery's.
	p := r.poller(r.svc, Options{RecoverFor: time.Millisecond, ListThreshold: 1000})
	r.resetCalls()
	if _, err := p.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := r.count(replicate.EndpointTrainingsList); n < 4 {
		t.Fatalf("the first tick read %d list pages; want the whole list (at least 4)", n)
	}
	if n := r.bound(starts); n == 0 || n == len(starts) {
		t.Fatalf("the first tick recovered %d of %d starts; the test needs some left", n, len(starts))
	}

	// Meanwhile the account started 150 more, and one more start is in
	// doubt with its training among them.
	r.busy(150)
	starts = append(starts, r.startInDoubt("resume-late", true))
	time.Sleep(5 * dueNow)
	for tick := 2; r.bound(starts) < len(starts); tick++ {
		if tick > 3*len(starts) {
			t.Fatalf("%d of %d starts recovered after %d ticks", r.bound(starts), len(starts), tick)
		}
		r.resetCalls()
		if _, err := p.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Tick 2 reads the two pages of what is new; later ticks one.
		if n, want := r.count(replicate.EndpointTrainingsList), 2; n > want {
			t.Errorf("tick %d read %d list pages; want at most %d (the new trainings at the top, not the list back to the oldest start)", tick, n, want)
		}
		time.Sleep(5 * dueNow)
	}
	r.checkRecovered(starts)
}

// A scan that failed is not kept: the next tick reads the list afresh
// rather than resume a scan with a gap in it.
func TestFailedScanIsNotResumed(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	var starts []training.Model
	for i := 0; i < 4; i++ {
		starts = append(starts, r.startInDoubt(fmt.Sprintf("gap-%02d", i), true))
	}
	r.busy(250)
	time.Sleep(5 * dueNow)
	// The second page fails: the tick recovers nothing and keeps nothing.
	p := r.poller(r.svc, Options{})
	api := p.o.API
	p.o.API = &failingList{API: api, failAt: 2}
	if _, err := p.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if p.kept != nil {
		t.Fatalf("a scan with a failed read was kept (%d trainings)", len(p.kept.Results()))
	}
	if n := r.bound(starts); n != 0 {
		t.Fatalf("%d starts recovered from a scan with a gap", n)
	}
	p.o.API = api
	for i := 0; r.bound(starts) < len(starts); i++ {
		if i > 20 {
			t.Fatalf("%d of %d starts recovered", r.bound(starts), len(starts))
		}
		time.Sleep(Policy{}.Retry(0) / 10)
		// The starts were handed back due in Retry(0); make them due now.
		for _, s := range starts {
			if m := r.model(s.ID); m.TrainingID == "" {
				if err := r.svc.Reschedule(t.Context(), s.ID, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := p.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	r.checkRecovered(starts)
}

// failingList fails the failAt-th list call.
type failingList struct {
	API
	failAt, n int
}

func (f *failingList) ListTrainings(ctx context.Context, pageURL string) (replicate.Page, error) {
	f.n++
	if f.n == f.failAt {
		return replicate.Page{}, errors.New("503 from a test")
	}
	return f.API.ListTrainings(ctx, pageURL)
}

// A recovery that fails counts one failed attempt, so a start whose create
// keeps failing backs off one step a time (5 s, 10 s, 20 s): the lease it
// took, the create's own reschedule and the poller's retry each counted one
// before, and after two failures a start waited the 5-minute cap (the
// 10,000-training soak's last model).
func TestFailedRecoveryCountsOnce(t *testing.T) {
	r := newRig(t, dueNow, Policy{Interval: time.Second, Cap: time.Minute})
	s := r.startInDoubt("backoff", false)
	p := r.poller(r.svc, Options{})
	for round := range 3 {
		before := r.model(s.ID).CheckAttempts
		if err := r.svc.Defer(t.Context(), s.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * dueNow)
		if err := r.sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 503}); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		if _, err := p.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
		m := r.model(s.ID)
		if m.TrainingID != "" {
			t.Fatalf("round %d: the start was recovered though its create failed", round)
		}
		if m.CheckAttempts != before+1 {
			t.Errorf("round %d: %d failed attempts after %d and one more failure; want %d", round, m.CheckAttempts, before, before+1)
		}
		want := Policy{}.Retry(before)
		if wait := m.NextCheckAt.Sub(begin); wait < want-time.Second || wait > want+2*time.Second {
			t.Errorf("round %d: tried again in %v, want about %v (Retry(%d))", round, wait.Round(time.Millisecond), want, before)
		}
	}
	if err := r.svc.Defer(t.Context(), s.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * dueNow)
	if _, err := p.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.checkRecovered([]training.Model{s})
}
