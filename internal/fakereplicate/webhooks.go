package fakereplicate

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// How webhooks are sent:
//
// One scheduler goroutine owns a heap of timed events: a training's
// "start", its next "logs" tick, its end, and each pending delivery attempt
// (delayed, duplicated or retried). A training without a webhook puts
// nothing on it. Each attempt runs in its own short-lived goroutine, at
// most 64 at once, so a slow receiver never holds up the schedule.
//
// Only the terminal message ("completed") is retried: on a connection
// error or any non-2xx answer (redirects are not followed), after
// window/32, window/16, ... window/2, so the last of 6 attempts comes about
// one window after the first. Every attempt of a message keeps its
// webhook-id and gets a fresh timestamp and signature.

type eventKind int

const (
	evStart eventKind = iota
	evLogs
	evTerminal
	evSend
)

type event struct {
	at   time.Time
	seq  uint64
	kind eventKind
	t    *simTraining
	send *send
}

type eventQueue struct {
	items []*event
	seq   uint64
}

func (q *eventQueue) Len() int { return len(q.items) }
func (q *eventQueue) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	return a.seq < b.seq
}
func (q *eventQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *eventQueue) Push(x any)    { q.items = append(q.items, x.(*event)) }
func (q *eventQueue) Pop() any {
	n := len(q.items)
	it := q.items[n-1]
	q.items[n-1] = nil
	q.items = q.items[:n-1]
	return it
}

// message is one webhook: one event of one training, with a fixed body
// and webhook-id for all its attempts.
type message struct {
	id       string
	t        *simTraining
	event    string
	status   string
	url      string
	body     []byte
	terminal bool
}

// send is one planned attempt of a message.
type send struct {
	msg     *message
	attempt int
	dup     bool
}

const maxAttempts = 6

