// Package notify sends the notifications outbox to the app: it leases due
// rows, signs each request as Standard Webhooks specifies, retries with
// capped, jittered exponential backoff (honouring Retry-After) until the
// retry window ends, and records every attempt. It runs in its own
// goroutines with its own bounded concurrency: a slow or dead receiver
// holds up only its own requests, never intake or polling, which only
// insert rows.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
)

// Defaults of Options.
const (
	DefaultTimeout     = 15 * time.Second
	DefaultConcurrency = 8
	DefaultPoll        = time.Second
	DefaultRetryFor    = 24 * time.Hour
	DefaultYieldFor    = 30 * time.Second
)

// Options configure a Sender.
type Options struct {
	Store store.Outbox
	// Keys sign every request; each key adds one v1 signature, so a
	// receiver holding any one of them (during a rotation) accepts it.
	Keys     replicate.Keys
	RetryFor time.Duration // default 24h
	Timeout  time.Duration // per request, default 15s
	// Concurrency bounds the requests in flight (default 8).
	Concurrency int
	// Poll is how often the outbox is checked without a Kick (default 1s).
	Poll    time.Duration
	Logger  *slog.Logger
	Metrics *metrics.Registry
	Now     func() time.Time
	// Client sends the requests; nil: one that follows no redirects.
	Client *http.Client
	// Backoff overrides the retry delay after n failed attempts (tests).
	Backoff func(n int) time.Duration
	// Publish announces a committed change of a notification as a
	// store.NotificationEventType event (the dashboard's live updates). It
	// must not block (events.Broker's and pgnotify.Bridge's Publish do
	// not). nil: nothing is announced.
	Publish func(typ string, data any)
	// Busy reports that webhook intake is saturating the store's writer
	// (service.Service.Saturated). While it does, and the oldest pending
	// notification is younger than YieldFor, nothing is sent: every send
	// takes the writer twice (its lease and its outcome), and intake,
	// which Replicate waits on, comes first. The notifications follow
	// once the burst has passed; they are in the outbox meanwhile, so
	// none is lost. nil: never busy.
	Busy func() bool
	// YieldFor bounds how stale notifications may grow while intake is
	// busy (default 30s); past it they are sent at full concurrency.
	YieldFor time.Duration
}

// Sender delivers the outbox. Start it with Run; Kick it after a commit.
type Sender struct {
	o     Options
	log   *slog.Logger
	kick  chan struct{}
	sem   chan struct{}
	wg    sync.WaitGroup
	lease time.Duration

	pending atomic.Int64
	oldest  atomic.Int64 // unix nanoseconds of the oldest pending row, 0: none

	outcomes *metrics.Counter
	attempts *metrics.Counter
	lag      *metrics.Histogram
	yields   *metrics.Counter
}

