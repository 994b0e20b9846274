package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// ClaimDue leases up to limit models due a check within horizon from now
// (see store.Tx.ClaimDue).
func (s *Service) ClaimDue(ctx context.Context, horizon, lease time.Duration, limit int) ([]training.Model, error) {
	var due []training.Model
	err := s.store.Write(ctx, func(tx store.Tx) error {
		now := s.now()
		var err error
		due, err = tx.ClaimDue(ctx, now.Add(horizon), now.Add(lease), limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim models due a check: %w", err)
	}
	return due, nil
}

// Reschedule sets when a non-terminal model is next checked, after a check
// that could not be made (Replicate unreachable, 404, rate limited).
func (s *Service) Reschedule(ctx context.Context, id string, at time.Time) error {
	_, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		m, err := tx.ModelByID(ctx, id)
		if err != nil {
			return Result{}, nil, fmt.Errorf("reschedule model %s: %w", id, err)
		}
		if m.Status.Terminal() {
			return Result{}, nil, nil
		}
		m.NextCheckAt = &at
		m.CheckAttempts++
		if err := tx.UpdateModel(ctx, &m); err != nil && !errors.Is(err, store.ErrStale) {
			return Result{}, nil, fmt.Errorf("reschedule model %s: %w", id, err)
		}
		return Result{}, nil, nil
	})
	return err
}

// maxRecoveryPages bounds how far back a start in doubt is looked for. The
// search stops at trainings created a minute before the model, which on a
// busy account can be many pages back: reading them costs calls, creating a
// second training costs money, so the bound is generous.
const maxRecoveryPages = 200

// RecoverStart finishes a start whose outcome is unknown (the process died,
// or the create's answer was lost): it lists recent trainings and binds the
// one created for this model; only if there is none does it create it.
func (s *Service) RecoverStart(ctx context.Context, m training.Model) (training.Model, error) {
	if s.replicate == nil {
		return m, errors.New("cannot recover a start without REPLICATE_API_TOKEN")
	}
	// Hold the lease for the whole recovery so no other check starts it too.
	if err := s.Reschedule(ctx, m.ID, s.now().Add(startLease)); err != nil {
		return m, err
	}
	page := ""
	for i := 0; i < maxRecoveryPages; i++ {
		p, err := s.replicate.ListTrainings(ctx, page)
		if err != nil {
			return m, fmt.Errorf("list trainings to recover the start of model %s: %w", m.ID, err)
		}
		older := false
		for _, t := range p.Results {
			if t.CreatedAt != nil && t.CreatedAt.Before(m.CreatedAt.Add(-time.Minute)) {
				older = true
				continue
			}
			if !s.createdFor(m, t) {
				continue
			}
			obs := t.Observation(training.SourcePoll, "recover", s.now())
			obs.ModelID = m.ID
			res, err := s.Observe(ctx, obs)
			if err != nil {
				return m, err
			}
			if res.Outcome == OutcomeRefused || res.Model == nil {
				continue // tracked by another model: not ours
			}
			s.log.Info("start recovered: found the training created for the model", "model_id", m.ID, "training_id", t.ID)
			return *res.Model, nil
		}
		if older || p.Next == "" {
			break
		}
		if i == maxRecoveryPages-1 {
			return m, fmt.Errorf("recover the start of model %s: no trace of it in the last %d pages of trainings, and older ones were not read; not creating another", m.ID, maxRecoveryPages)
		}
		page = p.Next
	}
	s.log.Info("start recovered: no training was created, creating it now", "model_id", m.ID)
	return s.create(ctx, m)
}

// createdFor reports whether t looks like the training a start of m made.
// In webhook mode the webhook URL names the model, which is conclusive;
// otherwise trainer and input must match exactly.
func (s *Service) createdFor(m training.Model, t replicate.Training) bool {
	if t.Webhook != "" {
		return strings.Contains(t.Webhook, "model="+m.ID+"&")
	}
	ref, version, hasVersion := strings.Cut(m.Trainer, ":")
	if t.Model != "" && t.Model != ref || hasVersion && t.Version != "" && t.Version != version {
		return false
	}
	return sameJSON(m.Input, t.Input)
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
