package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quick(mode string, n int) Options {
	return Options{
		Mode: mode, N: n, Budget: 600, Duration: 2 * time.Second, PollInterval: 200 * time.Millisecond,
		ReconcileAfter: time.Second, SetupWorkers: 4, Max: time.Minute,
	}
}

func TestRunPolling(t *testing.T) {
	r, err := Run(context.Background(), quick("polling", 20))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed() {
		t.Fatalf("not passed: %s (%+v)", r.Problem(), r)
	}
	if r.ByPoll != 20 || r.ByWebhook != 0 || r.Undetected != 0 || r.TimedOut {
		t.Errorf("settled by poll %d, webhook %d, undetected %d, timed out %v; want all 20 by poll", r.ByPoll, r.ByWebhook, r.Undetected, r.TimedOut)
	}
	if r.APICalls == 0 || r.APICalls != r.ListCalls+r.GetCalls || r.CallsPerMinute <= 0 || r.MeasuredSeconds <= 0 {
		t.Errorf("API figures: %+v", r)
	}
	if r.DelayP50 < 0 || r.DelayP50 > r.DelayP99 || r.DelayP99 > r.DelayMax || r.DelayMax > 30 {
		t.Errorf("delays p50 %v p99 %v max %v", r.DelayP50, r.DelayP99, r.DelayMax)
	}
	if r.DelayP50LowerBound || r.DelayP99LowerBound {
		t.Error("a complete run flags its delays as lower bounds")
	}
}

func TestRunWebhook(t *testing.T) {
	o := quick("webhook", 20)
	o.Drop = 0.5
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed() {
		t.Fatalf("not passed: %s (%+v)", r.Problem(), r)
	}
	if r.ByWebhook == 0 || r.ByWebhook+r.ByPoll != 20 {
		t.Errorf("settled by webhook %d, poll %d; want 20 in all, some by webhook", r.ByWebhook, r.ByPoll)
	}
}

// A run cut off by --max still reports, with the models not yet final
// counted as undetected.
func TestRunMax(t *testing.T) {
	o := quick("polling", 5)
	o.Duration, o.Max = time.Minute, 2*time.Second
	start := time.Now()
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("the run took %s with --max 2s", time.Since(start))
	}
	if !r.TimedOut || r.Undetected != 5 || r.Passed() || !strings.Contains(r.Problem(), "not final within --max") {
		t.Errorf("timed out %v, undetected %d, problem %q", r.TimedOut, r.Undetected, r.Problem())
	}
}

func TestPercentile(t *testing.T) {
	exact := []delay{{seconds: 3}, {seconds: 1}, {seconds: 2}, {seconds: 4}}
	for _, c := range []struct {
		p    float64
		want float64
	}{{0.5, 2}, {0.99, 4}, {1, 4}, {0, 1}} {
		if got, lower := percentile(exact, c.p); got != c.want || lower {
			t.Errorf("percentile(%v) = %v, %v; want %v, false", c.p, got, lower, c.want)
		}
	}
	if got, lower := percentile(nil, 0.5); got != 0 || lower {
		t.Errorf("percentile of nothing = %v, %v", got, lower)
	}
	// One model not final after 10 s: the median is exact, p99 a lower bound.
	mixed := append(exact, delay{seconds: 10, lowerBound: true})
	if got, lower := percentile(mixed, 0.5); got != 3 || lower {
		t.Errorf("median = %v, %v; want 3, exact", got, lower)
	}
	if got, lower := percentile(mixed, 0.99); got != 10 || !lower {
		t.Errorf("p99 = %v, %v; want 10, a lower bound", got, lower)
	}
	// A lower bound that sorts below the median makes it a lower bound too.
	early := append(exact, delay{seconds: 0.5, lowerBound: true})
	if got, lower := percentile(early, 0.5); got != 2 || !lower {
		t.Errorf("median = %v, %v; want 2, a lower bound", got, lower)
	}
}

func TestCommand(t *testing.T) {
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"--n", "10", "--duration", "1s", "--poll-interval", "200ms", "--json"}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("output is not one JSON result: %v\n%s", err, out.String())
	}
	if r.Trainings != 10 || r.ByPoll != 10 || !r.BudgetKept {
		t.Errorf("result %+v", r)
	}
}

// TestValidateN: up to 50,000 trainings in flight are accepted, past the
// poller's largest claim; more are refused with the bound in the message.
func TestValidateN(t *testing.T) {
	o := quick("polling", 50000)
	if err := o.validate(); err != nil {
		t.Errorf("--n 50000: %v", err)
	}
	o.N = 50001
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--n 50001: want 1 to 50000") {
		t.Errorf("--n 50001: %v", err)
	}
	var errs bytes.Buffer
	if code := run(context.Background(), []string{"--n", "50001"}, &bytes.Buffer{}, &errs); code != 2 || !strings.Contains(errs.String(), "want 1 to 50000") {
		t.Errorf("--n 50001: exit %d, %q", code, errs.String())
	}
}

// TestServerLog: --server-log gets trainhook's debug log, the poller's
// ticks among it; a path that cannot be created is a usage error.
func TestServerLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.log")
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"--n", "5", "--duration", "1s", "--poll-interval", "200ms", "--server-log", path}, &out, &errs)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs.String())
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), `"msg":"poller: tick"`) || !strings.Contains(string(b), `"level":"DEBUG"`) {
		t.Errorf("server log (%v):\n%.2000s", err, b)
	}
	if code := run(context.Background(), []string{"--server-log", filepath.Join(t.TempDir(), "missing", "x.log")}, &out, &errs); code != 2 {
		t.Errorf("--server-log in a missing directory: exit %d, want 2", code)
	}
}

func TestCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "push"}, {"--n", "0"}, {"--n", "50001"}, {"--budget", "0"}, {"--drop", "2"},
		{"--poll-interval", "10ms"}, {"--max", "0s"}, {"--setup-workers", "0"}, {"extra"}, {"--nope"},
	} {
		var out, errs bytes.Buffer
		if code := run(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errs); code != 0 || !strings.Contains(errs.String(), "-max") {
		t.Errorf("--help: exit %d, usage %q", code, errs.String())
	}
}
