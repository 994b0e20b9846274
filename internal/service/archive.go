package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// DecisionArchived marks the history entry of a model's removal. It is not
// a status change: the model keeps its final status.
const DecisionArchived training.Decision = "archived"

// Archive removes a finished model from lists. Its record and history are
// kept (GET by id still answers, and lists show it when asked). A model
// still running is refused: removing it would leave a training running,
// and billed, on Replicate with nobody watching it; cancel it first.
// Archiving an archived model returns it unchanged.
func (s *Service) Archive(ctx context.Context, id string) (training.Model, error) {
	res, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		m, err := tx.ModelByID(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return Result{}, nil, errorf(NotFound, "no model with id %q", truncate(id, 40))
		}
		if err != nil {
			return Result{}, nil, fmt.Errorf("read model %s: %w", id, err)
		}
		if !m.Status.Terminal() {
			return Result{}, nil, errorf(Conflict, "model %s is still %s: cancel it first (trainhook cancel %s, or POST /api/models/%s/cancel), then remove it", m.ID, m.Status, m.ID, m.ID)
		}
		if m.ArchivedAt != nil {
			return Result{Outcome: outcomeArchived, Model: &m}, nil, nil
		}
		now := s.now()
		m.ArchivedAt, m.UpdatedAt = &now, now
		if err := tx.UpdateModel(ctx, &m); err != nil {
			return Result{}, nil, fmt.Errorf("archive model %s: %w", m.ID, err)
		}
		if err := tx.AddHistory(ctx, training.HistoryEntry{
			ModelID: m.ID, From: m.Status, To: m.Status, Decision: DecisionArchived,
			Source: training.SourceAPI, At: now, Note: "removed from lists; kept with its history",
		}); err != nil {
			return Result{}, nil, fmt.Errorf("add history of model %s: %w", m.ID, err)
		}
		return Result{Outcome: outcomeArchived, Model: &m}, []training.Model{m}, nil
	})
	if err != nil {
		return training.Model{}, err
	}
	return *res.Model, nil
}

// Retry starts a new training with the trainer, destination and input of a
// model that failed or was canceled, as a new model linked to it (RetryOf).
// The old model is left as it is. Only a model trainhook started can be
// retried: for a registered one, trainhook never knew the trainer or input.
func (s *Service) Retry(ctx context.Context, id, idempotencyKey string) (training.Model, bool, error) {
	old, err := s.store.GetModel(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return training.Model{}, false, errorf(NotFound, "no model with id %q", truncate(id, 40))
	}
	if err != nil {
		return training.Model{}, false, fmt.Errorf("get model %s: %w", id, err)
	}
	switch {
	case old.Trainer == "" || old.Destination == "":
		return training.Model{}, false, errorf(Conflict, "model %s tracks a training registered by its id: trainhook does not know its trainer and input, so it cannot retry it; start it again with trainhook train or POST /api/models", old.ID)
	case old.Status == training.Ready:
		return training.Model{}, false, errorf(Conflict, "model %s is Ready: there is nothing to retry; to train again, start a new training (trainhook train)", old.ID)
	case !old.Status.Terminal():
		return training.Model{}, false, errorf(Conflict, "model %s is still %s: only a Failed or Canceled model can be retried", old.ID, old.Status)
	}
	return s.Start(ctx, StartRequest{
		Name: old.Name, Trainer: old.Trainer, Destination: old.Destination, Input: old.Input,
		Metadata: old.Metadata, IdempotencyKey: idempotencyKey, retryOf: old.ID,
	})
}

// ModelWebhook is where deliveries for a model go: the token that binds
// them to it, and the whole URL in webhook mode.
type ModelWebhook struct {
	ModelID    string `json:"model_id"`
	TrainingID string `json:"training_id,omitempty"`
	Token      string `json:"token"`
	// URL is the webhook URL trainings trainhook starts for the model are
	// created with; "" in polling mode (Replicate is given none).
	URL string `json:"url,omitempty"`
}

// Webhook returns a model's webhook token and URL, for a person testing
// the endpoint by hand (trainhook webhook send --model). The API token
// guards it, as it guards starting and canceling.
func (s *Service) Webhook(ctx context.Context, id string) (ModelWebhook, error) {
	m, err := s.store.GetModel(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return ModelWebhook{}, errorf(NotFound, "no model with id %q", truncate(id, 40))
	}
	if err != nil {
		return ModelWebhook{}, fmt.Errorf("get model %s: %w", id, err)
	}
	w := ModelWebhook{ModelID: m.ID, TrainingID: m.TrainingID, Token: s.ModelToken(m.ID)}
	if s.webhookURL != "" {
		w.URL = s.ModelWebhookURL(m.ID)
	}
	return w, nil
}
