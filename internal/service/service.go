// Package service holds trainhook's use cases. Every report about a training,
// from a webhook or a poll, goes through Apply, the only writer of a model's
// status: conditional update and history row in one transaction, then
// publish after commit.
package service

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
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
	// queuedAt is when the writer last finished a batch with more reports
	// already waiting (unix nanoseconds): the single writer was the limit.
	queuedAt atomic.Int64

	// afterCommit holds what a batch's transaction counts and logs, to be
	// done once it commits: a batch that fails is retried job by job, and
	// what its first attempt did must not be counted twice. Only the
	// writer goroutine uses it.
	afterCommit []func()

	mu     sync.RWMutex // guards closed against sends on a closed jobs channel
	closed bool
	jobs   chan job
	done   chan struct{}

	deliveries  *metrics.Counter
	transitions *metrics.Counter
	delay       *metrics.Histogram
	batchSize   *metrics.Histogram
}

// Result says what a report did.
type Result struct {
	Outcome Outcome // a training.Decision or one of the Outcome constants
	Model   *training.Model
	Refusal error // set when Outcome is OutcomeRefused
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
		jobs: make(chan job, 4*o.MaxBatch), done: make(chan struct{}),
		deliveries:  o.Metrics.NewCounter("trainhook_reports_total", "Reports applied, by source and outcome (applied, refreshed, same, stale, conflict, unknown_status, duplicate, held, refused).", "source", "outcome"),
		transitions: o.Metrics.NewCounter("trainhook_transitions_total", "Status transitions applied, by from, to and source.", "from", "to", "source"),
		delay:       o.Metrics.NewHistogram("trainhook_detection_delay_seconds", "Delay from completion at Replicate (completed_at) to the model's status change, by source.", metrics.DelayBuckets, "source"),
		batchSize:   o.Metrics.NewHistogram("trainhook_write_batch_reports", "Reports per write transaction (group commit), as a count in the le buckets.", []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}),
	}
	go s.writer()
	return s
}

// saturatedFor is how long after the writer last had reports waiting
// Saturated still says so: a burst has gaps between its batches.
const saturatedFor = 250 * time.Millisecond

// Saturated reports that the writer has been the bottleneck just now:
// reports were waiting when it finished a batch, within saturatedFor. Work
// that can wait, such as sending notifications, yields to intake then.
func (s *Service) Saturated() bool {
	at := s.queuedAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < saturatedFor
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
