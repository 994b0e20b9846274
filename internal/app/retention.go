package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/store"
)

// MinClaimRetention is the least time a webhook-id claim is kept, whatever
// TRAINHOOK_RETENTION says. A claim is what makes a second delivery with the
// same webhook-id a duplicate; it has two jobs:
//
//   - A captured request replayed by someone else: its webhook-timestamp is
//     signed, and the handler refuses timestamps more than 5 minutes from
//     now, so after 5 minutes the signature alone stops it. The claim only
//     needs to outlive that window.
//   - Replicate's own retries of a delivery it thinks failed (no answer in
//     time, a 5xx): same webhook-id, but a new timestamp and signature, so
//     only the claim makes them duplicates. Replicate documents that the
//     last retry comes about a minute after the training completes; the
//     schedule of Svix, where Standard Webhooks comes from, ends after
//     about 28 hours.
//
// Three days covers both with a wide margin. And a retry that came after its
// claim was pruned would still do no harm: the model is final by then, and a
// repeated final report is a no-op (or, if it differs, only flagged).
const MinClaimRetention = 72 * time.Hour

// When the app prunes: once soon after start, then every pruneEvery on each
// instance (prunes on instances sharing PostgreSQL do not conflict). Every
// 10 minutes rather than hourly so that TRAINHOOK_REFUSED_MAX bounds a flood
// of forged requests within minutes; a prune with nothing to do is a few
// indexed queries that find nothing.
const (
	pruneFirst = time.Minute
	pruneEvery = 10 * time.Minute
)

// RetentionPolicy is what a prune at now deletes under cfg: verified
// deliveries after TRAINHOOK_RETENTION, refused ones after
// TRAINHOOK_REFUSED_RETENTION and beyond TRAINHOOK_REFUSED_MAX, delivered
// and failed notifications (with their attempts) after TRAINHOOK_RETENTION,
// and webhook-id claims and held reports after TRAINHOOK_RETENTION but never
// within MinClaimRetention. A retention that is off keeps its rows; a
// pending notification is kept until it is delivered or fails.
//
// Held reports follow the verified deliveries they came from: a report held
// for a training id that no model claimed in that time is most likely about
// a training this trainhook will never track. If a model for it is
// registered later after all, polling fetches the training's current status
// from Replicate, so nothing is lost but the shortcut.
func RetentionPolicy(cfg config.Config, now time.Time) store.PrunePolicy {
	p := store.PrunePolicy{RefusedKeep: cfg.RefusedMax}
	if cfg.RefusedRetention > 0 {
		p.RefusedBefore = now.Add(-cfg.RefusedRetention)
	}
	if cfg.Retention > 0 {
		p.VerifiedBefore = now.Add(-cfg.Retention)
		p.ClaimsBefore = now.Add(-max(cfg.Retention, MinClaimRetention))
		p.HeldBefore = p.ClaimsBefore
		p.NotificationsBefore = p.VerifiedBefore
	}
	return p
}

// pruneMetrics counts what the prunes deleted, for /metrics.
type pruneMetrics struct {
	rows  *metrics.Counter
	bytes *metrics.Counter
	runs  *metrics.Counter
}

func newPruneMetrics(r *metrics.Registry) *pruneMetrics {
	return &pruneMetrics{
		rows: r.NewCounter("trainhook_pruned_rows_total", "Rows deleted by retention, by kind: verified_deliveries, refused_deliveries (past TRAINHOOK_REFUSED_RETENTION), "+
			"refused_over_cap (beyond TRAINHOOK_REFUSED_MAX), webhook_ids, held, notifications.", "kind"),
		bytes: r.NewCounter("trainhook_pruned_payload_bytes_total", "Delivery payload bytes deleted by retention."),
		runs:  r.NewCounter("trainhook_prune_runs_total", "Retention prunes, by outcome: ok or error.", "outcome"),
	}
}

// Prune deletes what the retention settings say has been kept long enough,
// as if it were now, logs what it deleted and counts it in /metrics. The
// app calls it periodically while it runs; tests call it with a later now.
func (a *App) Prune(ctx context.Context, now time.Time) (store.Pruned, error) {
	p := RetentionPolicy(a.Config, now)
	began := time.Now()
	got, err := a.Store.Prune(ctx, p)
	// Count what was deleted even when a later batch failed: it is gone.
	m := a.pruneMetrics
	for kind, n := range map[string]int64{
		"verified_deliveries": got.Verified, "refused_deliveries": got.Refused, "refused_over_cap": got.RefusedOver,
		"webhook_ids": got.Claims, "held": got.Held, "notifications": got.Notifications,
	} {
		if n > 0 {
			m.rows.Add(n, kind)
		}
	}
	if got.PayloadBytes > 0 {
		m.bytes.Add(got.PayloadBytes)
	}
	attrs := []any{
		"verified_deliveries", got.Verified, "refused_deliveries", got.Refused, "refused_over_cap", got.RefusedOver,
		"payload_bytes", got.PayloadBytes, "webhook_ids", got.Claims, "held", got.Held, "notifications", got.Notifications,
		"batches", got.Batches, "duration", time.Since(began).Round(time.Millisecond),
	}
	if got.Held > 0 {
		// Never silently: each was a verified report nobody will apply.
		a.Log.Warn("retention deleted early reports held for training ids that no model claimed (a model registered for one later is polled for its status)",
			"held", got.Held, "training_ids", got.HeldTrainingIDs, "held_before", p.HeldBefore)
	}
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		a.Log.Info("retention prune stopped by shutdown", attrs...)
		return got, err
	case err != nil:
		m.runs.Inc("error")
		a.Log.Error("retention prune failed; the next one tries again", append(attrs, "err", err)...)
		return got, err
	}
	m.runs.Inc("ok")
	level := slog.LevelDebug
	if got.Total() > 0 {
		level = slog.LevelInfo
	}
	a.Log.Log(ctx, level, "retention pruned old records", attrs...)
	return got, nil
}

// runPruner prunes after first, then every every, until ctx ends.
func (a *App) runPruner(ctx context.Context, first, every time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _ = a.Prune(ctx, time.Now())
		t.Reset(every)
	}
}
