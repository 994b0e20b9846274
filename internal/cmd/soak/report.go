package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/training"
)

// report is one mode's figures. MustBeZero holds the figures the soak fails on.
type report struct {
	mu sync.Mutex

	Mode             string  `json:"mode"`
	Database         string  `json:"database"`
	Instances        int     `json:"instances"`
	Trainings        int     `json:"trainings"`
	TrainingDuration string  `json:"training_duration"`
	Seed             uint64  `json:"seed"`
	WallSeconds      float64 `json:"wall_seconds"`
	Kills            int     `json:"kills"`
	Dir              string  `json:"dir,omitempty"`

	// Final outcomes per the simulator's ground truth.
	Outcomes map[string]int `json:"truth_outcomes"`

	MustBeZero struct {
		WrongOrMissing    int `json:"wrong_or_missing_final_states"`
		StatusRegressions int `json:"status_regressions"`
		AppliedTwice      int `json:"transitions_applied_twice"`
		TwoTrainings      int `json:"models_with_two_trainings"`
		Conflicts         int `json:"conflicts_flagged"`
		ExtraModels       int `json:"extra_models"`
		OrphanTrainings   int `json:"trainings_of_no_model"`
		Panics            int `json:"panics"`
		DataRaces         int `json:"data_races"`
		// Notifications (with --notify): a final status never answered
		// 2xx, a retry whose body differs from its webhook-id's first, a
		// model's event first arriving after a later one, a request that
		// failed verification.
		NotificationsLost      int `json:"notifications_lost"`
		NotificationBodyChange int `json:"notification_body_changed"`
		NotificationOrder      int `json:"notification_order_violated"`
		NotificationBadSig     int `json:"notification_failed_verification"`
	} `json:"must_be_zero"`

	Notify struct {
		On                  bool    `json:"on"`
		Received            int     `json:"requests_received"`
		Accepted            int     `json:"answered_2xx"`
		Events              int     `json:"events"`
		Retries             int     `json:"retried_requests"`
		Duplicates          int     `json:"retried_duplicates_2xx"`
		Held                int     `json:"held_past_timeout"`
		DrainedAfterSeconds float64 `json:"drained_after_s"`
		LagP50              float64 `json:"lag_p50_s"`
		LagP99              float64 `json:"lag_p99_s"`
		LagMax              float64 `json:"lag_max_s"`
	} `json:"notifications"`

	API struct {
		Calls           int                    `json:"calls"`
		PerTraining     float64                `json:"calls_per_training"`
		Budget          int                    `json:"budget_per_minute"`
		SimRateLimit    int                    `json:"simulator_rate_limit_per_minute"`
		MaxInAny60s     int                    `json:"max_requests_in_any_60s"`
		BudgetExceeded  bool                   `json:"budget_exceeded"`
		Received429     int                    `json:"received_429"`
		Throttled       int                    `json:"throttled_by_simulator_limit"`
		InjectedErrors  int                    `json:"injected_errors"`
		ByEndpoint      map[string]int         `json:"by_endpoint"`
		ByEndpointCodes map[string]map[int]int `json:"by_endpoint_and_code"`
	} `json:"api"`

	Delay struct {
		P50       float64        `json:"p50_s"`
		P99       float64        `json:"p99_s"`
		Max       float64        `json:"max_s"`
		SettledBy map[string]int `json:"settled_by"`
		// PollP99 is the p99 of the trainings settled by a poll; in
		// webhook mode those are the ones whose webhook was dropped.
		PollP50 float64 `json:"poll_p50_s"`
		PollP99 float64 `json:"poll_p99_s"`
	} `json:"detection_delay"`

	Webhooks struct {
		Attempts  int `json:"attempts"`
		Delivered int `json:"delivered_2xx"`
		Failed    int `json:"failed"`
		Dropped   int `json:"dropped"`
	} `json:"webhooks"`

	Drive struct {
		StartRetries     int `json:"start_retries"`
		StartsInDoubt    int `json:"starts_in_doubt_202"`
		StartsRefused    int `json:"starts_refused_422"`
		CancelsRequested int `json:"cancels_requested"`
		CancelsConfirmed int `json:"cancels_confirmed"`
		CancelsTooLate   int `json:"cancels_too_late"`
		CancelsGaveUp    int `json:"cancels_gave_up"`
	} `json:"drive"`

	QuiescentAfterDriveSeconds float64        `json:"quiescent_after_drive_s"`
	LogErrors                  map[string]int `json:"log_error_lines"`
	Problems                   []string       `json:"problems,omitempty"`
	Errors                     []string       `json:"errors,omitempty"`
}

