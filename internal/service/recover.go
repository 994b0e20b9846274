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

// InFlight returns the models of the given training ids that are not final:
// those a list page the poller read has news of, claimed or not. A read,
// without a lease: applying what a page shows is safe whoever else checks
// the same training (Apply decides by the stored state).
func (s *Service) InFlight(ctx context.Context, trainingIDs []string) ([]training.Model, error) {
	ms, err := s.store.ModelsByTrainingID(ctx, trainingIDs)
	if err != nil {
		return nil, fmt.Errorf("look up models in flight: %w", err)
	}
	out := ms[:0]
	for _, m := range ms {
		if !m.Status.Terminal() {
			out = append(out, m)
		}
	}
	return out, nil
}

// Reschedule sets when a non-terminal model is next checked, after a check
// that could not be made (Replicate unreachable, 404, rate limited), and
// counts the failed attempt.
func (s *Service) Reschedule(ctx context.Context, id string, at time.Time) error {
	return s.reschedule(ctx, id, at, true)
}

// Defer sets when a start in doubt is next recovered, after a recovery that
// did not finish, without counting a failed attempt: the recovery counted
// it when it took the start's lease (RecoverClaimed), and counting it again
// would double the backoff at each failure.
func (s *Service) Defer(ctx context.Context, id string, at time.Time) error {
	return s.reschedule(ctx, id, at, false)
}

func (s *Service) reschedule(ctx context.Context, id string, at time.Time, count bool) error {
	_, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		m, err := tx.ModelByID(ctx, id)
		if err != nil {
			return Result{}, nil, fmt.Errorf("reschedule model %s: %w", id, err)
		}
		if m.Status.Terminal() {
			return Result{}, nil, nil
		}
		m.NextCheckAt = &at
		if count {
			m.CheckAttempts++
		}
		if err := tx.UpdateModel(ctx, &m); err != nil && !errors.Is(err, store.ErrStale) {
			return Result{}, nil, fmt.Errorf("reschedule model %s: %w", id, err)
		}
		return Result{}, nil, nil
	})
	return err
}

// maxRecoveryDepth bounds how far back, in trainings (200 list pages of
// 100), a start in doubt is looked for. The search stops at trainings
// created a minute before the model, which on a busy account can be many
// pages back: reading them costs calls, creating a second training costs
// money, so the bound is generous.
const maxRecoveryDepth = 20000

// recoverySkew allows for clock skew between Replicate's created_at and ours
// when looking for the training a start created.
const recoverySkew = time.Minute

// ErrClaimLost is returned by RecoverClaimed when the model was written
// since the caller claimed it (another poller claimed it once the claim ran
// out, or a webhook bound its training): the recovery is not the caller's to
// make, and the model must be left as it is.
var ErrClaimLost = errors.New("the model changed since it was claimed; leaving it to whoever changed it")

// RecoverClaimed finishes a start whose outcome is unknown (the process
// died, or the create's answer was lost) and that the caller claimed
// (ClaimDue returned m): it binds the training created for this model or,
// only if there is none, creates it. It reads the list through scan, which
// the caller began after the claim and shares between the recoveries of one
// batch (see TrainingScan). It first takes the start lease with a
// conditional update at the claimed version, so it recovers nothing that
// anyone wrote since the claim; it then returns ErrClaimLost.
func (s *Service) RecoverClaimed(ctx context.Context, m training.Model, scan *TrainingScan) (training.Model, error) {
	if s.replicate == nil {
		return m, errors.New("cannot recover a start without REPLICATE_API_TOKEN")
	}
	held, err := s.hold(ctx, m)
	if err != nil {
		return m, err
	}
	return s.recover(ctx, held, scan)
}

// hold moves a claimed start's lease to StartLease from now, counting the
// attempt like Reschedule does, if the model is still as claimed.
func (s *Service) hold(ctx context.Context, m training.Model) (training.Model, error) {
	res, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		next := m
		at := s.now().Add(s.startLease)
		next.NextCheckAt = &at
		next.CheckAttempts++
		err := tx.UpdateModel(ctx, &next)
		switch {
		case errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrNotFound):
			return Result{}, nil, nil
		case err != nil:
			return Result{}, nil, fmt.Errorf("hold the start of model %s: %w", m.ID, err)
		}
		return Result{Model: &next}, nil, nil
	})
	if err != nil {
		return m, err
	}
	if res.Model == nil {
		return m, fmt.Errorf("recover the start of model %s: %w", m.ID, ErrClaimLost)
	}
	return *res.Model, nil
}

// ReleaseClaims hands back claimed models the caller did not get to: each
// is due again after the given delay, unless it was written since the claim
// (whoever wrote it has set when it is due). The delay must not make a
// start due before it was: a start claimed ahead of its due time (a claim
// with a horizon) is released no earlier than that horizon.
func (s *Service) ReleaseClaims(ctx context.Context, ms []training.Model, after time.Duration) error {
	if len(ms) == 0 {
		return nil
	}
	_, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		at := s.now().Add(after)
		for _, m := range ms {
			m.NextCheckAt = &at
			err := tx.UpdateModel(ctx, &m)
			if err != nil && !errors.Is(err, store.ErrStale) && !errors.Is(err, store.ErrNotFound) {
				return Result{}, nil, fmt.Errorf("release model %s: %w", m.ID, err)
			}
		}
		return Result{}, nil, nil
	})
	return err
}

