package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
)

// runFakeReplicate runs the Replicate simulator until ctx ends (SIGINT or
// SIGTERM). It prints KEY=value lines to stdout for the caller to use
// (REPLICATE_BASE_URL, REPLICATE_API_TOKEN when --token is given, and
// REPLICATE_WEBHOOK_SECRET when the key was generated, since nothing else
// shows it; with --secret the caller already has it) and logs to stderr.
func runFakeReplicate(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("fake-replicate", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var (
		addr        = fs.String("addr", "127.0.0.1:9000", "listen `host:port`, loopback only; port 0 picks a free one")
		token       = fs.String("token", "", "the only API `token` accepted; empty accepts any non-empty Bearer token")
		username    = fs.String("username", fakereplicate.DefaultUsername, "the account's `name`; it owns the destination models you create")
		secret      = fs.String("secret", "", "webhook signing `key` (whsec_<base64>); random when empty, and then printed to stdout")
		seed        = fs.Uint64("seed", 0, "`n` > 0 makes ids, outcomes and fault dice reproducible")
		duration    = fs.Duration("duration", fakereplicate.DefaultDuration, "a training's whole run; the first 5-15% is queued (starting)")
		failRate    = fs.Float64("fail-rate", 0.1, "share of trainings that fail, `0..1`")
		abortRate   = fs.Float64("abort-rate", 0, "share of trainings that end aborted before starting, `0..1`")
		drop        = fs.Float64("drop-webhooks", 0, "share of webhook messages never sent, `0..1`")
		dup         = fs.Float64("dup-webhooks", 0, "share of webhook messages sent twice with the same webhook-id, `0..1`")
		reorder     = fs.Bool("reorder-webhooks", false, "delay each webhook by a random 0-2s so they can arrive out of order")
		delay       = fs.Duration("delay-webhooks", 0, "delay every webhook's first attempt by `duration`")
		apiErrors   = fs.Float64("api-error-rate", 0, "share of API calls answered 500/502/503, `0..1`")
		rateLimit   = fs.Int("rate-limit", fakereplicate.NominalRateLimit, "API requests per minute before 429s (sliding 60s window); 0 for no limit")
		retryHeader = fs.Bool("retry-after-header", false, "add a Retry-After header to 429s (Replicate is only known to send retry_after in the body)")
		retryWindow = fs.Duration("webhook-retry-window", fakereplicate.DefaultWebhookRetryWindow, "how long a terminal webhook is retried")
		hookTimeout = fs.Duration("webhook-timeout", fakereplicate.DefaultWebhookTimeout, "timeout of one webhook delivery attempt")
		logsEvery   = fs.Duration("logs-interval", fakereplicate.MinLogsInterval, "interval of \"logs\" webhooks (at least 500ms)")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: trainhook fake-replicate [flags]

Runs a local simulator of Replicate's training API on a loopback address:
models, trainings that run on a schedule, signed webhooks (to loopback
receivers only), rate limits and injectable faults. Point trainhook at it
with REPLICATE_BASE_URL=http://127.0.0.1:9000; /_sim/ holds its controls.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseQuiet(fs, args, e); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "fake-replicate: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(e.stderr, "fake-replicate: --log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	if host, _, err := net.SplitHostPort(*addr); err != nil || !fakereplicate.IsLoopbackHost(host) {
		fmt.Fprintf(e.stderr, "fake-replicate: --addr %q: want a loopback host:port such as 127.0.0.1:9000; the simulator serves this machine only\n", *addr)
		return 2
	}
	if *rateLimit < 0 {
		fmt.Fprintln(e.stderr, "fake-replicate: --rate-limit must be 0 (no limit) or more")
		return 2
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

	srv, err := fakereplicate.New(fakereplicate.Options{
		Token:    *token,
		Username: *username,
		Secret:   *secret,
		Seed:     *seed,
		Duration: *duration,
		Faults: fakereplicate.Faults{
			FailRate: *failRate, AbortRate: *abortRate,
			DropWebhooks: *drop, DupWebhooks: *dup, ReorderWebhooks: *reorder, DelayWebhooks: *delay,
			APIErrorRate: *apiErrors, RateLimit: *rateLimit, RetryAfterHeader: *retryHeader,
		},
		WebhookRetryWindow: *retryWindow,
		WebhookTimeout:     *hookTimeout,
		LogsInterval:       *logsEvery,
		Logger:             log,
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "fake-replicate: %s\n", strings.TrimPrefix(err.Error(), "fakereplicate: "))
		return 2
	}
	base, err := srv.Start(*addr)
	if err != nil {
		fmt.Fprintf(e.stderr, "fake-replicate: %s\n", strings.TrimPrefix(err.Error(), "fakereplicate: "))
		_ = srv.Close()
		return 1
	}
	tokenNote := *token
	if tokenNote == "" {
		tokenNote = "(any non-empty Bearer token)"
	}
	log.Info("fake-replicate listening", "base_url", base, "token", tokenNote, "username", *username,
		"key_fingerprint", srv.Key().Fingerprint(), "duration", *duration, "fail_rate", *failRate,
		"rate_limit", *rateLimit, "control", base+"/_sim/")
	fmt.Fprintf(e.stdout, "REPLICATE_BASE_URL=%s\n", base)
	if *token != "" {
		fmt.Fprintf(e.stdout, "REPLICATE_API_TOKEN=%s\n", *token)
	}
	if *secret == "" {
		fmt.Fprintf(e.stdout, "REPLICATE_WEBHOOK_SECRET=%s\n", srv.Key().Secret())
	}

	<-ctx.Done()
	log.Info("fake-replicate stopping")
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			log.Error("fake-replicate: stop", "err", err)
			return 1
		}
	case <-time.After(10 * time.Second):
		log.Error("fake-replicate: stop timed out")
		return 1
	}
	return 0
}