func newReport(o options, mode string) *report {
	r := &report{Mode: mode, Instances: o.instances, Trainings: o.n, TrainingDuration: o.duration.String(), Outcomes: map[string]int{}}
	r.API.Budget, r.API.SimRateLimit = o.budget, o.simRateLimit
	r.Delay.SettledBy = map[string]int{}
	return r
}

func (r *report) count(p *int) {
	r.mu.Lock()
	*p++
	r.mu.Unlock()
}

// problem records an example of something wrong (the first 30).
func (r *report) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.Problems) < 30 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Passed reports whether every must-be-zero figure is zero, the budget was
// kept and the soak ran to the end.
func (r *report) Passed() bool {
	z := r.MustBeZero
	return len(r.Errors) == 0 && !r.API.BudgetExceeded && z.WrongOrMissing == 0 && z.StatusRegressions == 0 && z.AppliedTwice == 0 &&
		z.TwoTrainings == 0 && z.Conflicts == 0 && z.ExtraModels == 0 && z.OrphanTrainings == 0 && z.Panics == 0 && z.DataRaces == 0 &&
		z.NotificationsLost == 0 && z.NotificationBodyChange == 0 && z.NotificationOrder == 0 && z.NotificationBadSig == 0
}

func (r *report) print(w io.Writer) {
	verdict := "PASS"
	if !r.Passed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\n== soak, %s mode: %s ==\n", r.Mode, verdict)
	fmt.Fprintf(w, "  %d trainings of %s, %d instance(s) on %s, %d kills, %.0f s (quiescent %.0f s after the last start), seed %d\n",
		r.Trainings, r.TrainingDuration, r.Instances, r.Database, r.Kills, r.WallSeconds, r.QuiescentAfterDriveSeconds, r.Seed)
	fmt.Fprintf(w, "  truth: %s\n", kv(r.Outcomes))
	z := r.MustBeZero
	fmt.Fprintf(w, "  must be 0: wrong or missing final states %d, status regressions %d, transitions applied twice %d, models with two trainings %d,\n",
		z.WrongOrMissing, z.StatusRegressions, z.AppliedTwice, z.TwoTrainings)
	fmt.Fprintf(w, "             conflicts flagged %d, extra models %d, trainings of no model %d, panics %d, data races %d\n",
		z.Conflicts, z.ExtraModels, z.OrphanTrainings, z.Panics, z.DataRaces)
	if n := r.Notify; n.On {
		fmt.Fprintf(w, "             notifications lost %d, bodies changed on retry %d, out of order %d, failed verification %d\n",
			z.NotificationsLost, z.NotificationBodyChange, z.NotificationOrder, z.NotificationBadSig)
		fmt.Fprintf(w, "  notifications: %d events, %d requests (%d retries, %d held past the timeout), %d answered 2xx (%d retried duplicates); drained %.0f s after quiescence; lag commit to first 2xx p50 %.2f s, p99 %.2f s, max %.2f s\n",
			n.Events, n.Received, n.Retries, n.Held, n.Accepted, n.Duplicates, n.DrainedAfterSeconds, n.LagP50, n.LagP99, n.LagMax)
	}
	a := r.API
	fmt.Fprintf(w, "  API: %d calls, %.2f per training; most in any 60 s %d of a budget of %d (exceeded: %v); 429s received %d (%d from the simulator's limit of %d/min); injected errors %d\n",
		a.Calls, a.PerTraining, a.MaxInAny60s, a.Budget, a.BudgetExceeded, a.Received429, a.Throttled, a.SimRateLimit, a.InjectedErrors)
	fmt.Fprintf(w, "       by endpoint: %s\n", kv(a.ByEndpoint))
	d := r.Delay
	fmt.Fprintf(w, "  detection delay: p50 %.2f s, p99 %.2f s, max %.2f s; settled by %s; by poll: p50 %.2f s, p99 %.2f s\n",
		d.P50, d.P99, d.Max, kv(d.SettledBy), d.PollP50, d.PollP99)
	wh := r.Webhooks
	fmt.Fprintf(w, "  webhooks: %d attempts, %d answered 2xx, %d failed (trainhook down), %d dropped\n", wh.Attempts, wh.Delivered, wh.Failed, wh.Dropped)
	dr := r.Drive
	fmt.Fprintf(w, "  drive: start retries %d, starts in doubt (202) %d, refused %d; cancels %d: confirmed %d, too late %d, gave up %d\n",
		dr.StartRetries, dr.StartsInDoubt, dr.StartsRefused, dr.CancelsRequested, dr.CancelsConfirmed, dr.CancelsTooLate, dr.CancelsGaveUp)
	if len(r.LogErrors) > 0 {
		fmt.Fprintf(w, "  error lines in trainhook's logs: %s\n", kv(r.LogErrors))
	}
	if r.Dir != "" {
		fmt.Fprintf(w, "  logs and database kept in %s\n", r.Dir)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}

func kv[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %v", k, m[k])
	}
	return strings.Join(parts, ", ")
}

