package poller

import (
	"context"
	"log/slog"

	"github.com/trainhook/trainhook/internal/training"
)

// notFound records a 404 for m's training, which fails the model once the
// 404s have lasted the service's grace period.
func (p *Poller) notFound(ctx context.Context, m training.Model, lvl slog.Level) {
	failed, err := p.o.Service.TrainingNotFound(ctx, m, p.o.Now().Add(p.o.Policy.Retry(m.CheckAttempts)))
	switch {
	case err != nil && ctx.Err() == nil:
		p.o.Log.Error("poller: could not record a 404", "model_id", m.ID, "training_id", m.TrainingID, "err", err)
	case failed:
		p.o.Log.Warn("poller: Replicate keeps answering 404 for the training; model failed", "model_id", m.ID, "training_id", m.TrainingID)
	case err == nil:
		p.o.Log.Log(ctx, lvl, "poller: Replicate answered 404 for the training; will check again", "model_id", m.ID, "training_id", m.TrainingID, "not_found_checks", m.NotFoundChecks+1)
	}
}
