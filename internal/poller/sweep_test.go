package poller

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// inFlight creates n trainings on the simulator, as an app would, and
// registers them with trainhook by id, oldest first; each model is due a
// check at once.
func (r *rig) inFlight(n int) []training.Model {
	r.t.Helper()
	ctx := r.t.Context()
	app, err := replicate.NewClient(replicate.ClientOptions{BaseURL: r.sim.BaseURL(), Token: "r8_rig", RateLimit: 1 << 20})
	if err != nil {
		r.t.Fatal(err)
	}
	defer app.CloseIdleConnections()
	if _, err := app.CreateModel(ctx, replicate.CreateModelRequest{Owner: fakereplicate.DefaultUsername, Name: "fleet", Visibility: "private", Hardware: "cpu"}); err != nil {
		r.t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		tr, err := app.CreateTraining(ctx, testTrainer, replicate.CreateTrainingRequest{
			Destination: fakereplicate.DefaultUsername + "/fleet", Input: json.RawMessage(`{"steps":1}`),
		})
		if err != nil {
			r.t.Fatal(err)
		}
		ids[i] = tr.ID
	}
	models := make([]training.Model, n)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := range 8 { // concurrent registrations commit together
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				m, _, err := r.svc.Register(ctx, service.RegisterRequest{TrainingID: ids[i]})
				if err != nil {
					errs <- err
					return
				}
				models[i] = m
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Fatal(err)
	}
	return models
}

// With thousands of trainings in flight, one tick finds every finished one
// on list pages, reading down to the oldest claimed training, instead of
// a GET each: 3,000 in flight cost 30 pages, not 3,000 GETs. The poller
// once claimed the 1,000 oldest due and read at most 23 pages from the
// newest, where few of them are, so a tick under a 600/min budget spent
// about 800 GETs (100 s) and 10,000 in flight were never all checked
// within their lease.
func TestThousandsInFlightAreSweptFromListPages(t *testing.T) {
	const n = 3000
	r := newRig(t, time.Minute, Policy{Interval: 5 * time.Second, Cap: time.Minute})
	models := r.inFlight(n)
	finished := map[string]bool{}
	for i, m := range models {
		if i%3 == 0 {
			if err := r.sim.Complete(m.TrainingID, "succeeded", ""); err != nil {
				t.Fatal(err)
			}
			finished[m.ID] = true
		}
	}
	time.Sleep(5 * dueNow)
	r.resetCalls()

	p := r.poller(r.svc, Options{Budget: 600})
	claimed, err := p.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if claimed != n {
		t.Errorf("claimed %d of %d due in one tick", claimed, n)
	}
	for _, m := range models {
		got := r.model(m.ID)
		if finished[m.ID] && got.Status != training.Ready {
			t.Errorf("model %s (training %s finished) is %s after a tick, want Ready", m.ID, m.TrainingID, got.Status)
		}
		if !finished[m.ID] && got.Status.Terminal() {
			t.Errorf("model %s is %s, but its training runs", m.ID, got.Status)
		}
	}
	const pages = n / 100
	lists, gets := r.count(replicate.EndpointTrainingsList), r.count(replicate.EndpointTrainingsGet)
	if lists > pages+1 || gets > 0 {
		t.Errorf("%d list calls and %d GETs to check %d trainings in flight; want at most %d pages and no GET", lists, gets, n, pages+1)
	}
	t.Logf("%d trainings checked with %d list calls and %d GETs", n, lists, gets)
}

// Run keeps the poller's calls within its share of the budget: however
// often ticks come and however many trainings are due, by any time t
// since the start it has made at most pollShare of the budget's calls in
// t, plus one tick's worth.
func TestRunKeepsItsShareOfTheBudget(t *testing.T) {
	const n, budget = 1000, 240 // 4 calls/s, 3.2 of them the poller's: a 10-page sweep every 3.1s
	r := newRig(t, time.Minute, Policy{Interval: time.Millisecond, Cap: time.Millisecond})
	r.inFlight(n)
	time.Sleep(5 * dueNow)

	var mu sync.Mutex
	var at []time.Duration
	begin := time.Now()
	api := &timedAPI{API: r.client, on: func() {
		mu.Lock()
		at = append(at, time.Since(begin))
		mu.Unlock()
	}}
	p := r.poller(r.svc, Options{Budget: budget, Tick: time.Millisecond})
	p.o.API = api
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	p.Run(ctx)

	mu.Lock()
	defer mu.Unlock()
	perTick := tickCalls(p.o)
	rate := float64(budget) * pollShare / 60 // calls per second
	for i, d := range at {
		if allowed := rate*d.Seconds() + float64(perTick); float64(i+1) > allowed {
			t.Fatalf("call %d made %v after the start; at most %.0f allowed by then (%d/min, share %.0f%%)", i+1, d, allowed, budget, pollShare*100)
		}
	}
	// Every sweep reads the 10 pages of the trainings in flight.
	if len(at) < 2*n/100 {
		t.Errorf("%d calls in 5s: the poller did not sweep twice", len(at))
	}
	t.Logf("%d calls in %v", len(at), time.Since(begin).Round(time.Millisecond))
}