type detail struct {
	training.Model
	History []training.HistoryEntry `json:"history"`
}

// check compares every model with the simulator's ground truth and fills
// in the report.
func (r *runState) check(ctx context.Context) error {
	rep := r.rep
	rep.Kills = int(r.kills.Load())
	truths := r.sim.Trainings()
	byDest := map[string][]fakereplicate.TrainingTruth{}
	for _, t := range truths {
		byDest[t.Destination] = append(byDest[t.Destination], t)
	}

	all, err := r.listAll(ctx)
	if err != nil {
		return fmt.Errorf("list models: %w", err)
	}
	ours := map[string]*tracked{}
	dests := map[string]bool{}
	for _, m := range r.models {
		dests[m.dest] = true
		if m.id != "" {
			ours[m.id] = m
		}
	}
	for _, m := range all {
		if ours[m.ID] == nil {
			rep.MustBeZero.ExtraModels++
			rep.problem("model %s (%s) was not asked for by the soak", m.ID, m.Destination)
		}
	}
	for _, t := range truths {
		if !dests[t.Destination] {
			rep.MustBeZero.OrphanTrainings++
			rep.problem("training %s into %s belongs to no model of the soak", t.ID, t.Destination)
		}
	}

	// Every model with its history, eight at a time.
	details := make([]*detail, len(r.models))
	var wg sync.WaitGroup
	jobs := make(chan int)
	var fetchErr error
	var errMu sync.Mutex
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var d detail
				if err := r.getJSON(ctx, "/api/models/"+r.models[i].id, &d); err != nil {
					errMu.Lock()
					fetchErr = err
					errMu.Unlock()
					continue
				}
				details[i] = &d
			}
		}()
	}
	for i, m := range r.models {
		if m.id != "" {
			jobs <- i
		}
	}
	close(jobs)
	wg.Wait()
	if fetchErr != nil {
		rep.Errors = append(rep.Errors, "fetch models: "+fetchErr.Error())
	}

	var delays, pollDelays []float64
	for i, m := range r.models {
		d := details[i]
		ts := byDest[m.dest]
		if len(ts) > 1 {
			rep.MustBeZero.TwoTrainings++
			rep.problem("model %s (%s) has %d trainings", m.id, m.dest, len(ts))
		}
		if d == nil {
			rep.MustBeZero.WrongOrMissing++
			rep.problem("model %d (%s) is missing: %s", m.i, m.dest, m.startErr)
			continue
		}
		if d.Flagged {
			rep.MustBeZero.Conflicts++
			rep.problem("model %s is flagged with a conflict: %s", d.ID, historyText(d.History))
		}
		// History: no move out of a final state, one move into one.
		finalMoves := 0
		var final *training.HistoryEntry
		for j := range d.History {
			h := &d.History[j]
			if h.Decision != training.Move {
				continue
			}
			if h.From.Terminal() {
				rep.MustBeZero.StatusRegressions++
				rep.problem("model %s moved out of %s: %s", d.ID, h.From, historyText(d.History))
			}
			if h.To.Terminal() {
				finalMoves++
				if final == nil {
					final = h
				}
			}
		}
		if finalMoves > 1 {
			rep.MustBeZero.AppliedTwice++
			rep.problem("model %s moved to a final status %d times: %s", d.ID, finalMoves, historyText(d.History))
		}

		if len(ts) == 0 {
			if m.refused && d.Status == training.Failed {
				rep.Outcomes["refused by Replicate"]++
				continue
			}
			rep.MustBeZero.WrongOrMissing++
			rep.problem("model %s (%s) is %s but the simulator has no training for it", d.ID, m.dest, d.Status)
			continue
		}
		t := ts[0]
		rep.Outcomes[t.Status]++
		if why := mismatch(d, t); why != "" {
			rep.MustBeZero.WrongOrMissing++
			rep.problem("model %s (%s): %s", d.ID, m.dest, why)
			continue
		}
		if final != nil && t.CompletedAt != nil {
			s := final.At.Sub(*t.CompletedAt).Seconds()
			delays = append(delays, s)
			rep.Delay.SettledBy[string(final.Source)]++
			if final.Source == training.SourcePoll {
				pollDelays = append(pollDelays, s)
			}
		}
	}
	rep.Delay.P50, rep.Delay.P99, rep.Delay.Max = quantiles(delays)
	rep.Delay.PollP50, rep.Delay.PollP99, _ = quantiles(pollDelays)

	st := r.sim.Stats()
	rep.API.Calls = st.Requests
	rep.API.PerTraining = float64(st.Requests) / float64(r.o.n)
	rep.API.MaxInAny60s = st.MaxPerMinute
	rep.API.BudgetExceeded = st.MaxPerMinute > r.o.budget
	rep.API.Received429 = count429(st)
	rep.API.Throttled = st.Throttled
	rep.API.InjectedErrors = st.InjectedErrors
	rep.API.ByEndpoint = map[string]int{}
	for ep := range st.Calls {
		rep.API.ByEndpoint[ep] = st.Total(ep)
	}
	rep.API.ByEndpointCodes = st.Calls
	rep.Webhooks.Attempts, rep.Webhooks.Delivered = st.WebhookAttempts, st.WebhooksDelivered
	rep.Webhooks.Failed, rep.Webhooks.Dropped = st.WebhooksFailed, st.WebhooksDropped
	rep.MustBeZero.Panics, rep.MustBeZero.DataRaces, rep.LogErrors = r.cluster.scanLogs()
	if r.recv != nil {
		finals := map[string]training.Status{}
		for _, d := range details {
			if d != nil {
				finals[d.ID] = d.Status
			}
		}
		arrivals, badSig, badExamples, holds := r.recv.snapshot()
		f := checkNotifications(arrivals, finals)
		rep.fillNotify(f, badSig, holds)
		for _, p := range append(badExamples, f.Problems...) {
			rep.problem("notification: %s", p)
		}
	}
	return nil
}

