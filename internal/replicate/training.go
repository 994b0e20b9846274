package replicate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

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
	if err := decodeStrict(body, &t); err != nil {
		return Training{}, err
	}
	return t, t.check()
}

// report is the part of a training a webhook delivery is applied from.
// Decoding only these fields is a third cheaper than the whole object,
// which matters at thousands of deliveries a second.
type report struct {
	ID     string          `json:"id"`
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Logs   string          `json:"logs"`
	Error  json.RawMessage `json:"error"`
	// Times are read by encoding/json, as everywhere else, so both paths
	// accept the same timestamps.
	StartedAt   json.RawMessage `json:"started_at"`
	CompletedAt json.RawMessage `json:"completed_at"`
}

// reportOptions make JSON v2 read a payload as encoding/json does (names in
// any letter case, duplicate names, invalid UTF-8 replaced), only about
// three times faster: the webhook path decodes a multi-kilobyte log on
// every delivery.
var reportOptions = jsonv2.JoinOptions(
	jsonv2.MatchCaseInsensitiveNames(true),
	jsontext.AllowDuplicateNames(true),
	jsontext.AllowInvalidUTF8(true),
)

// ParseReport decodes a webhook payload like ParseTraining, keeping only the
// fields Apply uses (id, status, output, logs, error, started_at,
// completed_at); the others are checked to be valid JSON but not kept.
func ParseReport(body []byte) (Training, error) {
	var r report
	if err := jsonv2.Unmarshal(body, &r, reportOptions); err != nil {
		var se *jsonv2.SemanticError
		if errors.As(err, &se) && se.JSONPointer != "" && se.GoType != nil {
			return Training{}, fmt.Errorf("field %q has the wrong type: got JSON %s, want %s", strings.TrimPrefix(string(se.JSONPointer), "/"), se.JSONKind, se.GoType)
		}
		return Training{}, fmt.Errorf("body is not a JSON training object: %w", err)
	}
	t := Training{ID: r.ID, Status: r.Status, Output: r.Output, Logs: r.Logs, Error: r.Error}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  **time.Time
	}{{"started_at", r.StartedAt, &t.StartedAt}, {"completed_at", r.CompletedAt, &t.CompletedAt}} {
		if len(f.raw) == 0 {
			continue
		}
		if err := json.Unmarshal(f.raw, f.dst); err != nil {
			return Training{}, fmt.Errorf("field %q: %w", f.name, err)
		}
	}
	return t, t.check()
}

func decodeStrict(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("field %q has the wrong type: got JSON %s, want %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return fmt.Errorf("body is not a JSON training object: %w", err)
	}
	return nil
}

// check validates the fields trainhook relies on and normalises output.
func (t *Training) check() error {
	if strings.TrimSpace(t.ID) == "" {
		return errors.New(`missing "id": a training payload needs the training id`)
	}
	if strings.TrimSpace(t.Status) == "" {
		return errors.New(`missing "status": a training payload needs its status`)
	}
	if len(t.ID) > 128 {
		return errors.New(`"id" is longer than 128 characters`)
	}
	if o := bytes.TrimSpace(t.Output); string(o) == "null" {
		t.Output = nil
	}
	return nil
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
		WebURL:      t.URLs["web"],
	}
}
