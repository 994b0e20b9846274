// Command lifecyclebench measures how fast trainhook learns that trainings
// ended, and what it spends on Replicate's API to do so: N trainings in
// flight on the built-in simulator, in polling mode or in webhook mode with
// some webhooks dropped, under one API budget. It reports the detection
// delay (from completed_at at Replicate to the model's status change),
// API calls per training, whether the budget was ever exceeded, and checks
// every model's final state against the simulator's ground truth.
//
// Everything runs in this process on loopback. See BENCHMARKS.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

type result struct {
	Mode            string  `json:"mode"`
	Trainings       int     `json:"trainings"`
	Budget          int     `json:"budget_per_minute"`
	DropWebhooks    float64 `json:"drop_webhooks"`
	DelayP50        float64 `json:"detection_delay_p50_s"`
	DelayP99        float64 `json:"detection_delay_p99_s"`
	DelayMax        float64 `json:"detection_delay_max_s"`
	APICalls        int     `json:"api_calls"`
	CallsPer        float64 `json:"api_calls_per_training"`
	MaxPerMinute    int     `json:"max_requests_in_any_60s"`
	Throttled       int     `json:"throttled_429"`
	BudgetKept      bool    `json:"budget_kept"`
	Wrong           int     `json:"wrong_or_missing_final_states"`
	ByWebhook       int     `json:"settled_by_webhook"`
	ByPoll          int     `json:"settled_by_poll"`
	WallSeconds     float64 `json:"wall_seconds"`
	TrainingSeconds float64 `json:"training_duration_s"`
}

func main() {
	mode := flag.String("mode", "polling", "polling, or webhook (the simulator delivers signed webhooks, some dropped)")
	n := flag.Int("n", 1000, "trainings in flight")
	budget := flag.Int("budget", 600, "API requests per minute for trainhook (TRAINHOOK_API_RATE_LIMIT)")
	drop := flag.Float64("drop", 0.2, "webhook mode: share of webhooks dropped")
	dur := flag.Duration("duration", 2*time.Minute, "how long each training runs")
	reconcile := flag.Duration("reconcile-after", time.Minute, "webhook mode: TRAINHOOK_RECONCILE_AFTER")
	poll := flag.Duration("poll-interval", 5*time.Second, "TRAINHOOK_POLL_INTERVAL")
	maxWait := flag.Duration("max", 15*time.Minute, "give up after this long")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()
	if *mode != "polling" && *mode != "webhook" || *n < 1 || *n > 20000 {
		fmt.Fprintln(os.Stderr, "lifecyclebench: --mode polling|webhook, --n 1..20000")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *maxWait)
	defer cancel()
	r, err := run(ctx, *mode, *n, *budget, *drop, *dur, *reconcile, *poll)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifecyclebench:", err)
		os.Exit(1)
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
	} else {
		fmt.Printf("%s mode: %d trainings of %s, budget %d/min", r.Mode, r.Trainings, *dur, r.Budget)
		if r.Mode == "webhook" {
			fmt.Printf(", %.0f%% of webhooks dropped, reconcile after %s", r.DropWebhooks*100, *reconcile)
		}
		fmt.Printf("\n  detection delay  p50 %.2fs  p99 %.2fs  max %.2fs\n", r.DelayP50, r.DelayP99, r.DelayMax)
		fmt.Printf("  API calls        %d (%.2f per training); most in any 60 s: %d; 429s: %d; budget kept: %v\n", r.APICalls, r.CallsPer, r.MaxPerMinute, r.Throttled, r.BudgetKept)
		fmt.Printf("  settled by       webhook %d, poll %d; wrong or missing final states: %d\n", r.ByWebhook, r.ByPoll, r.Wrong)
	}
	if r.Wrong > 0 || !r.BudgetKept {
		os.Exit(1)
	}
}

