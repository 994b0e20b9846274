package fakereplicate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"
)

// Delivery is one webhook delivery attempt, or a message that a fault
// dropped, and how the receiver answered.
type Delivery struct {
	Seq            int       `json:"seq"`
	WebhookID      string    `json:"webhook_id"`
	TrainingID     string    `json:"training_id"`
	Event          string    `json:"event"`           // start, logs, output or completed
	TrainingStatus string    `json:"training_status"` // status in the body
	URL            string    `json:"url"`
	Attempt        int       `json:"attempt"` // 1 for the first; 0 when dropped
	Duplicate      bool      `json:"duplicate,omitempty"`
	Dropped        bool      `json:"dropped,omitempty"`
	At             time.Time `json:"at"`
	StatusCode     int       `json:"status_code,omitempty"` // 0 when no answer
	Error          string    `json:"error,omitempty"`       // why there was no answer
	WillRetry      bool      `json:"will_retry,omitempty"`
}

// OK reports whether the receiver answered 2xx.
func (d Delivery) OK() bool { return d.StatusCode >= 200 && d.StatusCode < 300 }

// maxDeliveries bounds the delivery log; the oldest half goes past it.
const maxDeliveries = 200_000

// record appends to the delivery log. s.mu is held.
func (s *Server) record(d Delivery) {
	s.stats.deliverySeq++
	d.Seq = s.stats.deliverySeq
	if len(s.deliveries) >= maxDeliveries {
		s.deliveries = append(s.deliveries[:0], s.deliveries[maxDeliveries/2:]...)
	}
	s.deliveries = append(s.deliveries, d)
}

// Deliveries returns the delivery log, oldest first. trainingID "" means all.
func (s *Server) Deliveries(trainingID string) []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Delivery{}
	for _, d := range s.deliveries {
		if trainingID == "" || d.TrainingID == trainingID {
			out = append(out, d)
		}
	}
	return out
}

// Stats counts API calls and webhook deliveries since start or ResetStats.
type Stats struct {
	// Requests is every API request received under /v1/.
	Requests int `json:"requests"`
	// Calls counts responses by endpoint (e.g. "trainings.create") and
	// HTTP status.
	Calls map[string]map[int]int `json:"calls"`
	// Throttled is the number of 429s from the rate limit (injected 429s
	// are in InjectedErrors).
	Throttled      int `json:"throttled"`
	InjectedErrors int `json:"injected_errors"`
	// MaxPerMinute is the most requests seen in any 60 s window.
	MaxPerMinute int `json:"max_requests_per_60s"`

	WebhookAttempts   int `json:"webhook_attempts"`
	WebhooksDelivered int `json:"webhooks_delivered"` // attempts answered 2xx
	WebhooksFailed    int `json:"webhooks_failed"`
	WebhooksDropped   int `json:"webhooks_dropped"`

	deliverySeq int
}

// Count is how many calls to endpoint were answered with code.
func (st Stats) Count(endpoint string, code int) int { return st.Calls[endpoint][code] }

// Total is how many calls endpoint received, whatever the answer.
func (st Stats) Total(endpoint string) int {
	n := 0
	for _, c := range st.Calls[endpoint] {
		n += c
	}
	return n
}

type statsState = Stats

func (st *Stats) reset() {
	seq := st.deliverySeq
	*st = Stats{Calls: map[string]map[int]int{}, deliverySeq: seq}
}

func (st *Stats) record(endpoint string, code int) {
	if st.Calls[endpoint] == nil {
		st.Calls[endpoint] = map[int]int{}
	}
	st.Calls[endpoint][code]++
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Calls = make(map[string]map[int]int, len(s.stats.Calls))
	for k, v := range s.stats.Calls {
		st.Calls[k] = maps.Clone(v)
	}
	return st
}

// ResetStats zeroes the counters and empties the delivery log. Trainings,
// models, the rate-limit window and faults are kept.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.reset()
	s.allWin.clear()
	s.deliveries = nil
}

