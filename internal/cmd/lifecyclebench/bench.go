package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Options configure one run.
type Options struct {
	Mode           string        // "polling" or "webhook"
	N              int           // trainings in flight
	Budget         int           // TRAINHOOK_API_RATE_LIMIT, requests per minute
	Drop           float64       // webhook mode: share of webhooks the simulator drops
	Duration       time.Duration // each training's run on the simulator
	ReconcileAfter time.Duration // TRAINHOOK_RECONCILE_AFTER
	PollInterval   time.Duration // TRAINHOOK_POLL_INTERVAL
	SetupWorkers   int           // creations and registrations at a time
	Max            time.Duration // bound on the whole run
	Log            io.Writer     // progress lines; nil = none
	// ServerLog, when set, receives trainhook's own log at debug level (the
	// poller's ticks: what it claimed, the pages and GETs it spent), to see
	// why a run behaved as it did. Nil: discarded.
	ServerLog io.Writer
}

// MaxN bounds --n. 50,000 trainings in flight is past the poller's largest
// claim (20,000 a tick), so the bench can show what polling does beyond it.
// A run of that size spends about 15 s creating the trainings on the
// simulator and registering them, and peaked at 330 MiB of memory.
const MaxN = 50000

func (o Options) validate() error {
	switch {
	case o.Mode != "polling" && o.Mode != "webhook":
		return fmt.Errorf("--mode %q: want polling or webhook", o.Mode)
	case o.N < 1 || o.N > MaxN:
		return fmt.Errorf("--n %d: want 1 to %d trainings in flight", o.N, MaxN)
	case o.Budget < 1 || o.Budget > 3000:
		return fmt.Errorf("--budget %d: want 1 to 3000 requests per minute", o.Budget)
	case o.Drop < 0 || o.Drop > 1:
		return fmt.Errorf("--drop %v: want a share from 0 to 1", o.Drop)
	case o.Duration < time.Second:
		return fmt.Errorf("--duration %s: want at least 1s", o.Duration)
	case o.PollInterval < 100*time.Millisecond:
		return fmt.Errorf("--poll-interval %s: want at least 100ms", o.PollInterval)
	case o.ReconcileAfter < time.Second:
		return fmt.Errorf("--reconcile-after %s: want at least 1s", o.ReconcileAfter)
	case o.SetupWorkers < 1:
		return fmt.Errorf("--setup-workers %d: want at least 1", o.SetupWorkers)
	case o.Max <= 0:
		return fmt.Errorf("--max %s: want a positive duration", o.Max)
	}
	return nil
}

// Result is what a run measured; durations are in seconds.
type Result struct {
	Mode         string  `json:"mode"`
	Trainings    int     `json:"trainings"`
	Budget       int     `json:"budget_per_minute"`
	DropWebhooks float64 `json:"drop_webhooks"`

	// Detection delay: from the simulator's completed_at to the history
	// entry of the model's final transition. A model not final by the
	// end of the measured window counts with (end - completed_at), a lower
	// bound; a percentile that such a value may move is flagged.
	DelayP50           float64 `json:"detection_delay_p50_s"`
	DelayP99           float64 `json:"detection_delay_p99_s"`
	DelayMax           float64 `json:"detection_delay_max_s"`
	DelayP50LowerBound bool    `json:"detection_delay_p50_lower_bound,omitempty"`
	DelayP99LowerBound bool    `json:"detection_delay_p99_lower_bound,omitempty"`

	// API use by trainhook, counted by the simulator from the first
	// registration to the end of the measured window.
	APICalls        int     `json:"api_calls"`
	ListCalls       int     `json:"api_list_calls"`
	GetCalls        int     `json:"api_get_calls"`
	CallsPer        float64 `json:"api_calls_per_training"`
	CallsPerMinute  float64 `json:"api_calls_per_minute"`
	MaxPerMinute    int     `json:"max_requests_in_any_60s"`
	Throttled       int     `json:"throttled_429"`
	BudgetKept      bool    `json:"budget_kept"`
	MeasuredSeconds float64 `json:"measured_seconds"` // first registration to the last final model (or --max)

	Wrong      int `json:"wrong_or_missing_final_states"` // final, but not the simulator's outcome
	Undetected int `json:"not_final_within_max"`
	ByWebhook  int `json:"settled_by_webhook"`
	ByPoll     int `json:"settled_by_poll"`

	CreateSeconds    float64 `json:"create_seconds"`      // starting N trainings on the simulator (not trainhook's budget)
	RegisterSeconds  float64 `json:"register_seconds"`    // handing them to trainhook by id
	CompletionSpread float64 `json:"completion_spread_s"` // first to last completed_at at the simulator
	WallSeconds      float64 `json:"wall_seconds"`
	TrainingSeconds  float64 `json:"training_duration_s"`
	TimedOut         bool    `json:"timed_out,omitempty"`
}

// Passed reports whether every model reached its true final state in time
// and the budget was kept.
func (r Result) Passed() bool { return r.Problem() == "" }

