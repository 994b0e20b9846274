package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// A training Replicate keeps answering 404 for is not polled forever: after
// NotFoundChecks checks in a row, spread over at least NotFoundGrace, the
// model is Failed. Replicate may answer 404 for a moment right after a
// create, so one 404 proves nothing; a training created with another
// account's token, or by a simulator that was restarted, answers 404 for
// good.
const (
	DefaultNotFoundChecks = 3
	DefaultNotFoundGrace  = 2 * time.Minute
)

// registerCheckTimeout bounds the GET that checks a training id at
// registration: when Replicate is slow, the model is registered unchecked
// and the poller finds out.
const registerCheckTimeout = 3 * time.Second

// NotFoundError is the error a model is Failed with when Replicate has no
// training with its id.
func NotFoundError(trainingID string) string {
	return fmt.Sprintf("Replicate has no training %s: was it created with another account's token?", trainingID)
}

// TrainingNotFound records that Replicate answered 404 for m's training. It
// fails the model, through Apply like any poll result, once the 404s have
// lasted NotFoundChecks checks over NotFoundGrace; until then it schedules
// the next check at retryAt and counts a failed attempt. It reports whether
// the model was failed.
func (s *Service) TrainingNotFound(ctx context.Context, m training.Model, retryAt time.Time) (bool, error) {
	res, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		cur, err := tx.ModelByID(ctx, m.ID)
		if err != nil {
			return Result{}, nil, fmt.Errorf("record 404 for model %s: %w", m.ID, err)
		}
		if cur.Status.Terminal() || cur.TrainingID == "" || cur.TrainingID != m.TrainingID {
			return Result{}, nil, nil
		}
		now := s.now()
		if cur.NotFoundSince == nil {
			cur.NotFoundSince = &now
		}
		cur.NotFoundChecks++
		if cur.NotFoundChecks >= s.notFoundChecks && now.Sub(*cur.NotFoundSince) >= s.notFoundGrace {
			obs := training.Observation{
				TrainingID: cur.TrainingID, ModelID: cur.ID, Remote: training.RemoteFailed,
				Error:  NotFoundError(cur.TrainingID),
				Source: training.SourcePoll, SourceRef: "not_found", At: now,
			}
			next, dec, err := s.apply(ctx, tx, cur, obs, false, now)
			if err != nil {
				return Result{}, nil, err
			}
			return Result{Outcome: decided(dec), Model: &next}, []training.Model{next}, nil
		}
		cur.NextCheckAt = &retryAt
		cur.CheckAttempts++
		if err := tx.UpdateModel(ctx, &cur); err != nil && !errors.Is(err, store.ErrStale) {
			return Result{}, nil, fmt.Errorf("record 404 for model %s: %w", m.ID, err)
		}
		return Result{}, nil, nil
	})
	return res.Model != nil && res.Model.Status == training.Failed, err
}

// checkRegistered asks Replicate, once, whether it knows a training about
// to be registered. Only a 404 counts: when the check cannot be made in
// time (budget spent, Replicate slow or down), registration goes on and the
// poller finds out.
func (s *Service) checkRegistered(ctx context.Context, trainingID string) error {
	// Only with a request of the budget free at once: a check that waited
	// for one would delay the poller's, and a bulk registration would
	// queue behind its own checks.
	now, ok := s.replicate.(interface {
		GetTrainingNow(context.Context, string) (replicate.Training, error)
	})
	if s.replicate == nil || !ok {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, registerCheckTimeout)
	defer cancel()
	_, err := now.GetTrainingNow(cctx, trainingID)
	if err != nil && replicate.IsNotFound(err) {
		return errorf(Unprocessable, "%s; register a training id of the account whose token this server uses (REPLICATE_API_TOKEN)", NotFoundError(trainingID))
	}
	if err != nil && ctx.Err() == nil {
		s.log.Debug("could not check a training id at registration; registering it unchecked", "training_id", trainingID, "err", err)
	}
	return nil
}

// failNotFound fails a model whose training Replicate has no record of, at
// a person's request (a cancel): through Apply, like any report.
func (s *Service) failNotFound(ctx context.Context, m training.Model) (training.Model, error) {
	res, err := s.Observe(ctx, training.Observation{
		TrainingID: m.TrainingID, ModelID: m.ID, Remote: training.RemoteFailed,
		Error: NotFoundError(m.TrainingID), Source: training.SourceAPI, SourceRef: "cancel",
	})
	if err != nil {
		return m, err
	}
	if res.Model != nil {
		m = *res.Model
	}
	return m, nil
}