// timedAPI tells of every call.
type timedAPI struct {
	API
	on func()
}

func (a *timedAPI) GetTraining(ctx context.Context, id string) (replicate.Training, error) {
	a.on()
	return a.API.GetTraining(ctx, id)
}

func (a *timedAPI) ListTrainings(ctx context.Context, page string) (replicate.Page, error) {
	a.on()
	return a.API.ListTrainings(ctx, page)
}

// A few due trainings among many others on the account are not worth a
// deep read of the list: once a page finds none of them, the pages left
// down to the oldest would cost more than their GETs.
func TestSparseDueAreFetchedNotSwept(t *testing.T) {
	api, svc := setup(5000, 0)
	for i := 150; i < 5000; i += 1000 { // 5 due, spread through 50 pages
		tr := api.trainings[i]
		svc.due = append(svc.due, training.Model{ID: "m" + tr.ID, TrainingID: tr.ID, Status: training.Training, CreatedAt: *tr.CreatedAt})
	}
	if _, err := newPoller(api, svc).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(svc.observed) != 5 {
		t.Fatalf("observed %d of 5", len(svc.observed))
	}
	if api.lists != 1 || api.gets != 5 {
		t.Errorf("%d list calls and %d GETs for 5 due trainings, want 1 page, then GETs", api.lists, api.gets)
	}
}

// Trainings created a while before they were registered (an app that
// creates many, then registers them) are all older than the models, so the
// pages give no estimate of where they are. When they are many, reading on
// finds them a hundred a page: 2,000 of them, the oldest of 5,000 on the
// account, cost the 50 pages, not a page and 2,000 GETs.
func TestRegisteredLongAfterCreationAreSwept(t *testing.T) {
	api, svc := setup(5000, 0)
	registered := time.Now().Add(10 * time.Minute)
	for _, tr := range api.trainings[3000:] {
		svc.due = append(svc.due, training.Model{ID: "m" + tr.ID, TrainingID: tr.ID, Status: training.Training, CreatedAt: registered})
	}
	if _, err := newPoller(api, svc).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(svc.observed) != 2000 {
		t.Fatalf("observed %d of 2000", len(svc.observed))
	}
	if api.lists != 50 || api.gets != 0 {
		t.Errorf("%d list calls and %d GETs for 2,000 due trainings on the last 20 of 50 pages, want the 50 pages and no GET", api.lists, api.gets)
	}
}

// A few trainings registered long after their creation cost at most about
// as many pages as they are before they are fetched one by one.
func TestFewRegisteredLongAfterCreationAreFetched(t *testing.T) {
	api, svc := setup(5000, 0)
	registered := time.Now().Add(10 * time.Minute)
	for i := 4000; i < 5000; i += 250 { // 4 due, on the last pages
		tr := api.trainings[i]
		svc.due = append(svc.due, training.Model{ID: "m" + tr.ID, TrainingID: tr.ID, Status: training.Training, CreatedAt: registered})
	}
	if _, err := newPoller(api, svc).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(svc.observed) != 4 {
		t.Fatalf("observed %d of 4", len(svc.observed))
	}
	if api.lists > 4 || api.gets != 4 {
		t.Errorf("%d list calls and %d GETs for 4 due trainings far down the list, want at most 4 pages, then 4 GETs", api.lists, api.gets)
	}
}

