package store

import (
	"context"
	"errors"
)

// ErrRetry: the transaction met a concurrent writer it could not wait for
// (another instance claimed a webhook id this one had found unclaimed) and
// was rolled back. Nothing of it was stored; run it again from the start,
// reading afresh.
var ErrRetry = errors.New("transaction lost a race with another writer and was rolled back: run it again")

// BatchKeys is what a batch of reports is about to read and write: the
// rows a store may fetch (and lock) at once, before the reports run.
type BatchKeys struct {
	TrainingIDs []string // ModelByTrainingID
	ModelIDs    []string // ModelByID
	WebhookIDs  []string // ClaimWebhookID
	Deliveries  int      // AddDelivery calls
}

// Add appends o's keys to k; empty keys are left out.
func (k *BatchKeys) Add(o BatchKeys) {
	for _, v := range o.TrainingIDs {
		if v != "" {
			k.TrainingIDs = append(k.TrainingIDs, v)
		}
	}
	for _, v := range o.ModelIDs {
		if v != "" {
			k.ModelIDs = append(k.ModelIDs, v)
		}
	}
	for _, v := range o.WebhookIDs {
		if v != "" {
			k.WebhookIDs = append(k.WebhookIDs, v)
		}
	}
	k.Deliveries += o.Deliveries
}

// Empty reports whether k names nothing.
func (k BatchKeys) Empty() bool {
	return len(k.TrainingIDs) == 0 && len(k.ModelIDs) == 0 && len(k.WebhookIDs) == 0 && k.Deliveries == 0
}

// Prefetcher is a Tx that can read what a batch needs in one go, before the
// batch runs; a store whose statements are cheap (SQLite, in process)
// need not implement it. Prefetch is a hint: it changes no result of any
// Tx method, only how many round trips they take. A store that implements
// it may, after Prefetch, hold back writes until the commit; a write that
// then turns out to have raced with another writer fails the Write with
// ErrRetry, and the caller runs the whole transaction again.
type Prefetcher interface {
	Prefetch(ctx context.Context, keys BatchKeys) error
}