// Problem says what is wrong with the run, or "" if nothing is.
func (r Result) Problem() string {
	var p []string
	if r.Wrong > 0 {
		p = append(p, fmt.Sprintf("%d models in the wrong final state", r.Wrong))
	}
	if r.Undetected > 0 {
		p = append(p, fmt.Sprintf("%d of %d models not final within --max", r.Undetected, r.Trainings))
	}
	if !r.BudgetKept {
		p = append(p, fmt.Sprintf("budget exceeded (%d requests in one 60 s window, %d 429s; budget %d)", r.MaxPerMinute, r.Throttled, r.Budget))
	}
	return strings.Join(p, "; ")
}

const simToken = "r8_bench"

// Run starts the simulator and trainhook (SQLite, in a temporary
// directory), starts N trainings directly on the simulator as "the app"
// would, hands them to trainhook by id, and waits until every model is
// final or o.Max has passed since the start. It returns an error only when
// no measurement could be made.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	deadline := start.Add(o.Max)
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "lifecyclebench: "+format+"\n", args...)
		}
	}
	res := Result{Mode: o.Mode, Trainings: o.N, Budget: o.Budget, TrainingSeconds: o.Duration.Seconds()}
	faults := fakereplicate.Faults{FailRate: 0.1}
	if o.Mode == "webhook" {
		faults.DropWebhooks = o.Drop
		res.DropWebhooks = o.Drop
	}
	sim, err := fakereplicate.New(fakereplicate.Options{Token: simToken, Duration: o.Duration, Faults: faults, Seed: 42})
	if err != nil {
		return res, err
	}
	defer sim.Close()
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		return res, err
	}

	dir, err := os.MkdirTemp("", "lifecyclebench")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	// The server takes this listener, so the port APP_URL names stays ours.
	addr := l.Addr().String()
	webhooks := "off"
	if o.Mode == "webhook" {
		webhooks = "on"
	}
	vars := map[string]string{
		"ADDR": addr, "APP_URL": "http://" + addr, "TRAINHOOK_WEBHOOKS": webhooks,
		"DATABASE_URL": filepath.Join(dir, "bench.db"), "REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": simToken,
		"REPLICATE_WEBHOOK_SECRET": sim.Key().Secret(), "TRAINHOOK_API_RATE_LIMIT": strconv.Itoa(o.Budget),
		"TRAINHOOK_POLL_INTERVAL": o.PollInterval.String(), "TRAINHOOK_RECONCILE_AFTER": o.ReconcileAfter.String(),
		"TRAINHOOK_LOG_LEVEL": "error",
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		l.Close()
		return res, err
	}
	setupCtx, cancelSetup := context.WithDeadline(ctx, deadline)
	defer cancelSetup()
	serverLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.ServerLog != nil {
		serverLog = slog.New(slog.NewJSONHandler(o.ServerLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := app.StartOn(setupCtx, cfg, serverLog, l)
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// The app starts its trainings itself, with its own client and no
	// budget, and hands them over by id: every API request the simulator
	// counts after ResetStats is trainhook's.
	creator, err := replicate.NewClient(replicate.ClientOptions{BaseURL: simURL, Token: simToken, RateLimit: 1 << 20})
	if err != nil {
		return res, err
	}
	defer creator.CloseIdleConnections()
	if _, err := creator.CreateModel(setupCtx, replicate.CreateModelRequest{Owner: sim.Username(), Name: "bench-lora", Visibility: "private", Hardware: "cpu"}); err != nil {
		return res, err
	}
	trainer := fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion
	req := replicate.CreateTrainingRequest{Destination: sim.Username() + "/bench-lora", Input: json.RawMessage(`{"steps":1000,"trigger_word":"ZKX"}`)}
	if o.Mode == "webhook" {
		req.Webhook, req.WebhookEventsFilter = cfg.WebhookURL, []string{"start", "completed"}
	}
	ids := make([]string, o.N)
	t0 := time.Now()
	err = parallel(setupCtx, o.N, o.SetupWorkers, func(ctx context.Context, i int) error {
		t, err := creator.CreateTraining(ctx, trainer, req)
		if err != nil {
			return fmt.Errorf("create training %d: %w", i, err)
		}
		ids[i] = t.ID
		return nil
	})
	res.CreateSeconds = time.Since(t0).Seconds()
	if err != nil {
		return res, err
	}
	logf("%s mode: created %d trainings of %s on the simulator in %.2fs", o.Mode, o.N, o.Duration, res.CreateSeconds)

	// From here on every API request is trainhook's. The simulator counts
	// the most requests in any 60 s window; that is the budget check.
	sim.ResetStats()
	measureStart := time.Now()
	err = parallel(setupCtx, o.N, o.SetupWorkers, func(ctx context.Context, i int) error {
		if _, _, err := a.Service.Register(ctx, service.RegisterRequest{TrainingID: ids[i]}); err != nil {
			return fmt.Errorf("register %s: %w", ids[i], err)
		}
		return nil
	})
	res.RegisterSeconds = time.Since(measureStart).Seconds()
	if err != nil {
		return res, err
	}
	logf("registered them with trainhook in %.2fs; waiting until every model is final (at most until %s)", res.RegisterSeconds, deadline.Format(time.TimeOnly))
	if res.CreateSeconds+res.RegisterSeconds > o.Duration.Seconds()/2 {
		logf("warning: setup took %.0fs of the trainings' %s: raise --duration so they are all in flight together",
			res.CreateSeconds+res.RegisterSeconds, o.Duration)
	}

	// Wait until every model is final, or the deadline.
	waitCtx, cancelWait := context.WithDeadline(ctx, deadline)
	defer cancelWait()
	lastLog := time.Now()
	for {
		counts, err := a.Store.CountModels(ctx)
		if err != nil {
			return res, err
		}
		final := counts[training.Ready] + counts[training.Failed] + counts[training.Canceled]
		if final == o.N {
			break
		}
		if time.Since(lastLog) >= 30*time.Second {
			logf("%d of %d final after %.0fs", final, o.N, time.Since(measureStart).Seconds())
			lastLog = time.Now()
		}
		select {
		case <-waitCtx.Done():
		case <-time.After(250 * time.Millisecond):
		}
		if waitCtx.Err() != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.TimedOut = true
			logf("--max %s reached with %d of %d final", o.Max, final, o.N)
			break
		}
	}
	end := time.Now()
	st := sim.Stats()
	res.MeasuredSeconds = end.Sub(measureStart).Seconds()
	res.APICalls, res.MaxPerMinute, res.Throttled = st.Requests, st.MaxPerMinute, st.Throttled
	res.ListCalls, res.GetCalls = st.Total("trainings.list"), st.Total("trainings.get")
	res.CallsPer = float64(st.Requests) / float64(o.N)
	if res.MeasuredSeconds > 0 {
		res.CallsPerMinute = float64(st.Requests) / res.MeasuredSeconds * 60
	}
	res.BudgetKept = st.Throttled == 0 && st.MaxPerMinute <= o.Budget

	// The poller runs on while the models are read back: only transitions
	// recorded by `end` count.
	var delays []delay
	var firstDone, lastDone time.Time
	before := ""
	for {
		page, err := a.Store.ListModels(ctx, store.ModelFilter{Before: before, Limit: 1000})
		if err != nil {
			return res, err
		}
		for _, m := range page {
			truth, ok := sim.Training(m.TrainingID)
			if !ok {
				res.Wrong++
				continue
			}
			if c := truth.CompletedAt; c != nil {
				if firstDone.IsZero() || c.Before(firstDone) {
					firstDone = *c
				}
				if c.After(lastDone) {
					lastDone = *c
				}
			}
			h, err := a.Store.History(ctx, m.ID)
			if err != nil {
				return res, err
			}
			var settled *training.HistoryEntry
			for i, e := range h {
				if e.Decision == training.Move && e.To.Terminal() && !e.At.After(end) {
					settled = &h[i]
					break
				}
			}
			if settled == nil {
				res.Undetected++
				if c := truth.CompletedAt; c != nil && c.Before(end) {
					delays = append(delays, delay{seconds: end.Sub(*c).Seconds(), lowerBound: true})
				}
				continue
			}
			want, _ := training.MapRemote(truth.Status)
			if settled.To != want || want == training.Ready && !strings.Contains(string(m.Output), truth.OutputVersion) || want == training.Failed && m.Error != truth.Error {
				res.Wrong++
				continue
			}
			if truth.CompletedAt != nil {
				delays = append(delays, delay{seconds: settled.At.Sub(*truth.CompletedAt).Seconds()})
			}
			if settled.Source == training.SourceWebhook {
				res.ByWebhook++
			} else {
				res.ByPoll++
			}
		}
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].ID
	}
	if !firstDone.IsZero() {
		res.CompletionSpread = lastDone.Sub(firstDone).Seconds()
	}
	res.DelayP50, res.DelayP50LowerBound = percentile(delays, 0.50)
	res.DelayP99, res.DelayP99LowerBound = percentile(delays, 0.99)
	res.DelayMax, _ = percentile(delays, 1)
	res.WallSeconds = time.Since(start).Seconds()
	return res, nil
}

// delay is one model's detection delay; lowerBound when the model was not
// final at the end of the window, and the true delay is at least this.
type delay struct {
	seconds    float64
	lowerBound bool
}

// percentile returns the nearest-rank p-th percentile of ds, and whether
// it is only a lower bound. Raising any lower-bound value can only raise
// the order statistics, so the value at rank i is exact when no lower
// bound sorts at or below it.
func percentile(ds []delay, p float64) (float64, bool) {
	if len(ds) == 0 {
		return 0, false
	}
	s := slices.Clone(ds)
	slices.SortStableFunc(s, func(a, b delay) int { return cmp.Compare(a.seconds, b.seconds) })
	i := int(math.Ceil(p*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	first := slices.IndexFunc(s, func(d delay) bool { return d.lowerBound })
	return s[i].seconds, first >= 0 && first <= i
}

// parallel calls fn(ctx, i) for every i in [0, n) on workers goroutines
// and returns the first error; the others stop taking work after it.
func parallel(ctx context.Context, n, workers int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}