func TestWorthReading(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	cases := []struct {
		missing, read, lastFound, pages int
		covered, left                   time.Duration // creation time read so far, and left down to the target
		want                            bool
	}{
		{9000, 1000, 0, 10, 100 * time.Second, 900 * time.Second, true}, // 90 pages for 9,000
		{5, 100, 0, 1, 100 * time.Second, 1600 * time.Second, false},    // 16 pages for 5
		{16, 100, 0, 1, 100 * time.Second, 1600 * time.Second, true},
		{5, 100, 1, 1, 100 * time.Second, 1600 * time.Second, true}, // the last page paid for itself
		{5, 100, 0, 1, 0, time.Hour, false},                         // no spread to go by
		// Past the target: read on while fewer pages than missing
		// trainings were read.
		{5, 100, 0, 1, 100 * time.Second, -10 * time.Second, true},
		{5, 500, 0, 5, 100 * time.Second, -10 * time.Second, false},
		{20000, 30000, 0, 300, time.Hour, -time.Minute, true}, // trainings created long before they were registered
		{5, 0, 0, 0, 0, 0, true},                              // nothing read yet
	}
	for _, c := range cases {
		l := listed{read: c.read, lastFound: c.lastFound, newest: t0, oldest: t0.Add(-c.covered)}
		l.target = l.oldest.Add(-c.left)
		if got := l.worthReading(c.missing, c.pages); got != c.want {
			t.Errorf("%+v: worth reading %v, want %v", c, got, c.want)
		}
	}
}

// With more trainings in flight than a tick's pages cover, each tick reads
// on down the list from where the last one stopped, and applies every
// finished training on the pages it reads, claimed or not: one round of
// the list finds them all. Sweeping from the top every tick and applying
// only the claimed, the pages below a tick's reach were rarely read, and
// 50,000 trainings in flight at 600 requests a minute never all finished.
func TestSweepsGoOnWhereTheLastStopped(t *testing.T) {
	const n = 3000 // 30 pages
	r := newRig(t, time.Minute, Policy{Interval: 5 * time.Second, Cap: time.Minute})
	models := r.inFlight(n)
	finished := map[string]bool{}
	for i, m := range models {
		if i%3 == 0 {
			if err := r.sim.Complete(m.TrainingID, "succeeded", ""); err != nil {
				t.Fatal(err)
			}
			finished[m.ID] = true
		}
	}
	time.Sleep(5 * dueNow)
	r.resetCalls()

	p := r.poller(r.svc, Options{Budget: 100})
	if calls := tickCalls(p.o); calls != 20 || p.o.Batch != 2000 {
		t.Fatalf("a tick makes %d calls and claims %d; the test wants 20 and 2,000, less than the %d in flight", calls, p.o.Batch, n)
	}
	for tick := 1; tick <= 2; tick++ {
		claimed, err := p.RunOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if claimed != p.o.Batch {
			t.Errorf("tick %d claimed %d, want a full claim of %d", tick, claimed, p.o.Batch)
		}
	}
	missed := 0
	for _, m := range models {
		got := r.model(m.ID)
		if finished[m.ID] && got.Status != training.Ready {
			missed++
		}
		if !finished[m.ID] && got.Status.Terminal() {
			t.Errorf("model %s is %s, but its training runs", m.ID, got.Status)
		}
	}
	if missed > 0 {
		t.Errorf("%d of %d finished trainings not Ready after two ticks, which read 40 pages of a 30-page list", missed, len(finished))
	}
	// The second tick went on from page 21, not from the top; having read
	// the list to its end, the next starts from the top again.
	if lists := r.count(replicate.EndpointTrainingsList); lists > n/100+1 {
		t.Errorf("%d list calls for a round of %d pages", lists, n/100)
	}
	if p.roll != "" {
		t.Errorf("after the round the sweep would go on at %q, want the top", p.roll)
	}
}

