package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
)

// run is one mode's soak: its own simulator, database and trainhook
// processes.
type runState struct {
	o       options
	mode    string
	sim     *fakereplicate.Server
	cluster *cluster
	api     *apiClient
	recv    *receiver
	rep     *report
	rng     *mrand.Rand
	rngMu   sync.Mutex
	models  []*tracked
	kills   atomic.Int64
	started atomic.Int64
	logf    func(format string, args ...any)
}

func (r *runState) randFloat() float64 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Float64()
}

func (r *runState) randDuration(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.randFloat()*float64(hi-lo))
}

// soak runs one mode from start to report. It never returns nil.
func soak(ctx context.Context, o options, bin, mode string) *report {
	began := time.Now()
	rep := newReport(o, mode)
	seed := o.seed
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	rep.Seed = seed
	r := &runState{o: o, mode: mode, rep: rep, rng: mrand.New(mrand.NewPCG(seed, seed^0x5eed))}
	r.logf = func(format string, args ...any) {
		fmt.Fprintf(o.errOut, "soak %s %s: %s\n", mode, time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	defer func() { rep.WallSeconds = time.Since(began).Seconds() }()
	if err := r.run(ctx, bin); err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		r.logf("error: %v", err)
	}
	return rep
}

func (r *runState) run(ctx context.Context, bin string) error {
	o := r.o
	dir, err := os.MkdirTemp("", "soak-"+r.mode)
	if err != nil {
		return err
	}
	if o.keep {
		r.rep.Dir = dir
	} else {
		defer os.RemoveAll(dir)
	}

	// The simulator, with every fault at once.
	simToken := "r8_soak_" + randHex(8)
	sim, err := fakereplicate.New(fakereplicate.Options{
		Token:              simToken,
		Seed:               r.rep.Seed,
		Duration:           o.duration,
		WebhookRetryWindow: o.retryWindow,
		Faults: fakereplicate.Faults{
			FailRate: o.failRate, AbortRate: o.abortRate,
			DropWebhooks: o.dropRate, DupWebhooks: o.dupRate, ReorderWebhooks: true, DelayWebhooks: o.webhookDelay,
			APIErrorRate: o.apiErrorRate, RateLimit: o.simRateLimit,
		},
	})
	if err != nil {
		return err
	}
	defer sim.Close()
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	r.sim = sim

	// trainhook: K processes on one database.
	dbURL := o.databaseURL
	if dbURL == "" {
		dbURL = filepath.Join(dir, "trainhook.db")
	}
	r.rep.Database = redactDB(dbURL)
	apiToken := "soak-api-" + randHex(16)
	c := &cluster{}
	for i := 0; i < o.instances; i++ {
		addr, err := freePort()
		if err != nil {
			return err
		}
		c.instances = append(c.instances, &instance{n: i + 1, bin: bin, addr: addr, log: filepath.Join(dir, fmt.Sprintf("trainhook-%d.log", i+1))})
	}
	appURL := c.instances[0].url()
	if o.instances > 1 {
		if err := c.startProxy(); err != nil {
			return err
		}
		appURL = c.proxyURL
		if !strings.HasPrefix(dbURL, "postgres") {
			r.logf("warning: %d instances on SQLite: trainhook expects one process per SQLite file; use --database-url postgres://...", o.instances)
		}
	}
	var notifyEnv []string
	if o.notify {
		rc, err := newReceiver(o, r.rep.Seed)
		if err != nil {
			return err
		}
		defer rc.close()
		r.recv = rc
		// A retry window far longer than the run: an event given up on
		// would be a lost notification, not a figure to wait out.
		notifyEnv = []string{"TRAINHOOK_NOTIFY_URL=" + rc.url(), "TRAINHOOK_NOTIFY_SECRET=" + rc.secret,
			"TRAINHOOK_NOTIFY_EVENTS=" + notifyEvents, "TRAINHOOK_NOTIFY_RETRY_FOR=6h"}
	}
	webhooks := "off"
	if r.mode == "webhook" {
		webhooks = "on"
	}
	for _, in := range c.instances {
		in.env = append(cleanEnviron(),
			"ADDR="+in.addr, "PORT=", "APP_URL="+appURL, "NEXT_PUBLIC_APP_URL=", "TRAINHOOK_WEBHOOKS="+webhooks,
			"DATABASE_URL="+dbURL, "REPLICATE_BASE_URL="+simURL, "REPLICATE_API_TOKEN="+simToken,
			"REPLICATE_WEBHOOK_SECRET="+sim.Key().Secret(), "TRAINHOOK_API_TOKEN="+apiToken,
			"TRAINHOOK_API_RATE_LIMIT="+strconv.Itoa(o.budget), "TRAINHOOK_POLL_INTERVAL="+o.pollInterval.String(),
			"TRAINHOOK_RECONCILE_AFTER="+o.reconcileAfter.String(), "TRAINHOOK_WEBHOOK_EVENTS=start,completed",
			"TRAINHOOK_LOG_FORMAT=json", "TRAINHOOK_LOG_LEVEL="+o.logLevel, "CORS_ALLOWED_ORIGINS=", "GORACE=halt_on_error=0")
		in.env = append(in.env, notifyEnv...)
	}
	r.cluster = c
	defer c.stop()
	for _, in := range c.instances {
		if err := in.start(ctx); err != nil {
			return err
		}
	}
	r.api = newAPIClient(c, apiToken)
	r.logf("%d trainings of %s on %s, %d instance(s), budget %d/min, simulator limit %d/min, kill every %s-%s",
		o.n, o.duration, r.rep.Database, o.instances, o.budget, o.simRateLimit, o.killMin, o.killMax)

	// Drive: start every training (some canceled later), while a killer
	// SIGKILLs and restarts trainhook and an injector adds 429s.
	driveDone := make(chan struct{})
	quiet := make(chan struct{})
	var bg sync.WaitGroup
	killErr := make(chan error, 1)
	if o.killMin > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := r.killer(ctx, driveDone); err != nil {
				killErr <- err
			}
		}()
	}
	if o.inject429Every > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			r.inject429s(quiet)
		}()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		r.progress(quiet)
	}()
	downErr := make(chan error, 1)
	if r.recv != nil && o.notifyDown > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			downErr <- r.downtime(ctx, quiet)
		}()
	}
	driveErr := r.drive(ctx)
	close(driveDone)
	var stopErr error
	select {
	case stopErr = <-killErr:
	default:
	}
	if driveErr == nil && stopErr == nil {
		driveErr = r.waitQuiet(ctx)
	}
	close(quiet)
	bg.Wait()
	select {
	case err := <-killErr:
		stopErr = err
	default:
	}
	select {
	case err := <-downErr:
		if err != nil && stopErr == nil {
			stopErr = err
		}
	default:
	}
	if stopErr != nil {
		return stopErr
	}
	if driveErr != nil {
		r.rep.Errors = append(r.rep.Errors, driveErr.Error())
	}
	if r.recv != nil && driveErr == nil {
		// Every model is final; what is left is the outbox's retries
		// (backoff after the receiver's faults is at most about a minute).
		if err := r.waitDrained(ctx, 5*time.Minute); err != nil {
			r.rep.Errors = append(r.rep.Errors, err.Error())
		}
	}
	// Check whatever state was reached, even after running out of time: a
	// model that never settled is a missing final state.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	return r.check(cctx)
}

