package store

import (
	"encoding/json"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// heldObservation is how every store keeps a held training.Observation: JSON
// with explicit names, so renaming a Go field cannot silently lose stored
// data, and omitempty, so a nil Output comes back nil rather than "null".
type heldObservation struct {
	TrainingID  string          `json:"training_id"`
	ModelID     string          `json:"model_id,omitempty"`
	Remote      string          `json:"remote,omitempty"`
	Output      json.RawMessage `json:"output,omitempty"`
	Error       string          `json:"error,omitempty"`
	Logs        string          `json:"logs,omitempty"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
	Source      training.Source `json:"source,omitempty"`
	SourceRef   string          `json:"source_ref,omitempty"`
	At          time.Time       `json:"at"`
	WebURL      string          `json:"web_url,omitempty"`
}

// EncodeObservation is the document a store keeps for a held observation.
func EncodeObservation(o training.Observation) (string, error) {
	b, err := json.Marshal(heldObservation(o))
	return string(b), err
}

// DecodeObservation reads a document EncodeObservation wrote; times come
// back in UTC.
func DecodeObservation(doc []byte) (training.Observation, error) {
	var h heldObservation
	if err := json.Unmarshal(doc, &h); err != nil {
		return training.Observation{}, err
	}
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	h.StartedAt, h.CompletedAt = utc(h.StartedAt), utc(h.CompletedAt)
	if !h.At.IsZero() {
		h.At = h.At.UTC()
	}
	return training.Observation(h), nil
}