// A sweep applies what its pages show of trainings in flight that were
// not claimed, when it differs from what the model holds: on pages 1-10,
// 499 claimed (running) and 500 unclaimed that finished, all applied from
// the 10 pages; an unclaimed one still running is left for its turn.
func TestSweepAppliesNewsOfUnclaimed(t *testing.T) {
	api, svc := setup(5000, 0)
	svc.tracked = map[string]training.Model{}
	for i, tr := range api.trainings[:1000] {
		m := training.Model{ID: "m" + tr.ID, TrainingID: tr.ID, Status: training.Training,
			RemoteStatus: training.RemoteProcessing, CreatedAt: *tr.CreatedAt}
		if i%2 == 0 || i == 1 {
			svc.tracked[tr.ID] = m
		} else {
			svc.due = append(svc.due, m)
		}
	}
	p := New(Options{API: api, Service: svc, Policy: Policy{Interval: time.Second, Cap: time.Minute}, Log: slog.New(slog.DiscardHandler)})
	if _, err := p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if api.lists != 10 || api.gets != 0 {
		t.Errorf("%d list calls and %d GETs; want the 10 pages of the claimed trainings", api.lists, api.gets)
	}
	if len(svc.observed) != 999 {
		t.Errorf("observed %d, want 499 claimed and 500 unclaimed that finished", len(svc.observed))
	}
	for _, id := range []string{"t0000", "t0998"} {
		if svc.observed[id] != "succeeded" {
			t.Errorf("unclaimed %s, finished, observed %q", id, svc.observed[id])
		}
	}
	if _, ok := svc.observed["t0001"]; ok {
		t.Error("unclaimed t0001, still running as the model says, was applied")
	}
}

// Trainings that finished leave gaps among those in flight. A sweep reads
// through a gap while claimed trainings it has not seen lie further down:
// 500 claimed on pages 1-5 and 500 on pages 14-18, with nothing in flight
// between, cost 18 pages and no GET, not 7 pages and 500 GETs.
func TestSweepReadsThroughGaps(t *testing.T) {
	api, svc := setup(5000, 0)
	registered := time.Now().Add(-time.Minute) // after every training's creation, before the round
	for i := range api.trainings {
		c := api.trainings[i].CreatedAt.Add(-time.Hour)
		api.trainings[i].CreatedAt = &c
	}
	for _, tr := range append(append([]replicate.Training{}, api.trainings[:500]...), api.trainings[1300:1800]...) {
		svc.due = append(svc.due, training.Model{ID: "m" + tr.ID, TrainingID: tr.ID, Status: training.Training, CreatedAt: registered})
	}
	p := New(Options{API: api, Service: svc, Policy: Policy{Interval: time.Second, Cap: time.Minute}, MaxListPages: 40,
		Log: slog.New(slog.DiscardHandler)})
	if _, err := p.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(svc.observed) != 1000 {
		t.Errorf("observed %d of 1,000 claimed", len(svc.observed))
	}
	if api.lists != 18 || api.gets != 0 {
		t.Errorf("%d list calls and %d GETs; want 18 pages (through the gap) and no GET", api.lists, api.gets)
	}
}

// Claimed trainings the list does not show (deleted, or another account's)
// do not send rounds through the account's whole history: a round reads on
// past the trainings in flight only as many pages as such trainings remain
// to be fetched, and then starts again from the top. 50 of them, fetched a
// few a tick, on an account with 200 pages of finished trainings: ten
// ticks never read past page 60.
func TestRoundsDoNotReadThroughHistory(t *testing.T) {
	api, svc := setup(20000, 0)
	newest := *api.trainings[0].CreatedAt
	for i := range 50 {
		svc.due = append(svc.due, training.Model{ID: "mgone" + strconv.Itoa(i), TrainingID: "gone" + strconv.Itoa(i),
			Status: training.Training, CreatedAt: newest.Add(-10 * time.Minute)})
	}
	deepest := 0
	api2 := &offsetAPI{fakeAPI: api, deepest: &deepest}
	// 5 calls a tick: up to 10 pages (MaxListPages), and GETs with the rest.
	p := New(Options{API: api2, Service: svc, Policy: Policy{Interval: time.Second, Cap: time.Minute}, Budget: 25, MaxListPages: 10,
		Log: slog.New(slog.DiscardHandler)})
	for range 10 {
		if _, err := p.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if api.gets > 50 {
		t.Errorf("%d GETs in ten ticks for 50 trainings", api.gets)
	}
	if deepest > 6000 {
		t.Errorf("read down to training %d of 20,000: through the history, for 50 trainings the list does not show", deepest)
	}
	if api.lists < 50 {
		t.Errorf("%d list calls in ten ticks; want each round to read past the trainings in flight", api.lists)
	}
}

// offsetAPI notes the deepest page read.
type offsetAPI struct {
	*fakeAPI
	deepest *int
}

func (a *offsetAPI) ListTrainings(ctx context.Context, page string) (replicate.Page, error) {
	if n, err := strconv.Atoi(page); err == nil && n > *a.deepest {
		*a.deepest = n
	}
	return a.fakeAPI.ListTrainings(ctx, page)
}