func run(ctx context.Context, mode string, n, budget int, drop float64, dur, reconcile, poll time.Duration) (result, error) {
	start := time.Now()
	res := result{Mode: mode, Trainings: n, Budget: budget, TrainingSeconds: dur.Seconds()}
	faults := fakereplicate.Faults{FailRate: 0.1}
	if mode == "webhook" {
		faults.DropWebhooks = drop
		res.DropWebhooks = drop
	}
	sim, err := fakereplicate.New(fakereplicate.Options{Token: "r8_bench", Duration: dur, Faults: faults, Seed: 42})
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
	addr := l.Addr().String()
	l.Close()
	webhooks := "off"
	if mode == "webhook" {
		webhooks = "on"
	}
	vars := map[string]string{
		"ADDR": addr, "APP_URL": "http://" + addr, "TRAINHOOK_WEBHOOKS": webhooks,
		"DATABASE_URL": filepath.Join(dir, "bench.db"), "REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_bench",
		"REPLICATE_WEBHOOK_SECRET": sim.Key().String(), "TRAINHOOK_API_RATE_LIMIT": strconv.Itoa(budget),
		"TRAINHOOK_POLL_INTERVAL": poll.String(), "TRAINHOOK_RECONCILE_AFTER": reconcile.String(),
		"TRAINHOOK_LOG_LEVEL": "error",
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		return res, err
	}
	a, err := app.Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() { stop(); <-done }()

	// The app starts its trainings itself and hands them over by id, so the
	// whole budget measured below is trainhook's.
	creator, err := replicate.NewClient(replicate.ClientOptions{BaseURL: simURL, Token: "r8_bench", RateLimit: 1 << 20})
	if err != nil {
		return res, err
	}
	if _, err := creator.CreateModel(ctx, replicate.CreateModelRequest{Owner: sim.Username(), Name: "bench-lora", Visibility: "private", Hardware: "cpu"}); err != nil {
		return res, err
	}
	trainer := fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion
	req := replicate.CreateTrainingRequest{Destination: sim.Username() + "/bench-lora", Input: json.RawMessage(`{"steps":1000,"trigger_word":"ZKX"}`)}
	if mode == "webhook" {
		req.Webhook, req.WebhookEventsFilter = cfg.WebhookURL, []string{"start", "completed"}
	}
	ids := make([]string, n)
	for i := range ids {
		t, err := creator.CreateTraining(ctx, trainer, req)
		if err != nil {
			return res, fmt.Errorf("create training %d: %w", i, err)
		}
		ids[i] = t.ID
	}
	// From here on every API request is trainhook's. The simulator counts
	// the most requests in any 60 s window; that is the budget check.
	sim.ResetStats()
	for _, id := range ids {
		if _, _, err := a.Service.Register(ctx, service.RegisterRequest{TrainingID: id}); err != nil {
			return res, fmt.Errorf("register %s: %w", id, err)
		}
	}

	// Wait until every model is final.
	for {
		counts, err := a.Store.CountModels(ctx)
		if err != nil {
			return res, err
		}
		if counts[training.Ready]+counts[training.Failed]+counts[training.Canceled] == n {
			break
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("gave up with %v", counts)
		case <-time.After(250 * time.Millisecond):
		}
	}
	st := sim.Stats()
	res.APICalls, res.MaxPerMinute, res.Throttled = st.Requests, st.MaxPerMinute, st.Throttled
	res.CallsPer = float64(st.Requests) / float64(n)
	res.BudgetKept = st.Throttled == 0 && st.MaxPerMinute <= budget

	var delays []float64
	before := ""
	for {
		page, err := a.Store.ListModels(ctx, store.ModelFilter{Before: before, Limit: 1000})
		if err != nil {
			return res, err
		}
		for _, m := range page {
			truth, ok := sim.Training(m.TrainingID)
			want, _ := training.MapRemote(truth.Status)
			if !ok || m.Status != want || want == training.Ready && !strings.Contains(string(m.Output), truth.OutputVersion) || want == training.Failed && m.Error != truth.Error {
				res.Wrong++
				continue
			}
			h, err := a.Store.History(ctx, m.ID)
			if err != nil {
				return res, err
			}
			for _, e := range h {
				if e.Decision == training.Move && e.To.Terminal() && truth.CompletedAt != nil {
					delays = append(delays, e.At.Sub(*truth.CompletedAt).Seconds())
					if e.Source == training.SourceWebhook {
						res.ByWebhook++
					} else {
						res.ByPoll++
					}
				}
			}
		}
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].ID
	}
	slices.Sort(delays)
	if len(delays) > 0 {
		res.DelayP50 = delays[len(delays)/2]
		res.DelayP99 = delays[min(len(delays)-1, len(delays)*99/100)]
		res.DelayMax = delays[len(delays)-1]
	}
	res.WallSeconds = time.Since(start).Seconds()
	return res, nil
}
