package service

import (
	"context"
	"errors"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// maxBatchRetries bounds how often a batch is run again after the store
// reported a race it lost (store.ErrRetry). One retry nearly always does:
// the transaction that won has committed by the time the loser learns of
// it, so the retry reads its result.
const maxBatchRetries = 3

// writeBatch runs fn in one store transaction for batch. If the store can
// read ahead (store.Prefetcher), it is given the keys of every job first,
// so that their reads need no round trip of their own; if the store then
// reports a race it lost, the whole batch is run again (fn starts from
// scratch each time).
func (s *Service) writeBatch(ctx context.Context, batch []job, fn func(store.Tx) error) error {
	var keys store.BatchKeys
	for _, j := range batch {
		keys.Add(j.keys)
	}
	for attempt := 0; ; attempt++ {
		err := s.store.Write(ctx, func(tx store.Tx) error {
			if p, ok := tx.(store.Prefetcher); ok {
				if err := p.Prefetch(ctx, keys); err != nil {
					return err
				}
			}
			return fn(tx)
		})
		if !errors.Is(err, store.ErrRetry) || attempt >= maxBatchRetries || ctx.Err() != nil {
			return err
		}
		s.log.Debug("batch lost a race with another instance; running it again", "jobs", len(batch), "err", err)
	}
}

// reportKeys are what applyReport reads and writes for a report (and a
// delivery, when d is not nil).
func reportKeys(obs training.Observation, d *training.Delivery) store.BatchKeys {
	k := store.BatchKeys{TrainingIDs: []string{obs.TrainingID}, ModelIDs: []string{obs.ModelID}}
	if d != nil {
		k.WebhookIDs = []string{d.WebhookID}
		k.Deliveries = 1
	}
	return k
}
