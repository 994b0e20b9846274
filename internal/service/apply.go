package service

// Apply: every report about a training, a verified delivery or a poll
// result, is located, decided by training.Apply and persisted here, in the
// writer's transaction.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Deliver applies a verified webhook delivery. It returns only after what
// the delivery says is committed, so the caller may then answer 2xx.
func (s *Service) Deliver(ctx context.Context, obs training.Observation, d training.Delivery) (Result, error) {
	d.Verified = true
	return s.wait(job{ctx: ctx, run: s.report(obs, &d), evenIfCancelled: true, trainingID: obs.TrainingID,
		keys: reportKeys(obs, &d)})
}

// Observe applies a poll result (or any report that is not a delivery).
func (s *Service) Observe(ctx context.Context, obs training.Observation) (Result, error) {
	return s.wait(job{ctx: ctx, run: s.report(obs, nil), trainingID: obs.TrainingID, keys: reportKeys(obs, nil)})
}

// RecordRefused appends a refused delivery to the audit log without waiting.
// Under a flood of forged requests the queue may be full; then the record is
// dropped (the refusal is still logged and counted by the caller).
func (s *Service) RecordRefused(d training.Delivery) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	record := func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		_, err := tx.AddDelivery(ctx, d)
		return Result{Outcome: OutcomeRefused}, nil, err
	}
	select {
	case s.jobs <- job{ctx: context.Background(), run: record, keys: store.BatchKeys{Deliveries: 1}}:
		return true
	default:
		return false
	}
}

// report is the job that applies one report, recording it in the delivery
// log when it is a delivery (d is nil for a poll result). Once stored, the
// report is counted by source and outcome.
func (s *Service) report(obs training.Observation, d *training.Delivery) txFunc {
	return func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		res, changed, err := s.applyReport(ctx, tx, obs, d)
		if err == nil {
			s.afterCommit = append(s.afterCommit, func() { s.deliveries.Inc(string(obs.Source), string(res.Outcome)) })
		}
		return res, changed, err
	}
}

// applyReport is Apply for one report inside the batch's transaction. It
// returns the models it changed, to publish after commit.
func (s *Service) applyReport(ctx context.Context, tx store.Tx, obs training.Observation, delivery *training.Delivery) (Result, []training.Model, error) {
	now := s.now()
	if obs.At.IsZero() {
		obs.At = now
	}
	m, bound, refusal, err := s.locate(ctx, tx, obs)
	if err != nil {
		return Result{}, nil, err
	}
	record := func(outcome Outcome, reason, modelID string) error {
		if delivery == nil {
			return nil
		}
		d := *delivery
		d.Outcome, d.Reason, d.ModelID = string(outcome), reason, modelID
		_, err := tx.AddDelivery(ctx, d)
		return err
	}
	if refusal != nil {
		return Result{Outcome: OutcomeRefused, Refusal: refusal}, nil, record(OutcomeRefused, refusal.Error(), "")
	}
	if delivery != nil {
		fresh, err := tx.ClaimWebhookID(ctx, delivery.WebhookID, now)
		if err != nil {
			return Result{}, nil, err
		}
		if !fresh {
			id := ""
			if m != nil {
				id = m.ID
			}
			return Result{Outcome: OutcomeDuplicate, Model: m}, nil, record(OutcomeDuplicate, "", id)
		}
	}
	if m == nil && obs.TrainingID == "" {
		return Result{}, nil, fmt.Errorf("report names no training id and no known model (model %q)", obs.ModelID)
	}
	if m == nil {
		if err := tx.HoldObservation(ctx, obs); err != nil {
			return Result{}, nil, err
		}
		return Result{Outcome: OutcomeHeld}, nil, record(OutcomeHeld, "", "")
	}
	if bound {
		m.TrainingID = obs.TrainingID
	}
	next, dec, err := s.apply(ctx, tx, *m, obs, bound, now)
	if err != nil {
		return Result{}, nil, err
	}
	var changed []training.Model
	if bound || dec == training.Move || dec == training.Refresh || dec == training.Conflict {
		changed = append(changed, next)
	}
	if bound {
		after, err := s.applyHeld(ctx, tx, &next, now)
		if err != nil {
			return Result{}, nil, err
		}
		changed = append(changed, after...)
	}
	return Result{Outcome: decided(dec), Model: &next}, changed, record(decided(dec), "", m.ID)
}

// locate finds the model a report is about. A report bound to a model id (by
// the per-model webhook URL) may attach its training id to a model that has
// none yet; it is refused if the training id belongs to another model or the
// model already tracks another training. m is nil when no model is known yet.
func (s *Service) locate(ctx context.Context, tx store.Tx, obs training.Observation) (m *training.Model, bind bool, refusal, err error) {
	if obs.TrainingID != "" {
		found, err := tx.ModelByTrainingID(ctx, obs.TrainingID)
		switch {
		case err == nil:
			if obs.ModelID != "" && obs.ModelID != found.ID {
				return nil, false, fmt.Errorf("training %s belongs to another model, not to model %s", obs.TrainingID, obs.ModelID), nil
			}
			if untokened(found, obs) {
				return nil, false, fmt.Errorf("training %s was started by trainhook with a per-model webhook URL: a delivery for it must come to that URL, with its ?model=&token=", obs.TrainingID), nil
			}
			return &found, false, nil, nil
		case !errors.Is(err, store.ErrNotFound):
			return nil, false, nil, fmt.Errorf("find model of training %s: %w", obs.TrainingID, err)
		}
	}
	if obs.ModelID == "" {
		return nil, false, nil, nil
	}
	byID, err := tx.ModelByID(ctx, obs.ModelID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, false, nil, nil
	case err != nil:
		return nil, false, nil, fmt.Errorf("find model %s: %w", obs.ModelID, err)
	case byID.TrainingID != "" && obs.TrainingID != "" && byID.TrainingID != obs.TrainingID:
		return nil, false, fmt.Errorf("model %s tracks training %s, not %s", byID.ID, byID.TrainingID, obs.TrainingID), nil
	}
	return &byID, obs.TrainingID != "" && byID.TrainingID == "", nil, nil
}