func (rep *report) fillNotify(f notifyFigures, badSig, holds int) {
	n := &rep.Notify
	n.On = true
	n.Received, n.Accepted, n.Events, n.Retries, n.Duplicates, n.Held = f.Received, f.Accepted, f.Events, f.Retries, f.Duplicates, holds
	n.LagP50, n.LagP99, n.LagMax = quantiles(f.Lag)
	z := &rep.MustBeZero
	z.NotificationsLost, z.NotificationBodyChange, z.NotificationOrder, z.NotificationBadSig = f.Lost, f.BodyChange, f.OutOfOrder, badSig
}

// mismatch says how a final model differs from its training's truth, or "".
func mismatch(d *detail, t fakereplicate.TrainingTruth) string {
	want, ok := training.MapRemote(t.Status)
	switch {
	case !ok || !want.Terminal():
		return fmt.Sprintf("the simulator's training %s is still %s", t.ID, t.Status)
	case d.TrainingID != t.ID:
		return fmt.Sprintf("tracks training %q, but the training into its destination is %s", d.TrainingID, t.ID)
	case d.Status != want:
		return fmt.Sprintf("is %s, but training %s %s", d.Status, t.ID, t.Status)
	}
	switch want {
	case training.Ready:
		var out struct{ Version, Weights string }
		if err := json.Unmarshal(d.Output, &out); err != nil || out.Version != t.OutputVersion || out.Weights != t.Weights {
			return fmt.Sprintf("output %s, want version %s and weights %s", d.Output, t.OutputVersion, t.Weights)
		}
	case training.Failed:
		if t.Status == "failed" && d.Error != t.Error || d.Error == "" {
			return fmt.Sprintf("error %q, want %q", d.Error, t.Error)
		}
	}
	if d.CompletedAt == nil || t.CompletedAt != nil && d.CompletedAt.Sub(*t.CompletedAt).Abs() > time.Millisecond {
		return fmt.Sprintf("completed_at %v, want %v", d.CompletedAt, t.CompletedAt)
	}
	return ""
}

func historyText(h []training.HistoryEntry) string {
	parts := make([]string, len(h))
	for i, e := range h {
		parts[i] = fmt.Sprintf("%s→%s %s by %s %s", e.From, e.To, e.Decision, e.Source, e.SourceRef)
	}
	return strings.Join(parts, "; ")
}

func quantiles(v []float64) (p50, p99, maxV float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	return v[len(v)/2], v[min(len(v)-1, len(v)*99/100)], v[len(v)-1]
}