// TrainingTruth is what the simulator knows of a training, including what
// Replicate's API does not say (destination, the scheduled outcome).
type TrainingTruth struct {
	ID               string     `json:"id"`
	Model            string     `json:"model"`
	Version          string     `json:"version"`
	Destination      string     `json:"destination"`
	Webhook          string     `json:"webhook,omitempty"`
	WebhookEvents    []string   `json:"webhook_events,omitempty"` // events that are sent
	Status           string     `json:"status"`
	CreatedAt        time.Time  `json:"created_at"`
	StartedAt        *time.Time `json:"started_at"`
	CompletedAt      *time.Time `json:"completed_at"`
	ScheduledOutcome string     `json:"scheduled_outcome"`
	ScheduledEnd     time.Time  `json:"scheduled_end"`
	Forced           bool       `json:"forced"` // canceled or completed through /_sim/
	Error            string     `json:"error,omitempty"`
	OutputVersion    string     `json:"output_version,omitempty"` // destination:hash once succeeded
	Weights          string     `json:"weights,omitempty"`
	Progress         float64    `json:"progress"` // 0..1 through the run
}

func (t *simTraining) truth(now time.Time) TrainingTruth {
	st := t.stateAt(now)
	tt := TrainingTruth{
		ID: t.id, Model: t.model, Version: t.version, Destination: t.destination, Webhook: t.webhook,
		Status: st.status, CreatedAt: t.createdAt, StartedAt: st.startedAt, CompletedAt: st.completedAt,
		ScheduledOutcome: t.outcome, ScheduledEnd: t.endAt, Forced: t.forced != nil, Error: st.err,
		Progress: st.progress,
	}
	for _, e := range allEvents {
		if t.events[e] {
			tt.WebhookEvents = append(tt.WebhookEvents, e)
		}
	}
	if st.output != nil {
		tt.OutputVersion, tt.Weights = st.output["version"], st.output["weights"]
	}
	return tt
}

// Trainings returns the ground truth of every training, oldest first.
func (s *Server) Trainings() []TrainingTruth {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	out := make([]TrainingTruth, len(s.trainings))
	for i, t := range s.trainings {
		out[i] = t.truth(now)
	}
	return out
}

// Training returns one training's ground truth.
func (s *Server) Training(id string) (TrainingTruth, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.byID[id]
	if t == nil {
		return TrainingTruth{}, false
	}
	return t.truth(s.clock.Now()), true
}

// Errors of Complete.
var (
	ErrUnknownTraining = errors.New("no training with that id")
	ErrFinished        = errors.New("the training has already finished")
)

// Complete ends a running training now with status (succeeded, failed,
// canceled or aborted) and, for failed, errMsg (a realistic one when
// empty). Its terminal webhook goes out as usual. A finished training is
// refused with ErrFinished, and aborted is refused once the training has
// started, since aborted means it never did.
func (s *Server) Complete(id, status, errMsg string) error {
	if !terminal(status) {
		return fmt.Errorf("status %q is not one of succeeded, failed, canceled, aborted", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.byID[id]
	if t == nil {
		return ErrUnknownTraining
	}
	now := s.clock.Now()
	st := t.stateAt(now)
	if terminal(st.status) {
		return fmt.Errorf("%w (%s)", ErrFinished, st.status)
	}
	if status == statusAborted && st.startedAt != nil {
		return fmt.Errorf("%w: aborted means it ended before it started, and it is processing", ErrFinished)
	}
	if status == statusFailed && errMsg == "" {
		errMsg = failures[1].err
	}
	if status != statusFailed {
		errMsg = ""
	}
	s.force(t, status, errMsg, now)
	return nil
}

func (s *Server) handleSimIndex(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"username":        s.opts.Username,
		"key_fingerprint": s.key.Fingerprint(),
		"endpoints": []string{
			"GET /_sim/trainings", "GET /_sim/trainings/{id}", "POST /_sim/trainings/{id}/complete",
			"GET /_sim/deliveries?training_id=", "GET /_sim/stats", "POST /_sim/reset",
			"GET /_sim/faults", "POST /_sim/faults", "POST /_sim/fail-next",
		},
	})
}

func (s *Server) handleSimTrainings(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Trainings())
}

func (s *Server) handleSimTraining(w http.ResponseWriter, r *http.Request) {
	t, ok := s.Training(r.PathValue("id"))
	if !ok {
		writeNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleSimComplete(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	}
	if err := decodeStrict(r, &body); err != nil {
		writeProblem(w, http.StatusBadRequest, problem{Title: "Bad request", Detail: err.Error()})
		return
	}
	id := r.PathValue("id")
	switch err := s.Complete(id, body.Status, body.Error); {
	case errors.Is(err, ErrUnknownTraining):
		writeNotFound(w)
	case errors.Is(err, ErrFinished):
		writeProblem(w, http.StatusConflict, problem{Title: "Conflict", Detail: err.Error()})
	case err != nil:
		writeProblem(w, http.StatusUnprocessableEntity, problem{Title: "Invalid request", Detail: err.Error()})
	default:
		t, _ := s.Training(id)
		writeJSON(w, http.StatusOK, t)
	}
}

func (s *Server) handleSimDeliveries(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Deliveries(r.URL.Query().Get("training_id")))
}

