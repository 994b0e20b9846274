package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

// NotifyStats is what the notification receiver saw: with --notify the
// server under test sends a signed model.ready notification for every
// delivery, and the bench measures ingest with that work going on.
type NotifyStats struct {
	Addr string `json:"addr"`
	// Requests that passed verification, and those that did not.
	Received           int `json:"received"`
	FailedVerification int `json:"failed_verification"`
	// Models of this run notified model.ready (at least once).
	Notified int `json:"notified"`
	// Seconds from the end of the deliveries until every model was notified.
	DrainSeconds float64 `json:"drain_seconds"`
	// Lag from the change's commit (the payload's timestamp) to its first
	// arrival, in milliseconds.
	Lag Latency `json:"lag_ms"`
}

// notifyReceiver answers 200 to every notification that verifies, and
// records when each model's model.ready first arrived.
type notifyReceiver struct {
	keys replicate.Keys
	srv  *http.Server

	mu       sync.Mutex
	received int
	bad      int
	badFirst string
	first    map[string]time.Duration // model id → lag of its first model.ready
	changed  chan struct{}            // signalled after each new model
}

// startNotifyReceiver listens on addr, which must be a loopback address.
func startNotifyReceiver(addr string, keys replicate.Keys) (*notifyReceiver, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !loopbackHost(host) {
		return nil, fmt.Errorf("--notify %q: want a loopback HOST:PORT to listen on, such as 127.0.0.1:8091", addr)
	}
	if len(keys) == 0 {
		return nil, errors.New("--notify needs the server's TRAINHOOK_NOTIFY_SECRET: --notify-secret whsec_... or TRAINHOOK_NOTIFY_SECRET")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--notify: %w", err)
	}
	rc := &notifyReceiver{keys: keys, first: map[string]time.Duration{}, changed: make(chan struct{}, 1)}
	rc.srv = &http.Server{Handler: http.HandlerFunc(rc.handle), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *notifyReceiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = rc.srv.Shutdown(ctx)
}

func (rc *notifyReceiver) handle(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = rc.keys.Verify(r.Header, body, now)
	}
	var p struct {
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
		Data      struct {
			Model struct{ ID string } `json:"model"`
		} `json:"data"`
	}
	if err == nil {
		err = json.Unmarshal(body, &p)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		rc.bad++
		if rc.badFirst == "" {
			rc.badFirst = err.Error()
		}
		http.Error(w, "verification failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	rc.received++
	if _, seen := rc.first[p.Data.Model.ID]; p.Type == "model.ready" && !seen {
		rc.first[p.Data.Model.ID] = now.Sub(p.Timestamp)
		select {
		case rc.changed <- struct{}{}:
		default:
		}
	}
	w.WriteHeader(http.StatusOK)
}

// notified counts the models among ids whose model.ready has arrived.
func (rc *notifyReceiver) notified(ids []string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, ok := rc.first[id]; ok {
			n++
		}
	}
	return n
}

// wait waits until every model of ids has been notified, or ctx ends, and
// returns the figures.
func (rc *notifyReceiver) wait(ctx context.Context, ids []string, addr string) NotifyStats {
	began := time.Now()
	for rc.notified(ids) < len(ids) {
		select {
		case <-ctx.Done():
		case <-rc.changed:
			continue
		case <-time.After(time.Second):
			continue
		}
		break
	}
	st := NotifyStats{Addr: addr, DrainSeconds: time.Since(began).Seconds()}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	st.Received, st.FailedVerification = rc.received, rc.bad
	lags := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		if d, ok := rc.first[id]; ok {
			lags = append(lags, d)
		}
	}
	st.Notified = len(lags)
	st.Lag = percentiles(lags)
	return st
}
