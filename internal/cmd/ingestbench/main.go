// Command ingestbench measures how fast a running `trainhook serve` ingests
// Replicate's signed webhooks, end to end over loopback. It registers one
// model per delivery, sends a signed `succeeded` training for each while
// timing every request, then reads every model back and fails unless all are
// Ready with their output. It refuses any --url that is not on this machine.
//
// scripts/bench-ingest.sh builds trainhook, starts it on a fresh SQLite file
// and runs this several times.
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
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run returns the exit code: 0 when every delivery was accepted and every
// model verified, 1 when the run failed or found a problem, 2 for bad usage.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "seed" {
		return runSeed(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("ingestbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o            Options
		secret       string
		notifySecret string
		asJSON       bool
	)
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8080", "base URL of the running trainhook serve (loopback hosts only)")
	fs.StringVar(&secret, "secret", "", "webhook signing key whsec_... the server accepts (default $REPLICATE_WEBHOOK_SECRET; the first key if several)")
	fs.StringVar(&o.Token, "token", "", "the server's TRAINHOOK_API_TOKEN, if it has one (default $TRAINHOOK_API_TOKEN)")
	fs.IntVar(&o.N, "n", 20000, "deliveries to send, one per registered model")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "requests in flight at once")
	fs.IntVar(&o.PayloadBytes, "payload-bytes", 4096, "size of each delivery: a succeeded training whose log is padded with tqdm lines")
	fs.IntVar(&o.PID, "pid", 0, "the server's process id: report its peak RSS (VmHWM) and CPU time from /proc")
	fs.DurationVar(&o.DurationMax, "duration-max", 5*time.Minute, "hard bound on the whole run")
	fs.StringVar(&o.Order, "order", OrderRegistration, "order of the deliveries: registration, or random (a fixed shuffle, as trainings that end in their own order)")
	fs.StringVar(&o.TrainingIDs, "training-ids", IDsSortable, "training ids to register: sortable (trainhook's time-ordered ids), or random (as Replicate's: lookups land all over the training_id index)")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	fs.StringVar(&o.NotifyAddr, "notify", "", "loopback HOST:PORT to receive the server's notifications on (start it with TRAINHOOK_NOTIFY_URL=http://HOST:PORT/); the run then waits until every model was notified and reports the lag")
	fs.StringVar(&notifySecret, "notify-secret", "", "the server's TRAINHOOK_NOTIFY_SECRET, to verify notifications with (default $TRAINHOOK_NOTIFY_SECRET)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ingestbench [flags]\n       ingestbench seed --db FILE --models N  (a SQLite database to measure on: ingestbench seed -h)\n\nMeasures webhook ingest of a local trainhook serve. Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ingestbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if secret == "" {
		secret = getenv("REPLICATE_WEBHOOK_SECRET")
	}
	if o.Token == "" {
		o.Token = strings.TrimSpace(getenv("TRAINHOOK_API_TOKEN"))
	}
	keys, err := replicate.ParseKeys(secret)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "ingestbench: --secret: %v\n", err)
		return 2
	case len(keys) == 0:
		fmt.Fprintln(stderr, "ingestbench: need the server's signing key: --secret whsec_... or REPLICATE_WEBHOOK_SECRET")
		return 2
	}
	o.Key = keys[0]
	if o.NotifyAddr != "" {
		if notifySecret == "" {
			notifySecret = getenv("TRAINHOOK_NOTIFY_SECRET")
		}
		if o.NotifyKeys, err = replicate.ParseKeys(notifySecret); err != nil {
			fmt.Fprintf(stderr, "ingestbench: --notify-secret: %v\n", err)
			return 2
		}
	}
	if _, err := checkURL(o.URL); err != nil {
		fmt.Fprintf(stderr, "ingestbench: %v\n", err)
		return 2
	}
	if !asJSON {
		o.Log = stderr
	}

	res, err := Run(ctx, o)
	if res.N == 0 && err != nil { // nothing ran: bad options
		fmt.Fprintf(stderr, "ingestbench: %v\n", err)
		return 2
	}
	if asJSON {
		out := struct {
			Result
			Passed bool   `json:"passed"`
			Error  string `json:"error,omitempty"`
		}{Result: res, Passed: err == nil && res.Passed()}
		if err != nil {
			out.Error = err.Error()
		}
		enc := json.NewEncoder(stdout)
		if encErr := enc.Encode(out); encErr != nil {
			fmt.Fprintf(stderr, "ingestbench: %v\n", encErr)
			return 1
		}
		if err != nil || !res.Passed() {
			report(stderr, res) // what went wrong, for people, beside the JSON
		}
	} else {
		report(stdout, res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ingestbench: %v\n", err)
		return 1
	}
	if !res.Passed() {
		fmt.Fprintln(stderr, "ingestbench: FAIL: not every delivery was accepted and stored")
		return 1
	}
	return 0
}

// report prints a result for people.
func report(w io.Writer, r Result) {
	fmt.Fprintf(w, "ingestbench %s: %d deliveries of %d bytes, concurrency %d, %s order, %s training ids\n", r.URL, r.N, r.PayloadBytes, r.Concurrency, r.Order, r.TrainingIDs)
	fmt.Fprintf(w, "  registered  %d models in %.2fs (not timed)\n", r.Registered, r.RegisterSeconds)
	if r.Sent == 0 {
		return
	}
	fmt.Fprintf(w, "  delivered   %d of %d accepted in %.2fs: %.0f deliveries/s\n", r.OK, r.Sent, r.Seconds, r.DeliveriesPerSec)
	fmt.Fprintf(w, "  latency     p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	if len(r.Errors) > 0 {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, r.Errors[k]))
		}
		fmt.Fprintf(w, "  errors      %s (first: %s)\n", strings.Join(parts, ", "), r.FirstError)
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(w, "  server      pid %d: peak RSS %.1f MiB, CPU %.2fs during deliveries (%.3fs per 1000)\n",
			s.PID, float64(s.PeakRSSBytes)/(1<<20), s.CPUSeconds, s.CPUSecondsPer1000)
		if s.ReadKiBPerDelivery > 0 {
			fmt.Fprintf(w, "  server I/O  %.1f KiB read, %.1f KiB written per delivery (system calls: socket, WAL, pages SQLite's cache missed)\n",
				s.ReadKiBPerDelivery, s.WrittenKiBPerDelivery)
		}
	}
	fmt.Fprintf(w, "  client      CPU %.2fs during deliveries\n", r.ClientCPUSeconds)
	if n := r.Notify; n != nil {
		fmt.Fprintf(w, "  notified    %d of %d models model.ready on %s, every one %.2fs after the last delivery; %d requests, %d failed verification\n",
			n.Notified, r.N, n.Addr, n.DrainSeconds, n.Received, n.FailedVerification)
		fmt.Fprintf(w, "  notify lag  p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms (commit to first arrival)\n", n.Lag.P50, n.Lag.P90, n.Lag.P99, n.Lag.Max)
	}
	if r.Verify.Checked > 0 {
		fmt.Fprintf(w, "  verified    %d of %d models Ready with their output\n", r.Verify.Ready, r.N)
		if r.Verify.Ready != r.Verify.Checked {
			keys := make([]string, 0, len(r.Verify.ByStatus))
			for k := range r.Verify.ByStatus {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "    %-10s %d\n", k, r.Verify.ByStatus[k])
			}
			for _, p := range r.Verify.Problems {
				fmt.Fprintf(w, "    %s\n", p)
			}
		}
	}
	if r.Passed() {
		fmt.Fprintln(w, "PASS")
	} else {
		fmt.Fprintln(w, "FAIL")
	}
}