// push adds an event and wakes the scheduler. s.mu is held.
func (s *Server) push(ev *event) {
	s.queue.seq++
	ev.seq = s.queue.seq
	heap.Push(&s.queue, ev)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// scheduleTraining plans a new training's webhook events. s.mu is held.
func (s *Server) scheduleTraining(t *simTraining) {
	if t.outcome != statusAborted {
		if t.events["start"] {
			s.push(&event{at: t.startAt, kind: evStart, t: t})
		}
		if t.events["logs"] {
			s.push(&event{at: t.startAt.Add(s.interval), kind: evLogs, t: t})
		}
	}
	s.push(&event{at: t.endAt, kind: evTerminal, t: t})
}

func (s *Server) loop() {
	defer close(s.loopDone)
	var settled []chan struct{}
	for {
		s.mu.Lock()
		now := s.clock.Now()
		// A bounded batch, so that API calls get the lock between batches
		// when thousands of trainings end at once.
		for n := 0; s.queue.Len() > 0 && !s.queue.items[0].at.After(now) && n < 256; n++ {
			s.runEvent(heap.Pop(&s.queue).(*event), now)
		}
		wait := time.Duration(-1)
		if s.queue.Len() > 0 {
			wait = max(0, s.queue.items[0].at.Sub(now))
		}
		if wait != 0 {
			for _, ch := range settled {
				close(ch)
			}
			settled = nil
		}
		s.mu.Unlock()

		var fire <-chan time.Time
		stop := func() {}
		if wait >= 0 {
			fire, stop = s.clock.NewTimer(wait)
		}
		select {
		case <-fire:
		case <-s.wake:
		case ch := <-s.settle:
			settled = append(settled, ch)
		case <-s.done:
			stop()
			return
		}
		stop()
	}
}

// Settle waits until every event due at the clock's current time has been
// handled and every delivery attempt started has ended. With a
// ManualClock, a test calls it after Advance to see the deliveries that
// moment caused, without polling.
func (s *Server) Settle() {
	ch := make(chan struct{})
	select {
	case s.settle <- ch:
	case <-s.done:
		return
	}
	select {
	case <-ch:
	case <-s.done:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.active > 0 {
		s.idle.Wait()
	}
}

// runEvent handles one due event. s.mu is held.
func (s *Server) runEvent(ev *event, now time.Time) {
	t := ev.t
	switch ev.kind {
	// Start and logs events show the training as it was when they were
	// due, so that a clock that jumps (a ManualClock) still sees every one.
	case evStart:
		if t.stateAt(ev.at).status == statusProcessing {
			s.emit(t, "start", false, ev.at, now)
		}
	case evLogs:
		st := t.stateAt(ev.at)
		if st.status != statusProcessing {
			return
		}
		if len(st.logs) > t.lastLogsLen {
			t.lastLogsLen = len(st.logs)
			s.emit(t, "logs", false, ev.at, now)
		}
		next := ev.at.Add(s.interval)
		if now.Sub(next) > 10*s.interval {
			// Far behind (the clock jumped, or the machine is overloaded):
			// skip ahead rather than send a burst of stale logs.
			next = now
		}
		if next.Before(t.endAt) {
			s.push(&event{at: next, kind: evLogs, t: t})
		}
	case evTerminal:
		if t.terminalSent {
			return
		}
		if !terminal(t.stateAt(now).status) {
			// Cannot happen with a monotonic clock; look again later, never
			// in a busy loop.
			at := t.endAt
			if !at.After(now) {
				at = now.Add(time.Second)
			}
			s.push(&event{at: at, kind: evTerminal, t: t})
			return
		}
		t.terminalSent = true
		switch {
		case t.events["completed"]:
			s.emit(t, "completed", true, now, now)
		case t.events["output"] && t.stateAt(now).status == statusSucceeded:
			// A training's output appears only when it succeeds; with
			// "output" but not "completed" that is the one message, and
			// like any non-terminal event it is not retried.
			s.emit(t, "output", false, now, now)
		}
	case evSend:
		s.launch(ev.send)
	}
}

// emit builds a message with the training as it was at `at` and plans its
// delivery, applying the webhook faults. s.mu is held.
func (s *Server) emit(t *simTraining, eventName string, isTerminal bool, at, now time.Time) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(t.json(at, viewWebhook, t.baseURL))
	msg := &message{
		id: "msg_" + s.randAlnum(27, true), t: t, event: eventName, status: t.stateAt(at).status,
		url: t.webhook, body: bytes.TrimSuffix(body.Bytes(), []byte("\n")), terminal: isTerminal,
	}
	f := s.faults
	if f.DropWebhooks > 0 && s.rng.Float64() < f.DropWebhooks {
		s.stats.WebhooksDropped++
		s.record(Delivery{
			WebhookID: msg.id, TrainingID: t.id, Event: eventName, TrainingStatus: msg.status, URL: msg.url, At: now,
			Dropped: true, Error: "dropped by fault injection (drop_webhooks)",
		})
		return
	}
	delay := f.DelayWebhooks
	if f.ReorderWebhooks {
		delay += time.Duration(s.rng.Int64N(int64(2 * time.Second)))
	}
	s.plan(&send{msg: msg, attempt: 1}, now, delay)
	if f.DupWebhooks > 0 && s.rng.Float64() < f.DupWebhooks {
		s.plan(&send{msg: msg, attempt: 1, dup: true}, now, delay+time.Duration(s.rng.Int64N(int64(250*time.Millisecond))))
	}
}

// plan sends now or puts the attempt on the schedule. s.mu is held.
func (s *Server) plan(sd *send, now time.Time, delay time.Duration) {
	if delay <= 0 {
		s.launch(sd)
		return
	}
	s.push(&event{at: now.Add(delay), kind: evSend, send: sd})
}

// launch starts one attempt. Only the scheduler goroutine launches, so no
// attempt starts after Close has stopped it.
func (s *Server) launch(sd *send) {
	if s.hookCtx.Err() != nil {
		return
	}
	s.inflight.Add(1)
	s.active++
	go s.deliver(sd)
}

func (s *Server) deliver(sd *send) {
	defer s.inflight.Done()
	at, code, errText, done := s.try(sd.msg)

	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.attemptDone()
	if !done {
		return // closing: the attempt was cut short by us, not the receiver
	}
	msg := sd.msg
	ok := errText == "" && code >= 200 && code < 300
	retry := !ok && msg.terminal && !sd.dup && sd.attempt < maxAttempts
	s.stats.WebhookAttempts++
	if ok {
		s.stats.WebhooksDelivered++
	} else {
		s.stats.WebhooksFailed++
	}
	s.record(Delivery{
		WebhookID: msg.id, TrainingID: msg.t.id, Event: msg.event, TrainingStatus: msg.status, URL: msg.url,
		Attempt: sd.attempt, Duplicate: sd.dup, At: at, StatusCode: code, Error: errText, WillRetry: retry,
	})
	if retry {
		wait := s.opts.WebhookRetryWindow / 32 << (sd.attempt - 1)
		s.push(&event{at: s.clock.Now().Add(wait), kind: evSend, send: &send{msg: msg, attempt: sd.attempt + 1}})
	}
}

// try makes one attempt once a delivery slot is free. done is false when
// the simulator is closing.
func (s *Server) try(msg *message) (at time.Time, code int, errText string, done bool) {
	select {
	case s.sem <- struct{}{}:
	case <-s.hookCtx.Done():
		return at, 0, "", false
	}
	defer func() { <-s.sem }()
	at = s.clock.Now()
	code, errText = s.post(msg, at)
	return at, code, errText, s.hookCtx.Err() == nil
}

// attemptDone counts an attempt as ended. s.mu is held.
func (s *Server) attemptDone() {
	s.active--
	if s.active == 0 {
		s.idle.Broadcast()
	}
}

// post makes one signed delivery attempt and returns the status code, or
// the error as text.
func (s *Server) post(msg *message, at time.Time) (int, string) {
	req, err := http.NewRequestWithContext(s.hookCtx, http.MethodPost, msg.url, bytes.NewReader(msg.body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Replicate-Webhooks/1.0 (trainhook fake-replicate)")
	s.key.SignRequest(req.Header, msg.id, at, msg.body)
	resp, err := s.hooks.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, ""
}

// errNotLoopback is why a delivery to anything but this machine fails.
var errNotLoopback = errors.New("fake-replicate only delivers webhooks to loopback addresses (127.0.0.0/8, ::1, localhost)")

// newWebhookClient returns the client that delivers webhooks. It never
// leaves the machine: host names other than localhost are refused before
// any DNS lookup, and the dialer's Control refuses every non-loopback
// address before a packet is sent. It uses no proxy and does not follow
// redirects (Replicate does not: a 3xx is a failed attempt).
func newWebhookClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, Control: loopbackOnly}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if strings.EqualFold(host, "localhost") {
				host = "127.0.0.1"
			}
			if net.ParseIP(host) == nil {
				return nil, fmt.Errorf("dial %s: %w", addr, errNotLoopback)
			}
			return dialer.DialContext(ctx, network, net.JoinHostPort(host, port))
		},
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// loopbackOnly is a net.Dialer Control: it runs after the socket is made
// and before it connects, and refuses any address not on loopback.
func loopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("dial %s %s: %w", network, address, errNotLoopback)
	}
	return nil
}
