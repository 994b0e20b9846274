package service

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Limits on what the API accepts.
const (
	MaxNameLen     = 200
	MaxMetadata    = 64 << 10
	MaxTrainingID  = 128
	MaxIdemKeyLen  = 255
	DefaultPage    = 50
	MaxPage        = 1000
	maxQueryLength = 200
)

// RegisterRequest hands over a training the caller started itself.
type RegisterRequest struct {
	Name           string
	TrainingID     string
	Metadata       json.RawMessage
	IdempotencyKey string
	NotifyURL      string // the model's own notification URL; see Notify.AllowURL
}

// ValidTrainingID reports whether id looks like a Replicate id: 1 to 128
// letters, digits, '-', '_' or '.'. Replicate's own are 26 lowercase
// alphanumerics, but trainhook treats them as opaque.
func ValidTrainingID(id string) bool {
	if id == "" || len(id) > MaxTrainingID {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validName(name string) error {
	if !utf8.ValidString(name) {
		return errorf(Invalid, `"name" is not valid UTF-8`)
	}
	if utf8.RuneCountInString(name) > MaxNameLen {
		return errorf(Invalid, `"name" is longer than %d characters`, MaxNameLen)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errorf(Invalid, `"name" contains a control character`)
		}
	}
	return nil
}

// ValidMetadata checks the caller's free metadata: a JSON object, at most 64 KiB.
func ValidMetadata(md json.RawMessage) (json.RawMessage, error) {
	md = bytes.TrimSpace(md)
	if len(md) == 0 || string(md) == "null" {
		return nil, nil
	}
	if len(md) > MaxMetadata {
		return nil, errorf(Invalid, `"metadata" is %d bytes; the limit is %d (64 KiB): store large data elsewhere and put a reference here`, len(md), MaxMetadata)
	}
	if md[0] != '{' || !json.Valid(md) {
		return nil, errorf(Invalid, `"metadata" must be a JSON object, like {"user_id": "u_123"}`)
	}
	return md, nil
}

// Register starts tracking a training the caller started itself. Reports
// that arrived before it (held) are applied at once. With an idempotency key,
// a repeated call returns the model it created the first time (replayed).
func (s *Service) Register(ctx context.Context, req RegisterRequest) (m training.Model, replayed bool, err error) {
	req.TrainingID = strings.TrimSpace(req.TrainingID)
	if !ValidTrainingID(req.TrainingID) {
		return m, false, errorf(Invalid, `"training_id" must be the Replicate training id (1 to %d letters, digits, '-', '_' or '.'), got %q`, MaxTrainingID, truncate(req.TrainingID, 40))
	}
	if req.Name == "" {
		req.Name = req.TrainingID
	}
	if err := validName(req.Name); err != nil {
		return m, false, err
	}
	if err := s.checkNotifyURL(req.NotifyURL); err != nil {
		return m, false, err
	}
	md, err := ValidMetadata(req.Metadata)
	if err != nil {
		return m, false, err
	}
	if len(req.IdempotencyKey) > MaxIdemKeyLen {
		return m, false, errorf(Invalid, "Idempotency-Key is longer than %d characters", MaxIdemKeyLen)
	}
	if err := s.checkRegistered(ctx, req.TrainingID); err != nil {
		// A repeated request, or a training already tracked, is answered
		// as before: replayed, or 409.
		if known, kerr := s.knownRegistration(ctx, req); kerr != nil || !known {
			return m, false, err
		}
	}
	res, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		if req.IdempotencyKey != "" {
			prev, err := tx.ModelByIdempotencyKey(ctx, req.IdempotencyKey)
			if err == nil {
				if prev.TrainingID != req.TrainingID {
					return Result{}, nil, errorf(Conflict, "Idempotency-Key %q was already used for training %s; use a new key for a new training", req.IdempotencyKey, prev.TrainingID)
				}
				return Result{Outcome: outcomeReplayed, Model: &prev}, nil, nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return Result{}, nil, fmt.Errorf("look up idempotency key: %w", err)
			}
		}
		if prev, err := tx.ModelByTrainingID(ctx, req.TrainingID); err == nil {
			return Result{}, nil, errorf(Conflict, "training %s is already tracked by model %s", req.TrainingID, prev.ID)
		} else if !errors.Is(err, store.ErrNotFound) {
			return Result{}, nil, fmt.Errorf("look up training %s: %w", req.TrainingID, err)
		}
		now := s.now()
		m := training.Model{
			ID: training.NewID(now), Name: req.Name, TrainingID: req.TrainingID, Status: training.Pending,
			Metadata: md, IdempotencyKey: req.IdempotencyKey, CreatedAt: now, UpdatedAt: now,
		}
		if s.nextCheck != nil {
			m.NextCheckAt = s.nextCheck(m, now, training.SourceAPI)
		}
		if err := tx.InsertModel(ctx, &m); err != nil {
			return Result{}, nil, fmt.Errorf("insert model: %w", err)
		}
		if req.NotifyURL != "" {
			if err := tx.SetModelNotifyURL(ctx, m.ID, req.NotifyURL); err != nil {
				return Result{}, nil, err
			}
		}
		if err := tx.AddHistory(ctx, training.HistoryEntry{
			ModelID: m.ID, To: training.Pending, Decision: training.Move, Source: training.SourceAPI, At: now,
			Note: "registered through the API",
		}); err != nil {
			return Result{}, nil, fmt.Errorf("add history: %w", err)
		}
		changed := []training.Model{m}
		after, err := s.applyHeld(ctx, tx, &m, now)
		return Result{Outcome: outcomeRegistered, Model: &m}, append(changed, after...), err
	})
	if err != nil {
		if errors.Is(err, store.ErrDuplicate) {
			return training.Model{}, false, errorf(Conflict, "training %s is already tracked by another model", req.TrainingID)
		}
		return training.Model{}, false, err
	}
	return *res.Model, res.Outcome == outcomeReplayed, nil
}

