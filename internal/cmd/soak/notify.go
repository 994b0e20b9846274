package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// notifyEvents is every event type trainhook can send; the soak asks for
// all of them, so per-model order is tested across more than one event.
const notifyEvents = "model.training,model.ready,model.failed,model.canceled"

// holdFor is how long a "timed out" request is held: longer than
// trainhook's fixed 15 s notification timeout, so trainhook gives up on it.
const holdFor = 16 * time.Second

// arrival is one request that reached the receiver and passed verification.
type arrival struct {
	ID       string    // webhook-id
	Type     string    // the payload's type
	ModelID  string    // data.model.id
	Sequence int64     // data.sequence
	Body     [32]byte  // SHA-256 of the body
	EventAt  time.Time // the payload's timestamp: the change's commit
	At       time.Time // received
	Status   int       // what the receiver answered
}

// receiver is the app's stand-in: an HTTP server on loopback that verifies
// each notification and misbehaves as a real app does at times (500s,
// answers too slow to wait for, down for a stretch).
type receiver struct {
	keys     replicate.Keys
	secret   string
	addr     string
	failRate float64
	holdRate float64
	maxHolds int

	mu         sync.Mutex
	srv        *http.Server
	rng        *mrand.Rand
	arrivals   []arrival
	faults     map[string]int // faults injected per webhook-id
	holds      int
	badSig     int
	badExample []string
	downFrom   time.Time
	upAt       time.Time // zero while the stretch has not ended
	handlers   sync.WaitGroup
}

func newReceiver(o options, seed uint64) (*receiver, error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := replicate.NewKey(raw)
	rc := &receiver{keys: replicate.Keys{key}, secret: key.Secret(), failRate: o.notifyFailRate, holdRate: o.notifyTimeoutRate,
		// Each held request ties up one of trainhook's sender slots for
		// 15 s: bounded, so a long run is not slowed down by them.
		maxHolds: max(2, min(20, o.n/20)),
		rng:      mrand.New(mrand.NewPCG(seed, seed^0x7eceaeb)), faults: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("notification receiver: %w", err)
	}
	rc.addr = ln.Addr().String()
	rc.serve(ln)
	return rc, nil
}

func (rc *receiver) url() string { return "http://" + rc.addr + "/notifications" }

func (rc *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(rc.handle), ReadHeaderTimeout: 10 * time.Second}
	rc.mu.Lock()
	rc.srv = srv
	rc.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// goDown closes the listener and every connection: trainhook's requests