// recover looks for m's training among the trainings scan lists (reading
// further back as needed) and binds it, or creates the training if there is
// none. The caller holds m's start lease.
//
// A list result does not say which model a training was made for (it has no
// destination, and omits the webhook URL), so candidates are those with the
// model's trainer and input that no other model tracks, and each is fetched
// whole: its webhook URL (webhook mode) or its output version (once
// succeeded) names the model or destination, which settles it. If several
// candidates remain that nothing tells apart (the same input trained into
// several destinations, in polling mode), it binds none and tries again
// later rather than guess: a wrong guess would give each model the other's
// weights.
func (s *Service) recover(ctx context.Context, m training.Model, scan *TrainingScan) (training.Model, error) {
	since := m.CreatedAt.Add(-recoverySkew)
	if err := scan.readBack(ctx, since); err != nil {
		return m, fmt.Errorf("recover the start of model %s: %w", m.ID, err)
	}
	var candidates []replicate.Training
	for _, t := range scan.Results() {
		if t.CreatedAt != nil && t.CreatedAt.Before(since) {
			continue
		}
		if s.mayBeFor(m, t) {
			candidates = append(candidates, t)
		}
	}

	var plausible []replicate.Training
	for _, c := range candidates {
		if owner, err := s.trackedBy(ctx, c.ID); err != nil {
			return m, err
		} else if owner != "" && owner != m.ID {
			continue
		}
		t, err := s.replicate.GetTraining(ctx, c.ID)
		if err != nil {
			return m, fmt.Errorf("get candidate training %s of model %s: %w", c.ID, m.ID, err)
		}
		switch s.madeFor(m, t) {
		case yes:
			return s.bindRecovered(ctx, m, t)
		case maybe:
			plausible = append(plausible, t)
		}
	}
	switch len(plausible) {
	case 0:
		s.log.Info("start recovered: no training was created, creating it now", "model_id", m.ID)
		return s.create(ctx, m)
	case 1:
		return s.bindRecovered(ctx, m, plausible[0])
	}
	return m, fmt.Errorf("recover the start of model %s: %d trainings with its trainer and input, for other destinations too, and nothing tells them apart yet; trying again later", m.ID, len(plausible))
}

func (s *Service) bindRecovered(ctx context.Context, m training.Model, t replicate.Training) (training.Model, error) {
	obs := t.Observation(training.SourcePoll, "recover", s.now())
	obs.ModelID = m.ID
	res, err := s.Observe(ctx, obs)
	if err != nil {
		return m, err
	}
	if res.Outcome == OutcomeRefused || res.Model == nil {
		return m, fmt.Errorf("recover the start of model %s: training %s was taken meanwhile (%v); trying again later", m.ID, t.ID, res.Refusal)
	}
	s.log.Info("start recovered: found the training created for the model", "model_id", m.ID, "training_id", t.ID)
	return *res.Model, nil
}

// trackedBy returns the id of the model that tracks a training id, "" if none.
func (s *Service) trackedBy(ctx context.Context, trainingID string) (string, error) {
	var id string
	err := s.store.Write(ctx, func(tx store.Tx) error {
		m, err := tx.ModelByTrainingID(ctx, trainingID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		id = m.ID
		return err
	})
	if err != nil {
		return "", fmt.Errorf("look up training %s: %w", trainingID, err)
	}
	return id, nil
}

// mayBeFor reports whether a listed training could be the one a start of m
// made: the same trainer (and version, when the model names one) and input.
func (s *Service) mayBeFor(m training.Model, t replicate.Training) bool {
	if t.Webhook != "" && !strings.Contains(t.Webhook, "model="+m.ID+"&") {
		return false
	}
	ref, version, hasVersion := strings.Cut(m.Trainer, ":")
	if t.Model != "" && t.Model != ref || hasVersion && t.Version != "" && t.Version != version {
		return false
	}
	return sameJSON(m.Input, t.Input)
}

type answer int

const (
	no answer = iota
	maybe
	yes
)

// madeFor says whether a whole training was made for m: its webhook URL
// names the model that started it, and a succeeded training's output
// version names its destination.
func (s *Service) madeFor(m training.Model, t replicate.Training) answer {
	if t.Webhook != "" {
		if strings.Contains(t.Webhook, "model="+m.ID+"&") {
			return yes
		}
		return no
	}
	var out replicate.TrainingOutput
	if len(t.Output) > 0 && json.Unmarshal(t.Output, &out) == nil && out.Version != "" {
		if strings.HasPrefix(out.Version, m.Destination+":") {
			return yes
		}
		return no
	}
	if !s.mayBeFor(m, t) {
		return no
	}
	return maybe
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