// apply runs the pure transition and persists its result with a conditional
// update, re-reading and deciding again if another writer got there first.
// bind says m has just been given obs.TrainingID (see locate): the model is
// written even if the transition changes nothing, and keeps that id.
func (s *Service) apply(ctx context.Context, tx store.Tx, m training.Model, obs training.Observation, bind bool, now time.Time) (training.Model, training.Decision, error) {
	for attempt := 0; ; attempt++ {
		next, dec, h := training.Apply(m, obs, now)
		// A poll always reschedules the next one, even when it found nothing new.
		write := bind || dec == training.Move || dec == training.Refresh || dec == training.Conflict || obs.Source == training.SourcePoll && !m.Status.Terminal()
		if !write {
			return m, dec, nil
		}
		if !next.Status.Terminal() && s.nextCheck != nil {
			next.NextCheckAt = s.nextCheck(next, now, obs.Source)
		}
		if obs.Source == training.SourcePoll {
			next.CheckAttempts = 0 // it counts failed checks in a row; this one worked
		}
		// Any report shows Replicate knows the training: 404s start over.
		next.NotFoundSince, next.NotFoundChecks = nil, 0
		err := tx.UpdateModel(ctx, &next)
		if errors.Is(err, store.ErrStale) && attempt < 5 {
			fresh, err := tx.ModelByID(ctx, m.ID)
			if err != nil {
				return m, dec, fmt.Errorf("re-read model %s: %w", m.ID, err)
			}
			if bind {
				// The stored row does not carry the training id this report
				// attaches; without it the write would leave the model
				// unbound and its held reports behind.
				switch fresh.TrainingID {
				case "":
					fresh.TrainingID = obs.TrainingID
				case obs.TrainingID:
				default:
					return m, dec, fmt.Errorf("model %s tracks training %s, not %s", fresh.ID, fresh.TrainingID, obs.TrainingID)
				}
			}
			m = fresh
			continue
		}
		if err != nil {
			return m, dec, fmt.Errorf("update model %s: %w", m.ID, err)
		}
		if h != nil {
			if err := tx.AddHistory(ctx, *h); err != nil {
				return m, dec, fmt.Errorf("add history of model %s: %w", m.ID, err)
			}
		}
		if dec == training.Move {
			if err := s.notify(ctx, tx, next, now); err != nil {
				return m, dec, err
			}
		}
		if dec == training.Move {
			s.afterCommit = append(s.afterCommit, func() {
				s.transitions.Inc(string(h.From), string(h.To), string(obs.Source))
				if next.Status.Terminal() {
					s.completed.Add(1)
				}
				if next.Status.Terminal() && obs.CompletedAt != nil {
					s.delay.Observe(now.Sub(*obs.CompletedAt), string(obs.Source))
				}
				if next.Status.Terminal() && obs.Source != training.SourceWebhook { // the webhook handler logs its own line
					s.log.Info("model status changed", "model_id", next.ID, "training_id", next.TrainingID,
						"from", h.From, "to", h.To, "source", obs.Source, "source_ref", obs.SourceRef)
				}
			})
		}
		if dec == training.Conflict {
			s.afterCommit = append(s.afterCommit, func() {
				s.log.Warn("conflicting final outcome flagged, not applied", "model_id", m.ID, "training_id", m.TrainingID,
					"status", m.Status, "reported", obs.Remote, "source", obs.Source, "source_ref", obs.SourceRef)
			})
		}
		return next, dec, nil
	}
}

// applyHeld applies, oldest first, the reports that arrived before the
// model's training id was known.
func (s *Service) applyHeld(ctx context.Context, tx store.Tx, m *training.Model, now time.Time) ([]training.Model, error) {
	held, err := tx.TakeHeld(ctx, m.TrainingID)
	if err != nil {
		return nil, fmt.Errorf("take held reports for training %s: %w", m.TrainingID, err)
	}
	var changed []training.Model
	for _, obs := range held {
		if untokened(*m, obs) {
			// Held before the model was known, so locate could not refuse it.
			id, tid := m.ID, m.TrainingID
			s.afterCommit = append(s.afterCommit, func() {
				s.deliveries.Inc(string(obs.Source), "held_refused_untokened")
				s.log.Warn("held delivery without the model's token dropped", "model_id", id,
					"training_id", tid, "source_ref", obs.SourceRef)
			})
			continue
		}
		next, dec, err := s.apply(ctx, tx, *m, obs, false, now)
		if err != nil {
			return nil, err
		}
		s.afterCommit = append(s.afterCommit, func() { s.deliveries.Inc(string(obs.Source), "held_applied_"+string(dec)) })
		if dec == training.Move || dec == training.Refresh || dec == training.Conflict {
			changed = append(changed, next)
		}
		*m = next
	}
	return changed, nil
}

// untokened reports a webhook delivery that came without the model's token
// (?model=&token=) for a training trainhook started. Start always gives
// Replicate the tokenized URL (ModelWebhookURL), and only Start sets
// Trainer, so such a delivery was not sent by Replicate for this training.
func untokened(m training.Model, obs training.Observation) bool {
	return obs.ModelID == "" && obs.Source == training.SourceWebhook && m.Trainer != ""
}
