// Package service holds trainhook's use cases. Every report about a training,
// from a webhook or a poll, goes through Apply, the only writer of a model's
// status: conditional update and history row in one transaction, then
// publish after commit.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Outcomes of a delivery or observation besides training.Decision values.
const (
	OutcomeDuplicate = "duplicate" // webhook-id seen before: acknowledged, not applied again
	OutcomeHeld      = "held"      // no model has this training id yet: kept, applied on registration
	OutcomeRefused   = "refused"   // signed, but bound to another model
)

// Publisher is where the service announces committed changes: an
// events.Broker, or a pgnotify.Bridge that also tells the other instances.
type Publisher interface {
	Publish(typ string, data any)
}

// Options configure a Service.
type Options struct {
	Store   store.Store
	Broker  Publisher
	Metrics *metrics.Registry
	Logger  *slog.Logger
	Now     func() time.Time
	// MaxBatch caps how many reports share one transaction (group commit).
	MaxBatch int
	// NextCheck says when a non-terminal model should next be polled, given
	// the model as it will be stored and where the latest report came from;
	// nil means never.
	NextCheck func(m training.Model, now time.Time, src training.Source) *time.Time

	// Replicate is the API client used to start and cancel trainings; nil
	// when no token is configured.
	Replicate Replicate
	// WebhookURL is the base webhook URL trainings are created with in
	// webhook mode; "" in polling mode (no webhook is passed).
	WebhookURL    string
	WebhookEvents []string
	// RecoverAfter is how long after a create whose outcome is unknown the
	// poller looks for it (default 10s).
	RecoverAfter time.Duration
	// StartLease is how long a start may take before the poller treats it
	// as in doubt and recovers it (default 3 minutes); a create sends no
	// request after it (see create).
	StartLease time.Duration
	// Notify configures the notifications outbox; zero: none are written.
	Notify Notify
	// NotFoundChecks and NotFoundGrace: a training Replicate answers 404
	// for that many checks in a row, over at least that long, fails its
	// model (defaults DefaultNotFoundChecks, DefaultNotFoundGrace).
	NotFoundChecks int
	NotFoundGrace  time.Duration
}

// Service is safe for concurrent use.
type Service struct {
	store          store.Store
	broker         Publisher
	log            *slog.Logger
	now            func() time.Time
	maxBatch       int
	nextCheck      func(training.Model, time.Time, training.Source) *time.Time
	replicate      Replicate
	webhookURL     string
	webhookEvents  []string
	tokenKey       []byte
	recoverAfter   time.Duration
	startLease     time.Duration
	notFoundGrace  time.Duration
	notFoundChecks int
	destinations   sync.Map // destinations known to exist
	completed      atomic.Int64
	notifyCfg      Notify

	// afterCommit holds what a batch's transaction counts and logs, to be
	// done once it commits: a batch that fails is retried job by job, and
	// what its first attempt did must not be counted twice. Only the
	// writer goroutine uses it.
	afterCommit []func()

	mu     sync.RWMutex // guards closed against sends on a closed jobs channel
	closed bool
	jobs   chan *job
	done   chan struct{}

	deliveries  *metrics.Counter
	transitions *metrics.Counter
	delay       *metrics.Histogram
	batchSize   *metrics.Histogram
}

// Result says what a report did.
type Result struct {
	Outcome string // a training.Decision or one of the Outcome constants
	Model   *training.Model
	Refusal error // set when Outcome is OutcomeRefused
}

type job struct {
	// fn, when set, is the whole job: a use case's writes, run in the
	// batch's transaction. It must return a domain error (*Error) only
	// before it has written anything.
	fn       func(ctx context.Context, tx store.Tx) (Result, []training.Model, error)
	ctx      context.Context
	obs      training.Observation
	delivery *training.Delivery // nil for poll results
	refused  bool               // only record the delivery
	done     chan jobResult     // nil: nobody waits
}

type jobResult struct {
	res Result
	err error
}

// New starts the service's writer. Call Close to stop it.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StartLease <= 0 {
		o.StartLease = startLease
	}
	if o.NotFoundChecks <= 0 {
		o.NotFoundChecks = DefaultNotFoundChecks
	}
	if o.NotFoundGrace <= 0 {
		o.NotFoundGrace = DefaultNotFoundGrace
	}
	if o.RecoverAfter <= 0 {
		o.RecoverAfter = 10 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 128
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Broker == nil {
		o.Broker = events.NewBroker(1024, o.Logger)
	}
	s := &Service{
		store: o.Store, broker: o.Broker, log: o.Logger, now: o.Now,
		maxBatch: o.MaxBatch, nextCheck: o.NextCheck,
		replicate: o.Replicate, webhookURL: o.WebhookURL, webhookEvents: o.WebhookEvents, recoverAfter: o.RecoverAfter, startLease: o.StartLease,
		notifyCfg: o.Notify, notFoundGrace: o.NotFoundGrace, notFoundChecks: o.NotFoundChecks,
		jobs: make(chan *job, 4*o.MaxBatch), done: make(chan struct{}),
		deliveries:  o.Metrics.NewCounter("trainhook_reports_total", "Reports applied, by source and outcome (applied, refreshed, same, stale, conflict, unknown_status, duplicate, held, refused).", "source", "outcome"),
		transitions: o.Metrics.NewCounter("trainhook_transitions_total", "Status transitions applied, by from, to and source.", "from", "to", "source"),
		delay:       o.Metrics.NewHistogram("trainhook_detection_delay_seconds", "Delay from completion at Replicate (completed_at) to the model's status change, by source.", metrics.DelayBuckets, "source"),
		batchSize:   o.Metrics.NewHistogram("trainhook_write_batch_reports", "Reports per write transaction (group commit), as a count in the le buckets.", []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}),
	}
	go s.writer()
	return s
}