// killer SIGKILLs a random instance at random intervals and restarts it,
// until the drive is over.
func (r *runState) killer(ctx context.Context, done <-chan struct{}) error {
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(r.randDuration(r.o.killMin, r.o.killMax)):
		}
		in := r.cluster.instances[int(r.randFloat()*float64(len(r.cluster.instances)))]
		in.kill()
		n := r.kills.Add(1)
		// Down for a moment: deliveries and API calls meanwhile fail.
		time.Sleep(r.randDuration(0, 500*time.Millisecond))
		if err := in.start(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("restart after kill %d: %w", n, err)
		}
	}
}

// inject429s makes the next few API calls, whatever they are, answer 429,
// at an interval, on top of the simulator's own rate limit. A new batch is
// queued only once the last one was used up (the simulator queues them
// until calls come), so an idle spell does not pile up 429s.
func (r *runState) inject429s(stop <-chan struct{}) {
	const batch = 3
	t := time.NewTicker(r.o.inject429Every)
	defer t.Stop()
	served := func() int { st := r.sim.Stats(); return st.Requests - st.Throttled }
	last := -batch
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			// Every call the rate limit lets through takes a queued fault first.
			if n := served(); n-last >= batch {
				_ = r.sim.FailNext(fakereplicate.FailSpec{Status: 429, Count: batch, RetryAfter: 1 + int(r.randFloat()*2)})
				last = n
			}
		}
	}
}

func (r *runState) progress(stop <-chan struct{}) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			st := r.sim.Stats()
			r.logf("started %d/%d, simulator trainings %d, kills %d, API calls %d (most in 60 s: %d), 429s %d",
				r.started.Load(), r.o.n, len(r.sim.Trainings()), r.kills.Load(), st.Requests, st.MaxPerMinute, count429(st))
		}
	}
}

func count429(st fakereplicate.Stats) int {
	n := 0
	for _, codes := range st.Calls {
		n += codes[429]
	}
	return n
}

// cleanEnviron is this process's environment without anything trainhook
// reads, so a developer's settings cannot leak into the soak.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "TRAINHOOK_"), strings.HasPrefix(k, "REPLICATE_"),
			k == "APP_URL", k == "NEXT_PUBLIC_APP_URL", k == "PORT", k == "ADDR", k == "DATABASE_URL", k == "CORS_ALLOWED_ORIGINS":
			continue
		}
		out = append(out, kv)
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redactDB hides a password in a database URL for the report.
func redactDB(s string) string {
	i := strings.Index(s, "://")
	j := strings.LastIndexByte(s, '@')
	if i < 0 || j < i {
		return s
	}
	user := s[i+3 : j]
	if k := strings.IndexByte(user, ':'); k >= 0 {
		user = user[:k] + ":xxxxx"
	}
	return s[:i+3] + user + s[j:]
}
