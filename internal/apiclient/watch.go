package apiclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// Defaults for WatchOptions.
const (
	DefaultPollInterval = 500 * time.Millisecond
	// DefaultSafetyPoll is how often the model is still read while events
	// flow, in case something between holds the stream back.
	DefaultSafetyPoll = 5 * time.Second
	// DefaultMaxOutage is how long Watch rides out a server it cannot
	// reach (a restart) before giving up.
	DefaultMaxOutage = 30 * time.Second
	// connectTimeout bounds opening the event stream.
	connectTimeout = 10 * time.Second
	// maxEventLine bounds one line of the event stream.
	maxEventLine = 4 << 20
)

// WatchOptions tune Watch. The zero value follows GET /api/events when the
// server has it and polls otherwise.
type WatchOptions struct {
	// PollInterval is how often the model is read when there is no event
	// stream (DefaultPollInterval when 0).
	PollInterval time.Duration
	// NoEvents polls only, never opening GET /api/events.
	NoEvents bool
	// MaxOutage is how long the server may be unreachable or answer 5xx
	// before Watch returns the error (DefaultMaxOutage when 0).
	MaxOutage time.Duration
}

// Watch follows one model until it reaches a final status (Ready, Failed or
// Canceled). fn is called with the model as it is now, then after each
// change, from Watch's goroutine. It returns the model as it ended, with its
// history. When ctx ends first it returns the last model seen and ctx's
// error: watching never cancels anything.
//
// It listens to the server's event stream (GET /api/events) and reads the
// model every few seconds as well; when the server has no event stream, or
// the stream breaks and cannot be resumed, it polls GET /api/models/{id}.
func (c *Client) Watch(ctx context.Context, id string, o WatchOptions, fn func(training.Model)) (ModelDetail, error) {
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MaxOutage <= 0 {
		o.MaxOutage = DefaultMaxOutage
	}
	if fn == nil {
		fn = func(training.Model) {}
	}
	if err := checkID(id); err != nil {
		return ModelDetail{}, err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()

	// Subscribe before the first read, so no change falls between them.
	var events <-chan streamItem
	if !o.NoEvents {
		var opened <-chan struct{}
		events, opened = c.follow(sctx, id)
		select {
		case <-opened:
		case <-ctx.Done():
			return ModelDetail{}, ctx.Err()
		}
	}
	last, err := c.Model(ctx, id)
	if err != nil {
		return ModelDetail{}, err
	}
	fn(last.Model)
	if last.Status.Terminal() {
		return last, nil
	}

	interval := o.PollInterval
	if events != nil {
		interval = DefaultSafetyPoll
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var failingSince time.Time

	consider := func(m training.Model) {
		if m.ID != id || !m.UpdatedAt.After(last.UpdatedAt) {
			return // an older state than the one shown
		}
		last.Model = m
		fn(m)
	}
	read := func() error {
		d, err := c.Model(ctx, id)
		switch {
		case err == nil:
			failingSince = time.Time{}
			if d.UpdatedAt.After(last.UpdatedAt) {
				last = d
				fn(d.Model)
			}
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case IsUnreachable(err) || StatusCode(err) >= 500:
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > o.MaxOutage {
				return err
			}
			return nil
		}
		return err
	}

	for !last.Status.Terminal() {
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case it, open := <-events:
			switch {
			case !open:
				// No stream, or it broke for good: poll.
				events = nil
				tick.Reset(o.PollInterval)
				if err := read(); err != nil {
					return last, err
				}
			case it.reset:
				// Events were missed; read the current state.
				if err := read(); err != nil {
					return last, err
				}
			default:
				consider(it.model)
			}
		case <-tick.C:
			if err := read(); err != nil {
				return last, err
			}
		}
	}
	// The final state came from an event, which carries no history: read
	// the whole record once more.
	if d, err := c.Model(ctx, id); err == nil && d.Status.Terminal() {
		last = d
	}
	return last, nil
}

// streamItem is one model event for the watched id, or a reset (events were
// missed: re-read the model).
type streamItem struct {
	model training.Model
	reset bool
}

// follow streams the model events of one model. The channel is closed when
// the server has no event stream or it broke and could not be resumed.
// opened is closed once the first attempt to open the stream has succeeded
// (the server has subscribed it) or failed.
func (c *Client) follow(ctx context.Context, id string) (_ <-chan streamItem, opened <-chan struct{}) {
	ch := make(chan streamItem, 16)
	ready := make(chan struct{})
	var once sync.Once
	markReady := func() { once.Do(func() { close(ready) }) }
	go func() {
		defer close(ch)
		defer markReady()
		var lastID string
		failures := 0
		for ctx.Err() == nil && failures < 3 {
			got, err := c.stream(ctx, lastID, markReady, func(evID, typ string, data []byte) bool {
				if evID != "" {
					lastID = evID
				}
				var it streamItem
				switch typ {
				case "model":
					if json.Unmarshal(data, &it.model) != nil || it.model.ID != id {
						return true
					}
				case "reset":
					it.reset = true
				default:
					return true
				}
				select {
				case ch <- it:
					return true
				case <-ctx.Done():
					return false
				}
			})
			markReady()
			var unavailable *noStreamError
			if errors.As(err, &unavailable) {
				return
			}
			if got {
				failures = 0
			} else {
				failures++
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(failures) * 500 * time.Millisecond):
			}
		}
	}()
	return ch, ready
}

// noStreamError means the server answered GET /api/events with something
// other than an event stream: it has none (an older server), or refuses it.
type noStreamError struct{ code int }

func (e *noStreamError) Error() string {
	return "the server has no event stream (GET /api/events answered " + strconv.Itoa(e.code) + ")"
}

// stream reads GET /api/events until it ends, calling opened once the
// stream is open, then fn for each event until fn returns false. got
// reports whether the stream was opened.
func (c *Client) stream(ctx context.Context, lastID string, opened func(), fn func(id, typ string, data []byte) bool) (got bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := http.Header{"Accept": {"text/event-stream"}}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	req, err := c.newRequest(sctx, http.MethodGet, "/api/events", nil, nil, h)
	if err != nil {
		return false, err
	}
	timer := time.AfterFunc(connectTimeout, cancel)
	resp, err := c.httpClient().Do(req)
	if !timer.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		return false, fmt.Errorf("open the event stream: no answer in %s", connectTimeout)
	}
	if err != nil {
		return false, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		return false, &noStreamError{code: resp.StatusCode}
	}
	opened()

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	var evID, typ string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // dispatch
			if typ != "" || len(data) > 0 {
				if typ == "" {
					typ = "message"
				}
				if !fn(evID, typ, data) {
					return true, nil
				}
			}
			evID, typ, data = "", "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: the server's heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			evID = value
		case "event":
			typ = value
		case "data":
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return true, fmt.Errorf("read the event stream: %w", err)
	}
	return true, nil
}