// Completed counts the models this process moved to a final status.
func (s *Service) Completed() int64 { return s.completed.Load() }

// Close stops accepting reports, finishes those queued and returns when the
// writer has stopped. Stop the HTTP server and the poller first.
func (s *Service) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.jobs)
	}
	s.mu.Unlock()
	<-s.done
}

var errClosed = errors.New("service is shutting down")

func (s *Service) submit(j *job) error {
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

// Deliver applies a verified webhook delivery. It returns only after what
// the delivery says is committed, so the caller may then answer 2xx.
func (s *Service) Deliver(ctx context.Context, obs training.Observation, d training.Delivery) (Result, error) {
	d.Verified = true
	return s.wait(ctx, &job{ctx: ctx, obs: obs, delivery: &d, done: make(chan jobResult, 1)})
}

// Observe applies a poll result (or any report that is not a delivery).
func (s *Service) Observe(ctx context.Context, obs training.Observation) (Result, error) {
	return s.wait(ctx, &job{ctx: ctx, obs: obs, done: make(chan jobResult, 1)})
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
	select {
	case s.jobs <- &job{ctx: context.Background(), delivery: &d, refused: true}:
		return true
	default:
		return false
	}
}

// write runs fn in a shared transaction (group commit) and returns after
// the commit, publishing the models fn reports as changed.
func (s *Service) write(ctx context.Context, fn func(ctx context.Context, tx store.Tx) (Result, []training.Model, error)) (Result, error) {
	return s.wait(ctx, &job{ctx: ctx, fn: fn, done: make(chan jobResult, 1)})
}

func (s *Service) wait(ctx context.Context, j *job) (Result, error) {
	if err := s.submit(j); err != nil {
		return Result{}, err
	}
	// Wait for the commit even if ctx ends: the writer owns the job now, and
	// answering before it finishes would hide whether it was stored.
	r := <-j.done
	return r.res, r.err
}

func (s *Service) writer() {
	defer close(s.done)
	batch := make([]*job, 0, s.maxBatch)
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
	}
}

// runBatch applies a batch in one transaction (group commit): one fsync for
// many deliveries, and each is acknowledged only after that commit. If the
// transaction fails, each job is retried alone so one bad report cannot
// fail the others.
func (s *Service) runBatch(batch []*job) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]jobResult, len(batch))
	var changed []training.Model
	err := s.store.Write(ctx, func(tx store.Tx) error {
		changed = changed[:0]
		s.afterCommit = s.afterCommit[:0]
		for i, j := range batch {
			if j.done != nil && j.ctx.Err() != nil && j.delivery == nil {
				results[i] = jobResult{err: j.ctx.Err()}
				continue
			}
			res, ch, err := s.applyJob(ctx, tx, j)
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
				s.runBatch([]*job{j})
			}
			return
		}
		s.log.Error("store a report", "training_id", batch[0].obs.TrainingID, "err", err)
		results[0] = jobResult{err: fmt.Errorf("store report for training %s: %w", batch[0].obs.TrainingID, err)}
	}
	s.batchSize.Observe(time.Duration(len(batch)) * time.Second)
	for i, j := range batch {
		if results[i].err == nil && !j.refused && j.fn == nil {
			src := string(j.obs.Source)
			s.deliveries.Inc(src, results[i].res.Outcome)
		}
		if j.done != nil {
			j.done <- results[i]
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

// applyJob is Apply for one report inside the batch's transaction. It
// returns the models it changed, to publish after commit.
func (s *Service) applyJob(ctx context.Context, tx store.Tx, j *job) (Result, []training.Model, error) {
	if j.fn != nil {
		return j.fn(ctx, tx)
	}
	now := s.now()
	if j.refused {
		_, err := tx.AddDelivery(ctx, *j.delivery)
		return Result{Outcome: OutcomeRefused}, nil, err
	}
	obs := j.obs
	if obs.At.IsZero() {
		obs.At = now
	}
	m, bound, refusal, err := s.locate(ctx, tx, obs)
	if err != nil {
		return Result{}, nil, err
	}
	record := func(outcome, reason, modelID string) error {
		if j.delivery == nil {
			return nil
		}
		d := *j.delivery
		d.Outcome, d.Reason, d.ModelID = outcome, reason, modelID
		_, err := tx.AddDelivery(ctx, d)
		return err
	}
	if refusal != nil {
		return Result{Outcome: OutcomeRefused, Refusal: refusal}, nil, record(OutcomeRefused, refusal.Error(), "")
	}
	if j.delivery != nil {
		fresh, err := tx.ClaimWebhookID(ctx, j.delivery.WebhookID, now)
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
	return Result{Outcome: string(dec), Model: &next}, changed, record(string(dec), "", m.ID)
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