func (s *Server) handleSimStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleSimReset(w http.ResponseWriter, r *http.Request) {
	s.ResetStats()
	w.WriteHeader(http.StatusNoContent)
}

// faultsJSON is Faults on the wire: the delay is a Go duration string
// ("1.5s"), and absent members leave a value unchanged when decoding.
type faultsJSON struct {
	FailRate         *float64 `json:"fail_rate,omitempty"`
	AbortRate        *float64 `json:"abort_rate,omitempty"`
	DropWebhooks     *float64 `json:"drop_webhooks,omitempty"`
	DupWebhooks      *float64 `json:"dup_webhooks,omitempty"`
	ReorderWebhooks  *bool    `json:"reorder_webhooks,omitempty"`
	DelayWebhooks    *string  `json:"delay_webhooks,omitempty"`
	APIErrorRate     *float64 `json:"api_error_rate,omitempty"`
	RateLimit        *int     `json:"rate_limit,omitempty"`
	RetryAfterHeader *bool    `json:"retry_after_header,omitempty"`
}

// MarshalJSON writes every member, the delay as a duration string.
func (f Faults) MarshalJSON() ([]byte, error) {
	d := f.DelayWebhooks.String()
	return json.Marshal(faultsJSON{&f.FailRate, &f.AbortRate, &f.DropWebhooks, &f.DupWebhooks, &f.ReorderWebhooks, &d, &f.APIErrorRate, &f.RateLimit, &f.RetryAfterHeader})
}

// UnmarshalJSON sets the members present and leaves the others, so
// decoding {"api_error_rate":0.2} into the current Faults changes one
// setting. Unknown members are refused.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	for _, m := range []struct {
		dst *float64
		src *float64
	}{{&f.FailRate, j.FailRate}, {&f.AbortRate, j.AbortRate}, {&f.DropWebhooks, j.DropWebhooks}, {&f.DupWebhooks, j.DupWebhooks}, {&f.APIErrorRate, j.APIErrorRate}} {
		if m.src != nil {
			*m.dst = *m.src
		}
	}
	if j.ReorderWebhooks != nil {
		f.ReorderWebhooks = *j.ReorderWebhooks
	}
	if j.RetryAfterHeader != nil {
		f.RetryAfterHeader = *j.RetryAfterHeader
	}
	if j.RateLimit != nil {
		f.RateLimit = *j.RateLimit
	}
	if j.DelayWebhooks != nil {
		d, err := time.ParseDuration(*j.DelayWebhooks)
		if err != nil {
			return fmt.Errorf("delay_webhooks: %w (use a Go duration such as \"1.5s\")", err)
		}
		f.DelayWebhooks = d
	}
	return nil
}

func (s *Server) handleSimFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

// handleSimSetFaults changes the members given and leaves the rest.
func (s *Server) handleSimSetFaults(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	if err := decodeStrict(r, &f); err != nil {
		writeProblem(w, http.StatusBadRequest, problem{Title: "Bad request", Detail: err.Error()})
		return
	}
	if err := f.validate(); err != nil {
		writeProblem(w, http.StatusUnprocessableEntity, problem{Title: "Invalid faults", Detail: err.Error()})
		return
	}
	s.faults = f
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) handleSimFailNext(w http.ResponseWriter, r *http.Request) {
	var f FailSpec
	if err := decodeStrict(r, &f); err != nil {
		writeProblem(w, http.StatusBadRequest, problem{Title: "Bad request", Detail: err.Error()})
		return
	}
	if err := s.FailNext(f); err != nil {
		writeProblem(w, http.StatusUnprocessableEntity, problem{Title: "Invalid request", Detail: err.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func decodeStrict(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// AddTraining creates a running training with the given id, as another
// program using the same account would: trainhook did not start it, and it
// has no webhook. Tests use it to register a training by id. It fails if
// the id is taken.
func (s *Server) AddTraining(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" || s.byID[id] != nil {
		return fmt.Errorf("training id %q is empty or taken", id)
	}
	t := s.newTraining(FluxTrainer, FluxTrainerVersion, s.opts.Username+"/external", json.RawMessage(`{}`), "", nil, s.baseURL)
	delete(s.byID, t.id)
	t.id = id
	s.byID[id] = t
	return nil
}
