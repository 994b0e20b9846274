package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// txFunc is a job's writes, run in its batch's transaction. It returns what
// it did and the models it changed, to publish after commit. It must return
// a domain error (*Error) only before it has written anything: the batch
// then goes on without it.
type txFunc func(ctx context.Context, tx store.Tx) (Result, []training.Model, error)

// job is one unit of the writer's work.
type job struct {
	ctx context.Context
	run txFunc
	// committed, when the caller waits, receives what run did once the
	// batch has committed (or failed); nil: nobody waits.
	committed chan jobResult
	// evenIfCancelled: run even when ctx has ended. A verified delivery is
	// stored whether or not its sender is still there, so a retry of it is
	// a duplicate; anything else whose caller has gone is dropped.
	evenIfCancelled bool
	// trainingID names what the job is about in the log if it fails.
	trainingID string
	// keys are what run will read and write, for stores that read a
	// batch's rows ahead (store.Prefetcher); empty for jobs that do not say.
	keys store.BatchKeys
}

type jobResult struct {
	res Result
	err error
}

var errClosed = errors.New("service is shutting down")

func (s *Service) submit(j job) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	select {
	case s.jobs <- j:
		return nil
	case <-j.ctx.Done():
		return j.ctx.Err()
	}
}

// write runs fn in a shared transaction (group commit) and returns after
// the commit, publishing the models fn reports as changed.
func (s *Service) write(ctx context.Context, fn txFunc) (Result, error) {
	return s.wait(job{ctx: ctx, run: fn})
}

// wait queues j and returns what it did once its batch has committed.
func (s *Service) wait(j job) (Result, error) {
	j.committed = make(chan jobResult, 1)
	if err := s.submit(j); err != nil {
		return Result{}, err
	}
	// Wait for the commit even if ctx ends: the writer owns the job now, and
	// answering before it finishes would hide whether it was stored.
	r := <-j.committed
	return r.res, r.err
}

func (s *Service) writer() {
	defer close(s.done)
	batch := make([]job, 0, s.maxBatch)
	for j := range s.jobs {
		batch = append(batch[:0], j)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case j, ok := <-s.jobs:
				if !ok {
					break fill
				}
				batch = append(batch, j)
			default:
				break fill
			}
		}
		s.runBatch(batch)
		if len(s.jobs) > 0 {
			s.queuedAt.Store(time.Now().UnixNano())
		}
	}
}

// runBatch applies a batch in one transaction (group commit): one fsync for
// many deliveries, and each is acknowledged only after that commit. If the
// transaction fails, each job is retried alone so one bad report cannot
// fail the others.
func (s *Service) runBatch(batch []job) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]jobResult, len(batch))
	var changed []training.Model
	err := s.writeBatch(ctx, batch, func(tx store.Tx) error {
		changed = changed[:0]
		s.afterCommit = s.afterCommit[:0]
		for i, j := range batch {
			if !j.evenIfCancelled && j.ctx.Err() != nil {
				results[i] = jobResult{err: j.ctx.Err()}
				continue
			}
			res, ch, err := j.run(ctx, tx)
			if KindOf(err) != Internal {
				results[i] = jobResult{err: err} // refused before writing: the others go on
				continue
			}
			if err != nil {
				return err
			}
			results[i] = jobResult{res: res}
			changed = append(changed, ch...)
		}
		return nil
	})
	if err == nil {
		for _, f := range s.afterCommit {
			f()
		}
	}
	s.afterCommit = s.afterCommit[:0]
	if err != nil {
		if len(batch) > 1 {
			for _, j := range batch {
				s.runBatch([]job{j})
			}
			return
		}
		s.log.Error("store a report", "training_id", batch[0].trainingID, "err", err)
		results[0] = jobResult{err: fmt.Errorf("store report for training %s: %w", batch[0].trainingID, err)}
	}
	s.batchSize.Observe(time.Duration(len(batch)) * time.Second)
	for i, j := range batch {
		if j.committed != nil {
			j.committed <- results[i]
		}
	}
	if err == nil {
		for _, m := range changed {
			s.publish(m)
		}
	}
}

// publish announces a committed change. Events are kept for resumption and
// go to every open dashboard, so they carry the model's summary: no log
// tail (the model's page reads it), no input.
func (s *Service) publish(m training.Model) {
	s.broker.Publish("model", training.Summary(m))
}