// New returns a Sender; nothing runs until Run.
func New(o Options) *Sender {
	if o.RetryFor <= 0 {
		o.RetryFor = DefaultRetryFor
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.YieldFor <= 0 {
		o.YieldFor = DefaultYieldFor
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Backoff == nil {
		o.Backoff = func(n int) time.Duration { return Backoff(n, rand.Float64()) }
	}
	if o.Client == nil {
		// Its own transport: the default keeps 2 idle connections per
		// host, so with more requests in flight to one receiver most would
		// open a new connection each time, costing a handshake on both
		// sides and a socket in TIME_WAIT per notification.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = o.Concurrency
		o.Client = &http.Client{
			Transport: t,
			// A redirect is a failure: the URL should be fixed, and
			// following it would send the signed event somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := &Sender{o: o, log: o.Logger, kick: make(chan struct{}, 1), sem: make(chan struct{}, o.Concurrency),
		// The lease outlasts a request with room to record it; a sender
		// that dies mid-request leaves the row to another after it.
		lease: o.Timeout + 30*time.Second}
	m := o.Metrics
	s.outcomes = m.NewCounter("trainhook_notifications_total", "Notifications settled or rescheduled, by outcome (delivered, retry, failed, gone).", "outcome")
	s.attempts = m.NewCounter("trainhook_notification_attempts_total", "Requests sent to notification URLs, by result (2xx, 3xx, 4xx, 5xx, timeout, error).", "result")
	s.yields = m.NewCounter("trainhook_notification_yields_total", "Times the sender held notifications back because webhook intake was saturating the writer.")
	s.lag = m.NewHistogram("trainhook_notification_lag_seconds", "Time from the change's commit to the receiver's 2xx.", metrics.DelayBuckets)
	m.GaugeFunc("trainhook_notifications_pending", "Notifications waiting to be delivered (queue depth).", func() float64 { return float64(s.pending.Load()) })
	m.GaugeFunc("trainhook_notification_oldest_pending_seconds", "Age of the oldest pending notification; 0 when none.", func() float64 {
		if o := s.oldest.Load(); o != 0 {
			return s.o.Now().Sub(time.Unix(0, o)).Seconds()
		}
		return 0
	})
	return s
}

// Kick makes Run look at the outbox now. It never blocks.
func (s *Sender) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run sends until ctx ends, then waits for the requests in flight (each
// bounded by the timeout) and returns. A request cut short by the end is
// not lost: its row stays pending and is sent again after the lease.
func (s *Sender) Run(ctx context.Context) {
	defer s.wg.Wait()
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	lastStats := time.Time{}
	for {
		if time.Since(lastStats) >= 5*time.Second {
			s.refreshStats(ctx)
			lastStats = time.Now()
		}
		s.dispatch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// dispatch claims as many due rows as there are free request slots and
// sends each on its own goroutine.
func (s *Sender) dispatch(ctx context.Context) {
	for ctx.Err() == nil {
		free := s.slots() - len(s.sem)
		if free <= 0 {
			return
		}
		now := s.o.Now()
		ns, err := s.o.Store.ClaimNotifications(ctx, now, now.Add(s.lease), free)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("claim notifications", "err", err)
			}
			return
		}
		for _, n := range ns {
			if n.Attempts == 0 {
				// New rows are written in the transaction of the model's
				// change, which publishes only the model: the first claim
				// (committed) announces them.
				s.publish(store.ChangeOf(n))
			}
			s.sem <- struct{}{}
			s.wg.Add(1)
			go func() {
				// A freed slot may take the next due row at once (the
				// next event of this model, or one that waited for a slot)
				// rather than at the next poll.
				defer func() { <-s.sem; s.wg.Done(); s.Kick() }()
				s.deliver(ctx, n)
			}()
		}
		if len(ns) < free {
			return
		}
	}
}

// slots is how many requests may be in flight now: all of them, or none
// while intake is busy and the backlog is young (see Options.Busy).
func (s *Sender) slots() int {
	if s.o.Busy == nil || !s.o.Busy() {
		return cap(s.sem)
	}
	if o := s.oldest.Load(); o != 0 && s.o.Now().Sub(time.Unix(0, o)) >= s.o.YieldFor {
		return cap(s.sem)
	}
	s.yields.Inc()
	return 0
}

func (s *Sender) refreshStats(ctx context.Context) {
	st, err := s.o.Store.NotificationStats(ctx)
	if err != nil {
		return
	}
	s.pending.Store(int64(st.Pending))
	if st.OldestPending.IsZero() {
		s.oldest.Store(0)
	} else {
		s.oldest.Store(st.OldestPending.UnixNano())
	}
}

// Body is the request body of a notification: the Standard Webhooks
// payload shape. It depends only on the stored row, so every retry sends
// the same bytes.
func Body(n store.Notification) ([]byte, error) {
	return json.Marshal(payload{Type: n.Type, Timestamp: n.CreatedAt.UTC().Format(time.RFC3339Nano),
		Data: payloadData{Model: n.Model, Sequence: n.Sequence}})
}

type payload struct {
	Type      string      `json:"type"`
	Timestamp string      `json:"timestamp"`
	Data      payloadData `json:"data"`
}

type payloadData struct {
	Model    json.RawMessage `json:"model"`
	Sequence int64           `json:"sequence"`
}

// Sign sets the three Standard Webhooks headers: the event id (the same on
// every retry, so the app can dedupe), this attempt's time, and one v1
// signature per key over "id.timestamp.body".
func Sign(h http.Header, keys replicate.Keys, id string, ts time.Time, body []byte) {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = k.Sign(id, ts.Unix(), body)
	}
	h.Set(replicate.HeaderID, id)
	h.Set(replicate.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(replicate.HeaderSignature, strings.Join(sigs, " "))
}

// Backoff is the delay after n failed attempts (n >= 1): 5s, then three
// times longer each time, capped at an hour, with u (uniform in [0,1))
// spreading it by ±20% so receivers coming back are not hit all at once.
func Backoff(n int, u float64) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 3
	}
	d = min(d, time.Hour)
	return time.Duration(float64(d) * (0.8 + 0.4*u))
}

// maxRetryAfter caps a receiver's Retry-After: it may slow us down, not
// park an event for longer than this at a time.
const maxRetryAfter = 6 * time.Hour

// RetryAfter reads a Retry-After header: seconds or an HTTP date.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return min(time.Duration(min(n, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}

// deliver sends one claimed row and records the attempt and its result.
func (s *Sender) deliver(ctx context.Context, n store.Notification) {
	start := s.o.Now()
	a, retryAfter, gone := s.send(ctx, n, start)
	r := store.NotificationResult{Attempt: a}
	deadline := n.RetrySince.Add(s.o.RetryFor)
	now := s.o.Now()
	switch {
	case ctx.Err() != nil && a.StatusCode == 0:
		// Shutting down: the request was cut short, not answered. It is
		// due again at once, for the next start (or another instance).
		r.Attempt.Error = "interrupted: trainhook was shutting down"
		r.Status, r.RetryAt = store.NotifyPending, now
	case a.StatusCode >= 200 && a.StatusCode < 300:
		r.Status = store.NotifyDelivered
		s.outcomes.Inc("delivered")
		s.lag.Observe(now.Sub(n.CreatedAt))
	case gone:
		r.Status = store.NotifyFailed
		s.outcomes.Inc("gone")
		s.log.Warn("notification receiver answered 410 Gone: it wants no more; notification marked failed (fix or remove the URL)",
			"notification_id", n.ID, "event_id", n.EventID, "url", n.URL)
	case !now.Before(deadline):
		r.Status = store.NotifyFailed
		s.outcomes.Inc("failed")
		s.log.Error("notification not delivered within the retry window; marked failed", "notification_id", n.ID,
			"event_id", n.EventID, "url", n.URL, "attempts", n.Attempts+1, "retry_for", s.o.RetryFor, "last_error", a.Error)
	default:
		wait := s.o.Backoff(n.Attempts + 1)
		if retryAfter > wait {
			wait = retryAfter
		}
		// The last try is at the end of the window, not after it.
		r.Status, r.RetryAt = store.NotifyPending, minTime(now.Add(wait), deadline)
		s.outcomes.Inc("retry")
		s.log.Info("notification not delivered; will retry", "notification_id", n.ID, "event_id", n.EventID,
			"url", n.URL, "attempt", n.Attempts+1, "err", a.Error, "retry_at", r.RetryAt)
	}
	// Record even while shutting down: the receiver has answered.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.o.Store.FinishNotification(fctx, n.ID, n.Lease, r); err != nil {
		if errors.Is(err, store.ErrStale) {
			s.log.Info("notification was resent or re-leased while in flight; attempt recorded", "notification_id", n.ID)
			return
		}
		s.log.Error("record notification attempt", "notification_id", n.ID, "err", err)
		return
	}
	// Committed: what the row now holds.
	n.Status, n.Attempts, n.LastError, n.LastStatus = r.Status, n.Attempts+1, r.Attempt.Error, r.Attempt.StatusCode
	s.publish(store.ChangeOf(n))
}

// publish announces a committed change; Publish never blocks.
func (s *Sender) publish(c store.NotificationChange) {
	if s.o.Publish != nil {
		s.o.Publish(store.NotificationEventType, c)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// send makes one request. It returns the attempt, the receiver's
// Retry-After (0 if none), and whether it answered 410.
func (s *Sender) send(ctx context.Context, n store.Notification, now time.Time) (store.NotificationAttempt, time.Duration, bool) {
	a := store.NotificationAttempt{At: now}
	body, err := Body(n)
	if err != nil {
		a.Error = "encode payload: " + err.Error()
		s.attempts.Inc("error")
		return a, 0, false
	}
	rctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, n.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = "build request: " + err.Error()
		s.attempts.Inc("error")
		return a, 0, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "trainhook")
	Sign(req.Header, s.o.Keys, n.EventID, now, body)
	t0 := time.Now()
	resp, err := s.o.Client.Do(req)
	if err != nil {
		a.Latency = time.Since(t0)
		if errors.Is(err, context.DeadlineExceeded) {
			a.Error = fmt.Sprintf("no answer within %s", s.o.Timeout)
			s.attempts.Inc("timeout")
		} else {
			a.Error = err.Error()
			s.attempts.Inc("error")
		}
		return a, 0, false
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	a.Latency = time.Since(t0)
	a.StatusCode = resp.StatusCode
	s.attempts.Inc(strconv.Itoa(resp.StatusCode/100) + "xx")
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return a, 0, false
	}
	a.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		a.Error += " (redirects are not followed; point the URL at the final address)"
	}
	if t := strings.TrimSpace(string(bytes.ToValidUTF8(snippet, nil))); t != "" {
		a.Error += ": " + truncate(t, 200)
	}
	wait, _ := RetryAfter(resp.Header.Get("Retry-After"), s.o.Now())
	return a, wait, resp.StatusCode == http.StatusGone
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}
