// Command lifecyclebench measures how fast trainhook learns that trainings
// ended, and what it spends on Replicate's API to do so: N trainings in
// flight on the built-in simulator, in polling mode or in webhook mode with
// some webhooks dropped, under one API budget. It reports the detection
// delay (from completed_at at Replicate to the model's status change),
// API calls per training and per minute, whether the budget was ever
// exceeded, and checks every model's final state against the simulator's
// ground truth.
//
// Everything runs in this process on loopback, bounded by --max: a run
// that hits it still reports what it measured, with the models not yet
// final counted and their delays as lower bounds. See BENCHMARKS.md.
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
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run returns the exit code: 0 when every model reached the simulator's
// final state within the budget and --max, 1 when the run failed or found
// a problem (the result is still printed if there is one), 2 for bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lifecyclebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o         Options
		asJSON    bool
		serverLog string
	)
	fs.StringVar(&o.Mode, "mode", "polling", "polling, or webhook (the simulator delivers signed webhooks, some dropped)")
	fs.IntVar(&o.N, "n", 1000, "trainings in flight (1 to 50000)")
	fs.IntVar(&o.Budget, "budget", 600, "API requests per minute for trainhook (TRAINHOOK_API_RATE_LIMIT)")
	fs.Float64Var(&o.Drop, "drop", 0.2, "webhook mode: share of webhooks dropped")
	fs.DurationVar(&o.Duration, "duration", 2*time.Minute, "how long each training runs on the simulator")
	fs.DurationVar(&o.ReconcileAfter, "reconcile-after", time.Minute, "webhook mode: TRAINHOOK_RECONCILE_AFTER")
	fs.DurationVar(&o.PollInterval, "poll-interval", 5*time.Second, "TRAINHOOK_POLL_INTERVAL")
	fs.IntVar(&o.SetupWorkers, "setup-workers", 8, "trainings created on the simulator and registered with trainhook this many at a time")
	fs.DurationVar(&o.Max, "max", 15*time.Minute, "bound on the whole run; models not final by then are reported as undetected")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	fs.StringVar(&serverLog, "server-log", "", "write trainhook's own log, at debug level (the poller's ticks), to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lifecyclebench [flags]\n\nMeasures detection delay and API cost with N trainings in flight. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lifecyclebench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "lifecyclebench: %v\n", err)
		return 2
	}
	o.Log = stderr
	if serverLog != "" {
		f, err := os.OpenFile(serverLog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "lifecyclebench: --server-log: %v\n", err)
			return 2
		}
		defer f.Close()
		o.ServerLog = f
	}

	r, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "lifecyclebench: %v\n", err)
		return 1
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(r); err != nil {
			fmt.Fprintf(stderr, "lifecyclebench: %v\n", err)
			return 1
		}
	} else {
		report(stdout, o, r)
	}
	if !r.Passed() {
		fmt.Fprintf(stderr, "lifecyclebench: FAIL: %s\n", r.Problem())
		return 1
	}
	return 0
}

// report prints a result for people.
func report(w io.Writer, o Options, r Result) {
	fmt.Fprintf(w, "%s mode: %d trainings of %s, budget %d/min", r.Mode, r.Trainings, o.Duration, r.Budget)
	if r.Mode == "webhook" {
		fmt.Fprintf(w, ", %.0f%% of webhooks dropped, reconcile after %s", r.DropWebhooks*100, o.ReconcileAfter)
	}
	fmt.Fprintf(w, "\n  setup            created in %.2fs, registered in %.2fs; completions spread over %.1fs\n",
		r.CreateSeconds, r.RegisterSeconds, r.CompletionSpread)
	fmt.Fprintf(w, "  detection delay  p50 %s  p99 %s  max %s\n",
		bound(r.DelayP50, r.DelayP50LowerBound), bound(r.DelayP99, r.DelayP99LowerBound), bound(r.DelayMax, r.Undetected > 0))
	fmt.Fprintf(w, "  API calls        %d (%.2f per training, %.0f per minute over %.0fs; list %d, get %d); most in any 60 s: %d; 429s: %d; budget kept: %v\n",
		r.APICalls, r.CallsPer, r.CallsPerMinute, r.MeasuredSeconds, r.ListCalls, r.GetCalls, r.MaxPerMinute, r.Throttled, r.BudgetKept)
	fmt.Fprintf(w, "  settled by       webhook %d, poll %d; not final within --max: %d; wrong final states: %d\n",
		r.ByWebhook, r.ByPoll, r.Undetected, r.Wrong)
}

func bound(s float64, lower bool) string {
	if lower {
		return fmt.Sprintf("≥%.2fs", s)
	}
	return fmt.Sprintf("%.2fs", s)
}
