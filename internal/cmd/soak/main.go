// Command soak proves trainhook under load, faults and crashes. It builds
// the real trainhook binary, runs `trainhook serve` as one or more
// subprocesses against the Replicate simulator (in this process), turns on
// every fault at once (dropped, duplicated, reordered and delayed webhooks,
// 5xx answers, 429s from a rate limit below trainhook's budget and injected
// ones), SIGKILLs and restarts trainhook at random moments, starts and
// cancels N trainings through trainhook's API, waits for quiescence, and
// compares every model with the simulator's ground truth. With --notify (the
// default) trainhook also notifies a receiver in this process that fails,
// stalls and goes down, and no notification may be lost, changed on retry
// or out of order. It exits 1 when
// a figure that must be zero is not, or when trainhook sent more API
// requests in some 60 s window than its budget.
//
// Everything is on loopback, bounded in count and time. See RELIABILITY.md.
//
//	go run ./internal/cmd/soak                         # 10,000 trainings, webhook and polling mode
//	go run ./internal/cmd/soak --n 300 --mode both     # the short CI run
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the soak's flags.
type options struct {
	n                 int
	modes             []string
	duration          time.Duration
	killMin           time.Duration
	killMax           time.Duration
	databaseURL       string
	instances         int
	budget            int
	simRateLimit      int
	inject429Every    time.Duration
	concurrency       int
	startRate         float64
	cancelRate        float64
	failRate          float64
	abortRate         float64
	dropRate          float64
	dupRate           float64
	apiErrorRate      float64
	webhookDelay      time.Duration
	retryWindow       time.Duration
	pollInterval      time.Duration
	reconcileAfter    time.Duration
	sameInput         bool
	maxWait           time.Duration
	binary            string
	race              bool
	keep              bool
	logLevel          string
	seed              uint64
	asJSON            bool
	notify            bool
	notifyFailRate    float64
	notifyTimeoutRate float64
	notifyDown        time.Duration
	out               io.Writer
	errOut            io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses flags, runs each mode and returns the exit code: 0 when every
// must-be-zero figure is zero and the budget was kept, 1 otherwise, 2 for a
// usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "soak:", err)
		return 2
	}
	o.out, o.errOut = stdout, stderr
	ctx, cancel := context.WithTimeout(ctx, o.maxWait)
	defer cancel()

	bin, cleanup, err := buildBinary(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 1
	}
	defer cleanup()

	// The modes run side by side: most of a soak's time is spent waiting
	// (for trainings to end, for leases to run out after a kill), so on two
	// cores two modes take little longer than one.
	reports := make([]*report, len(o.modes))
	var wg sync.WaitGroup
	for i, mode := range o.modes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i] = soak(ctx, o, bin, mode)
		}()
	}
	wg.Wait()

	code := 0
	for _, r := range reports {
		if !r.Passed() {
			code = 1
		}
	}
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reports)
	} else {
		for _, r := range reports {
			r.print(stdout)
		}
	}
	return code
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 10000, "trainings to start through trainhook's API")
	mode := fs.String("mode", "both", "webhook, polling, or both (run side by side)")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "how long each simulated training runs")
	kill := fs.String("kill-every", "5s-20s", `SIGKILL a trainhook process at random intervals in this range ("5s-20s", "10s", or "0" for never)`)
	fs.StringVar(&o.databaseURL, "database-url", "", "DATABASE_URL for trainhook (default: a fresh SQLite file per mode; a postgres:// URL is passed through; use a fresh database)")
	fs.IntVar(&o.instances, "instances", 1, "trainhook processes sharing the database (>1 needs PostgreSQL); API calls are spread across them and webhooks go through a round-robin proxy")
	fs.IntVar(&o.budget, "budget", 3000, "TRAINHOOK_API_RATE_LIMIT: requests per minute trainhook may send; the soak fails if any 60 s window holds more")
	fs.IntVar(&o.simRateLimit, "sim-rate-limit", 0, "the simulator's rate limit per minute, beyond which it answers 429 (default: 3/5 of --budget, so that 429s are forced once trainhook is busy; -1 for none)")
	fs.DurationVar(&o.inject429Every, "inject-429-every", 7*time.Second, "also inject a few 429s (retry_after 1-2 s) at this interval; 0 for never")
	fs.IntVar(&o.concurrency, "concurrency", 8, "API clients starting trainings at once (each start in flight when trainhook is killed becomes a start in doubt, recovered minutes later)")
	fs.Float64Var(&o.startRate, "start-rate", 0, "starts per second at most (0: as fast as the clients and trainhook's API budget allow, which leaves polling little of the budget)")
	fs.Float64Var(&o.cancelRate, "cancel-rate", 0.1, "share of trainings canceled mid-run through POST /api/models/{id}/cancel")
	fs.Float64Var(&o.failRate, "fail-rate", 0.1, "share of trainings the simulator fails")
	fs.Float64Var(&o.abortRate, "abort-rate", 0.03, "share of trainings the simulator aborts before they start")
	fs.Float64Var(&o.dropRate, "drop-webhooks", 0.2, "share of webhook messages dropped")
	fs.Float64Var(&o.dupRate, "dup-webhooks", 0.1, "share of webhook messages sent twice")
	fs.Float64Var(&o.apiErrorRate, "api-error-rate", 0.05, "share of API calls answered 500/502/503 (for a POST, before or after the work)")
	fs.DurationVar(&o.webhookDelay, "webhook-delay", 300*time.Millisecond, "delay of every webhook's first attempt (on top of a random 0-2 s reordering)")
	fs.DurationVar(&o.retryWindow, "webhook-retry-window", 20*time.Second, "how long the simulator retries a terminal webhook")
	fs.DurationVar(&o.pollInterval, "poll-interval", time.Second, "TRAINHOOK_POLL_INTERVAL")
	fs.DurationVar(&o.reconcileAfter, "reconcile-after", 5*time.Second, "TRAINHOOK_RECONCILE_AFTER (webhook mode)")
	fs.BoolVar(&o.sameInput, "same-input", false, "start every training with the same trainer and input (only the destination differs), to probe start recovery's matching")
	fs.DurationVar(&o.maxWait, "max", 90*time.Minute, "give up after this long")
	fs.StringVar(&o.binary, "binary", "", "a trainhook binary to run (default: build ./cmd/trainhook into a temporary directory)")
	fs.BoolVar(&o.race, "race", false, "build trainhook with the race detector (a reported race fails the soak)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (databases, trainhook's logs) and print its path")
	fs.StringVar(&o.logLevel, "log-level", "info", "TRAINHOOK_LOG_LEVEL of the trainhook processes (debug shows each poller tick's decisions; see --keep)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed for the simulator's dice and the soak's choices (0: random)")
	fs.BoolVar(&o.asJSON, "json", false, "print the reports as JSON")
	fs.BoolVar(&o.notify, "notify", true, "send notifications of every event to a receiver in the soak, and check that none is lost, changed or out of order")
	fs.Float64Var(&o.notifyFailRate, "notify-fail-rate", 0.2, "share of notification requests the receiver answers 500")
	fs.Float64Var(&o.notifyTimeoutRate, "notify-timeout-rate", 0.05, "share of notification requests the receiver holds past trainhook's 15 s timeout (at most n/20, 2 to 20, in a run)")
	fs.DurationVar(&o.notifyDown, "notify-down", 15*time.Second, "how long the receiver is down (connection refused) once a third of the trainings have started; 0 for never")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch *mode {
	case "webhook", "polling":
		o.modes = []string{*mode}
	case "both":
		o.modes = []string{"webhook", "polling"}
	default:
		return o, fmt.Errorf("--mode must be webhook, polling or both, not %q", *mode)
	}
	var err error
	if o.killMin, o.killMax, err = parseRange(*kill); err != nil {
		return o, fmt.Errorf("--kill-every: %w", err)
	}
	switch {
	case o.n < 1 || o.n > 100000:
		return o, errors.New("--n must be 1 to 100000")
	case o.instances < 1 || o.instances > 16:
		return o, errors.New("--instances must be 1 to 16")
	case o.budget < 1 || o.budget > 3000:
		return o, errors.New("--budget must be 1 to 3000 (TRAINHOOK_API_RATE_LIMIT's range)")
	case o.concurrency < 1:
		return o, errors.New("--concurrency must be at least 1")
	case o.duration < 100*time.Millisecond:
		return o, errors.New("--duration must be at least 100ms")
	case o.logLevel != "debug" && o.logLevel != "info" && o.logLevel != "warn" && o.logLevel != "error":
		return o, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", o.logLevel)
	case o.databaseURL != "" && len(o.modes) > 1:
		return o, errors.New("--database-url names one database: run one --mode at a time with it")
	}
	for name, v := range map[string]float64{"cancel-rate": o.cancelRate, "fail-rate": o.failRate, "abort-rate": o.abortRate,
		"drop-webhooks": o.dropRate, "dup-webhooks": o.dupRate, "api-error-rate": o.apiErrorRate,
		"notify-fail-rate": o.notifyFailRate, "notify-timeout-rate": o.notifyTimeoutRate} {
		if v < 0 || v > 1 {
			return o, fmt.Errorf("--%s must be between 0 and 1", name)
		}
	}
	if o.notifyFailRate+o.notifyTimeoutRate > 1 {
		return o, errors.New("--notify-fail-rate and --notify-timeout-rate add up to more than 1")
	}
	if o.notifyDown < 0 {
		return o, errors.New("--notify-down must be 0 (never) or a positive duration")
	}
	if o.simRateLimit == 0 {
		o.simRateLimit = o.budget * 3 / 5
	}
	if o.simRateLimit < 0 {
		o.simRateLimit = 0
	}
	return o, nil
}

// parseRange reads "5s-20s", "10s" or "0".
func parseRange(s string) (lo, hi time.Duration, err error) {
	if s == "0" || s == "" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = time.ParseDuration(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = time.ParseDuration(b); err != nil {
			return 0, 0, err
		}
	}
	if lo <= 0 || hi < lo {
		return 0, 0, fmt.Errorf("%q is not a positive range such as 5s-20s", s)
	}
	return lo, hi, nil
}