// are refused until comeUp.
func (rc *receiver) goDown() {
	rc.mu.Lock()
	srv := rc.srv
	rc.srv = nil
	rc.downFrom = time.Now()
	rc.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// comeUp listens on the same port again. The port was just ours, but a
// moment may pass before it can be bound again: try for a while.
func (rc *receiver) comeUp() error {
	var lastErr error
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp", rc.addr)
		if err == nil {
			rc.mu.Lock()
			rc.upAt = time.Now()
			rc.mu.Unlock()
			rc.serve(ln)
			return nil
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("notification receiver: listen again on %s: %w", rc.addr, lastErr)
}

func (rc *receiver) close() {
	rc.goDown()
	rc.handlers.Wait()
}

// maxFaults is how many faults the receiver injects into one event. An
// event whose attempts may have been refused while the receiver was down
// gets one; others two. Every failure multiplies trainhook's backoff by
// three (5 s, 15 s, 45 s, 135 s...), so this keeps an unlucky event's
// last retry within a minute and the soak's drain bounded, while every
// event still sees every kind of failure somewhere in the run.
func (rc *receiver) maxFaults(eventAt time.Time) int {
	if !rc.downFrom.IsZero() && eventAt.After(rc.downFrom.Add(-time.Minute)) && (rc.upAt.IsZero() || eventAt.Before(rc.upAt)) {
		return 1
	}
	return 2
}

func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	rc.handlers.Add(1)
	defer rc.handlers.Done()
	now := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var p struct {
		Type      string `json:"type"`
		Timestamp string `json:"timestamp"`
		Data      struct {
			Model    struct{ ID string } `json:"model"`
			Sequence int64               `json:"sequence"`
		} `json:"data"`
	}
	verr := rc.keys.Verify(r.Header, body, now)
	var eventAt time.Time
	if verr == nil {
		if err := json.Unmarshal(body, &p); err != nil {
			verr = fmt.Errorf("payload: %w", err)
		} else if eventAt, err = time.Parse(time.RFC3339Nano, p.Timestamp); err != nil {
			verr = fmt.Errorf("payload timestamp: %w", err)
		} else if p.Type == "" || p.Data.Model.ID == "" || p.Data.Sequence < 1 {
			verr = errors.New("payload without type, data.model.id or a positive data.sequence")
		}
	}
	if verr != nil {
		rc.mu.Lock()
		rc.badSig++
		if len(rc.badExample) < 5 {
			rc.badExample = append(rc.badExample, fmt.Sprintf("%s: %v", r.Header.Get(replicate.HeaderID), verr))
		}
		rc.mu.Unlock()
		http.Error(w, "verification failed: "+verr.Error(), http.StatusBadRequest)
		return
	}
	a := arrival{ID: r.Header.Get(replicate.HeaderID), Type: p.Type, ModelID: p.Data.Model.ID, Sequence: p.Data.Sequence,
		Body: sha256.Sum256(body), EventAt: eventAt, At: now, Status: http.StatusOK}
	hold := false
	rc.mu.Lock()
	if rc.faults[a.ID] < rc.maxFaults(eventAt) {
		switch u := rc.rng.Float64(); {
		case u < rc.holdRate && rc.holds < rc.maxHolds:
			hold, a.Status = true, http.StatusServiceUnavailable
			rc.holds++
			rc.faults[a.ID]++
		case u < rc.holdRate+rc.failRate:
			a.Status = http.StatusInternalServerError
			rc.faults[a.ID]++
		}
	}
	rc.arrivals = append(rc.arrivals, a)
	rc.mu.Unlock()
	if hold {
		t := time.NewTimer(holdFor)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	if a.Status != http.StatusOK {
		http.Error(w, "the soak's receiver fails this one on purpose", a.Status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// snapshot returns what the receiver has seen so far.
func (rc *receiver) snapshot() (arrivals []arrival, badSig int, badExamples []string, holds int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]arrival(nil), rc.arrivals...), rc.badSig, append([]string(nil), rc.badExample...), rc.holds
}

// downtime takes the receiver down for o.notifyDown once a third of the
// trainings have been started, so events pile up and are retried.
func (r *runState) downtime(ctx context.Context, stop <-chan struct{}) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for r.started.Load() < int64(r.o.n/3) {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	r.logf("notification receiver down for %s", r.o.notifyDown)
	r.recv.goDown()
	select {
	case <-time.After(r.o.notifyDown):
	case <-ctx.Done():
	}
	r.logf("notification receiver up again")
	return r.recv.comeUp()
}

// waitDrained waits until the outbox has no pending notification, for up
// to limit: every event has been answered 2xx (or given up on).
func (r *runState) waitDrained(ctx context.Context, limit time.Duration) error {
	began := time.Now()
	for {
		var p struct {
			Notifications []json.RawMessage `json:"notifications"`
		}
		if err := r.getJSON(ctx, "/api/notifications?status=pending&limit=1000", &p); err != nil {
			return fmt.Errorf("notifications outbox: %w", err)
		}
		if len(p.Notifications) == 0 {
			r.rep.Notify.DrainedAfterSeconds = time.Since(began).Seconds()
			return nil
		}
		if time.Since(began) > limit {
			return fmt.Errorf("notifications outbox not drained within %s: %d pending", limit, len(p.Notifications))
		}
		r.logf("%d notifications pending", len(p.Notifications))
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return fmt.Errorf("notifications outbox not drained: %d pending", len(p.Notifications))
		}
	}
}

// notifyFigures is what checkNotifications finds.
type notifyFigures struct {
	Received   int // verified requests
	Accepted   int // answered 2xx
	Events     int // distinct webhook-ids
	Duplicates int // 2xx answers to an event already answered 2xx
	Retries    int // requests beyond each event's first

	Lost       int // a final status never answered 2xx
	BodyChange int // requests whose body differs from their webhook-id's first
	OutOfOrder int // first arrivals of a model's events out of sequence order

	Lag      []float64 // per event, commit to first 2xx, seconds
	Problems []string
}

// checkNotifications compares what arrived with the models' final
// statuses (model id → status): every final status notified at least once,
// one body per webhook-id, and per model the events' first arrivals in
// sequence order.
func checkNotifications(arrivals []arrival, finals map[string]training.Status) notifyFigures {
	var f notifyFigures
	type event struct {
		body     [32]byte
		accepted bool
	}
	events := map[string]*event{}
	notified := map[[2]string]bool{} // model id, type answered 2xx
	maxSeq := map[string]int64{}
	problem := func(format string, args ...any) {
		if len(f.Problems) < 20 {
			f.Problems = append(f.Problems, fmt.Sprintf(format, args...))
		}
	}
	for _, a := range arrivals {
		f.Received++
		ok := a.Status >= 200 && a.Status < 300
		e := events[a.ID]
		if e == nil {
			e = &event{body: a.Body}
			events[a.ID] = e
			if a.Sequence < maxSeq[a.ModelID] {
				f.OutOfOrder++
				problem("model %s: event %s (sequence %d, %s) arrived first after sequence %d", a.ModelID, a.ID, a.Sequence, a.Type, maxSeq[a.ModelID])
			}
			maxSeq[a.ModelID] = max(maxSeq[a.ModelID], a.Sequence)
		} else {
			f.Retries++
			if e.body != a.Body {
				f.BodyChange++
				problem("event %s of model %s was sent with a different body", a.ID, a.ModelID)
			}
		}
		if !ok {
			continue
		}
		f.Accepted++
		if e.accepted {
			f.Duplicates++
		} else {
			e.accepted = true
			f.Lag = append(f.Lag, a.At.Sub(a.EventAt).Seconds())
		}
		notified[[2]string{a.ModelID, a.Type}] = true
	}
	f.Events = len(events)
	for id, st := range finals {
		typ := service.EventType(st)
		if typ == "" || !st.Terminal() {
			continue
		}
		if !notified[[2]string{id, typ}] {
			f.Lost++
			problem("model %s is %s, but no %s notification was answered 2xx", id, st, typ)
		}
	}
	return f
}