// knownRegistration reports whether the idempotency key or the training id
// of req is already stored.
func (s *Service) knownRegistration(ctx context.Context, req RegisterRequest) (bool, error) {
	res, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		known := func(err error) (Result, []training.Model, error) {
			switch {
			case err == nil:
				return Result{Outcome: outcomeKnown}, nil, nil
			case errors.Is(err, store.ErrNotFound):
				return Result{}, nil, nil
			}
			return Result{}, nil, err
		}
		if req.IdempotencyKey != "" {
			if r, _, err := known(ignoreModel(tx.ModelByIdempotencyKey(ctx, req.IdempotencyKey))); err != nil || r.Outcome != "" {
				return r, nil, err
			}
		}
		return known(ignoreModel(tx.ModelByTrainingID(ctx, req.TrainingID)))
	})
	return res.Outcome == outcomeKnown, err
}

func ignoreModel(_ training.Model, err error) error { return err }

// ModelDetail is a model with its status history.
type ModelDetail struct {
	training.Model
	History []training.HistoryEntry `json:"history"`
}

// Model returns one model with its history.
func (s *Service) Model(ctx context.Context, id string) (ModelDetail, error) {
	m, err := s.store.GetModel(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return ModelDetail{}, errorf(NotFound, "no model with id %q", truncate(id, 40))
	}
	if err != nil {
		return ModelDetail{}, fmt.Errorf("get model %s: %w", id, err)
	}
	h, err := s.store.History(ctx, id)
	if err != nil {
		return ModelDetail{}, fmt.Errorf("get history of model %s: %w", id, err)
	}
	if h == nil {
		h = []training.HistoryEntry{}
	}
	return ModelDetail{Model: training.WithETA(m), History: h}, nil
}

// Models lists models newest first; it returns the next page's cursor ("" at the end).
func (s *Service) Models(ctx context.Context, f store.ModelFilter) ([]training.Model, string, error) {
	if f.Limit == 0 {
		f.Limit = DefaultPage
	}
	if f.Limit < 1 || f.Limit > MaxPage {
		return nil, "", errorf(Invalid, "limit must be between 1 and %d, got %d", MaxPage, f.Limit)
	}
	if len(f.Query) > maxQueryLength {
		return nil, "", errorf(Invalid, "q is longer than %d characters", maxQueryLength)
	}
	want := f.Limit
	f.Limit = min(want+1, MaxPage) // one more tells whether there is a next page
	ms, err := s.store.ListModels(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("list models: %w", err)
	}
	next := ""
	switch {
	case len(ms) > want:
		ms = ms[:want]
		next = ms[want-1].ID
	case len(ms) == want && want == MaxPage:
		// The store returns at most MaxPage: ask whether one more exists.
		f.Before, f.Limit = ms[want-1].ID, 1
		more, err := s.store.ListModels(ctx, f)
		if err != nil {
			return nil, "", fmt.Errorf("list models: %w", err)
		}
		if len(more) > 0 {
			next = ms[want-1].ID
		}
	}
	if ms == nil {
		ms = []training.Model{}
	}
	for i := range ms {
		ms[i] = training.WithETA(ms[i])
	}
	return ms, next, nil
}

// Ready reports whether the database answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// cursorPrefix versions the model cursor, base64url of "m1:" and the id of
// the last model shown; the API and the dashboard share it.
const cursorPrefix = "m1:"

// ModelCursor is the opaque cursor of the page after the model with this id.
func ModelCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + id))
}

// ParseModelCursor returns the model id a cursor from ModelCursor names;
// ok is false for anything else.
func ParseModelCursor(c string) (id string, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", false
	}
	id, ok = strings.CutPrefix(string(b), cursorPrefix)
	if !ok || len(id) != 26 {
		return "", false
	}
	for _, ch := range id {
		if !strings.ContainsRune("0123456789abcdefghjkmnpqrstvwxyz", ch) {
			return "", false
		}
	}
	return id, true
}
