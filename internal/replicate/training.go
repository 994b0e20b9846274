package replicate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// Training is Replicate's training object, as GET /v1/trainings/{id} returns it
// and as a webhook delivers it. A prediction has the same shape. Unknown fields
// are ignored; absent and null fields decode to their zero values.
type Training struct {
	ID                  string            `json:"id"`
	Model               string            `json:"model,omitempty"`
	Version             string            `json:"version,omitempty"`
	Input               json.RawMessage   `json:"input,omitempty"`
	Output              json.RawMessage   `json:"output,omitempty"`
	Logs                string            `json:"logs"`
	Error               json.RawMessage   `json:"error,omitempty"`
	Status              string            `json:"status"`
	Source              string            `json:"source,omitempty"`
	DataRemoved         bool              `json:"data_removed"`
	CreatedAt           *time.Time        `json:"created_at,omitempty"`
	StartedAt           *time.Time        `json:"started_at"`
	CompletedAt         *time.Time        `json:"completed_at"`
	Metrics             *Metrics          `json:"metrics,omitempty"`
	URLs                map[string]string `json:"urls,omitempty"`
	Webhook             string            `json:"webhook,omitempty"`
	WebhookEventsFilter []string          `json:"webhook_events_filter,omitempty"`
}

// Metrics are a finished training's timings, in seconds.
type Metrics struct {
	PredictTime *float64 `json:"predict_time,omitempty"`
	TotalTime   *float64 `json:"total_time,omitempty"`
}

// TrainingOutput is what a succeeded training produces.
type TrainingOutput struct {
	Version string `json:"version"` // destination owner/name:<64 hex>
	Weights string `json:"weights"` // URL of trained_model.tar
}

// ErrorText returns the error as text: Replicate sends a string, but a
// payload with another JSON value is kept as that JSON rather than lost.
func (t Training) ErrorText() string {
	e := bytes.TrimSpace(t.Error)
	if len(e) == 0 || string(e) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(e, &s) == nil {
		return s
	}
	return string(e)
}

// Terminal reports whether Replicate considers the training finished. An
// unknown status with completed_at set is treated as finished too.
func (t Training) Terminal() bool {
	return training.RemoteTerminal(t.Status) || t.CompletedAt != nil && !knownRunning(t.Status)
}

func knownRunning(s string) bool {
	return s == training.RemoteStarting || s == training.RemoteProcessing
}

// ParseTraining decodes a training or prediction payload and checks the
// fields trainhook relies on: id and status must be non-empty strings.
func ParseTraining(body []byte) (Training, error) {
	var t Training
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&t); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return Training{}, fmt.Errorf("field %q has the wrong type: got JSON %s, want %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return Training{}, fmt.Errorf("body is not a JSON training object: %w", err)
	}
	if dec.More() {
		return Training{}, errors.New("body has data after the JSON object")
	}
	if strings.TrimSpace(t.ID) == "" {
		return Training{}, errors.New(`missing "id": a training payload needs the training id`)
	}
	if strings.TrimSpace(t.Status) == "" {
		return Training{}, errors.New(`missing "status": a training payload needs its status`)
	}
	if len(t.ID) > 128 {
		return Training{}, errors.New(`"id" is longer than 128 characters`)
	}
	if o := bytes.TrimSpace(t.Output); string(o) == "null" {
		t.Output = nil
	}
	return t, nil
}

// Observation turns the training object into the report that Apply consumes.
func (t Training) Observation(src training.Source, ref string, at time.Time) training.Observation {
	return training.Observation{
		TrainingID:  t.ID,
		Remote:      t.Status,
		Output:      t.Output,
		Error:       t.ErrorText(),
		Logs:        t.Logs,
		StartedAt:   t.StartedAt,
		CompletedAt: t.CompletedAt,
		Source:      src,
		SourceRef:   ref,
		At:          at,
	}
}
