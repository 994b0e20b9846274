package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

const demoToken = "r8_trainhook_demo_token"

// runDemo starts the simulator, the server on SQLite, and a sample training,
// and prints what happens to it. It needs no input and runs until interrupted.
func runDemo(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	data := fs.String("data", "./trainhook-demo", "folder for the demo's database and log")
	addr := fs.String("addr", "127.0.0.1:8080", "address the server listens on (port 0 picks a free one)")
	webhooks := fs.String("webhooks", "on", "on: the simulator delivers signed webhooks; off: trainhook polls")
	duration := fs.Duration("duration", 20*time.Second, "how long each simulated training runs")
	fresh := fs.Bool("fresh", false, "start with an empty database, deleting the one an earlier demo left in --data")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: trainhook demo [flags]\n\nRuns trainhook against a built-in simulator of Replicate, on SQLite, with a\nsample training that completes. Nothing leaves this machine.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseQuiet(fs, args, e); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *webhooks != "on" && *webhooks != "off" {
		fmt.Fprintf(e.stderr, "demo: --webhooks must be on or off, got %q\n", *webhooks)
		return 2
	}
	if *duration < time.Second || *duration > time.Hour {
		fmt.Fprintln(e.stderr, "demo: --duration must be between 1s and 1h")
		return 2
	}
	if err := os.MkdirAll(*data, 0o755); err != nil {
		fmt.Fprintf(e.stderr, "demo: create data folder: %v\n", err)
		return 1
	}
	reused, err := prepareDemoData(ctx, *data, *fresh)
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return 1
	}

	sim, err := fakereplicate.New(fakereplicate.Options{Token: demoToken, Duration: *duration})
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: simulator: %v\n", err)
		return 1
	}
	defer sim.Close()
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: start simulator: %v\n", err)
		return 1
	}

	began := time.Now()
	appRcv, err := startDemoApp(e, began)
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return 1
	}
	defer appRcv.Close()

	listen, err := resolvePort(*addr)
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return 1
	}
	vars := map[string]string{
		"ADDR":                     listen,
		"APP_URL":                  "http://" + listen,
		"TRAINHOOK_WEBHOOKS":       *webhooks,
		"DATABASE_URL":             filepath.Join(*data, "trainhook.db"),
		"REPLICATE_BASE_URL":       simURL,
		"REPLICATE_API_TOKEN":      demoToken,
		"REPLICATE_WEBHOOK_SECRET": sim.Key().Secret(),
		"TRAINHOOK_POLL_INTERVAL":  "2s",
		"TRAINHOOK_WEBHOOK_EVENTS": "start,logs,completed",
		"TRAINHOOK_LOG_FORMAT":     "json",
		"TRAINHOOK_NOTIFY_URL":     appRcv.url,
		"TRAINHOOK_NOTIFY_SECRET":  appRcv.secret,
		"TRAINHOOK_NOTIFY_EVENTS":  "model.training,model.ready,model.failed,model.canceled",
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: configuration: %v\n", err)
		return 1
	}
	logPath := filepath.Join(*data, "trainhook.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: open log: %v\n", err)
		return 1
	}
	defer logFile.Close()
	log, flushLog := app.NewLogger(cfg, logFile)
	defer flushLog()
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		if strings.Contains(err.Error(), "listen on") {
			fmt.Fprintln(e.stderr, "demo: pick another address with --addr 127.0.0.1:0")
		}
		return 1
	}
	sub, _ := a.Broker.Subscribe(0, 256)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	mode := "polling (trainhook asks the simulator for status)"
	if cfg.WebhookMode {
		mode = "webhooks (the simulator posts signed deliveries to " + cfg.WebhookURL + ")"
	}
	fmt.Fprintf(e.stdout, "trainhook demo\n  dashboard:  %s/\n  API:        %s/api/models\n  simulator:  %s (Replicate's API, on this machine)\n  account:    %s (the simulator's account: destinations are %s/<name>)\n  your app:   %s (a stand-in that verifies trainhook's notifications)\n  mode:       %s\n  data:       %s (log: %s)\n\n",
		a.URL, a.URL, simURL, sim.Username(), sim.Username(), appRcv.url, mode, *data, logPath)
	if reused {
		fmt.Fprintf(e.stdout, "Reusing the database an earlier demo left in %s: its models are listed too, though the new simulator no longer knows their trainings. --fresh starts clean.\n\n", *data)
	}
	printDemoEnv(e, a.URL, sim.Key().Secret(), vars)

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	input := json.RawMessage(`{"input_images":"https://example.com/datasets/zkx.zip","trigger_word":"ZKX","steps":1000,"lora_rank":16}`)
	m, _, err := a.Service.Start(sctx, service.StartRequest{
		Name: "demo portrait LoRA", Trainer: "ostris/flux-dev-lora-trainer",
		Destination: sim.Username() + "/demo-portrait-lora", Input: input,
	})
	cancel()
	if err != nil {
		fmt.Fprintf(e.stderr, "demo: start the sample training: %v\n", err)
	} else {
		fmt.Fprintf(e.stdout, "Started a sample training: model %s, training %s (%s)\n", m.ID, m.TrainingID, m.Status)
		fmt.Fprintf(e.stdout, "  follow it: %s/models/%s   or   curl -s %s/api/models/%s\n\n", a.URL, m.ID, a.URL, m.ID)
	}
	go printTransitions(e, sub, m.ID, began)
	fmt.Fprintln(e.stdout, "Press Ctrl-C to stop.")
	if err := <-done; err != nil {
		fmt.Fprintf(e.stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}

// printTransitions prints each status change of the sample model, and its
// progress every 25%.
func printTransitions(e env, sub *events.Subscription, id string, start time.Time) {
	last, lastQuarter := training.Status(""), -1
	for ev := range sub.C {
		var m training.Model
		if ev.Type != "model" || json.Unmarshal(ev.Data, &m) != nil || m.ID != id {
			continue
		}
		at := time.Since(start).Round(100 * time.Millisecond)
		if m.Status != last {
			line := fmt.Sprintf("[%6s] %s", at, m.Status)
			switch m.Status {
			case training.Ready:
				var out struct{ Version, Weights string }
				_ = json.Unmarshal(m.Output, &out)
				line += fmt.Sprintf(": new version %s\n           weights %s", out.Version, out.Weights)
			case training.Failed:
				line += ": " + m.Error
			}
			fmt.Fprintln(e.stdout, line)
			last = m.Status
		}
		if q := int(m.Progress.Percent) / 25; m.Status == training.Training && m.Progress.Total > 0 && q > lastQuarter {
			fmt.Fprintf(e.stdout, "[%6s]   progress %3.0f%% (step %d/%d)\n", at, m.Progress.Percent, m.Progress.Step, m.Progress.Total)
			lastQuarter = q
		}
	}
}

// resolvePort turns port 0 into a free port, because APP_URL must name the
// real port before the server starts.
func resolvePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--addr %q: want host:port such as 127.0.0.1:8080", addr)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// printDemoEnv prints what a second terminal needs: the client commands'
// variables, and the demo server's configuration for trainhook doctor.
func printDemoEnv(e env, url, secret string, vars map[string]string) {
	db := vars["DATABASE_URL"]
	if abs, err := filepath.Abs(db); err == nil {
		db = abs
	}
	fmt.Fprintf(e.stdout, "In a second terminal, for train, models, watch, cancel and webhook send:\n  export %s=%s REPLICATE_WEBHOOK_SECRET=%s\n", envServerURL, url, secret)
	fmt.Fprintf(e.stdout, "and for trainhook doctor, the demo server's configuration as well:\n  export %s=%s %s=%s %s=%s %s=%s %s=%s\n\n",
		config.EnvAppURL, vars["APP_URL"], config.EnvWebhooks, vars["TRAINHOOK_WEBHOOKS"],
		config.EnvReplicateBaseURL, vars["REPLICATE_BASE_URL"], config.EnvReplicateToken, vars["REPLICATE_API_TOKEN"], config.EnvDatabaseURL, db)
}

// demoFiles are what a demo keeps in its data folder.
var demoFiles = []string{"trainhook.db", "trainhook.db-wal", "trainhook.db-shm", "trainhook.log"}

// prepareDemoData reports whether an earlier demo's database is in dir, and
// with fresh deletes it first. A database another process has open is
// never deleted: Open refuses it.
func prepareDemoData(ctx context.Context, dir string, fresh bool) (reused bool, err error) {
	db := filepath.Join(dir, "trainhook.db")
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("look for an earlier demo's database: %w", err)
	}
	if !fresh {
		return true, nil
	}
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		return false, fmt.Errorf("--fresh: %w", err)
	}
	if err := st.Close(); err != nil {
		return false, fmt.Errorf("--fresh: %w", err)
	}
	for _, f := range demoFiles {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("--fresh: delete %s: %w", f, err)
		}
	}
	return false, nil
}
