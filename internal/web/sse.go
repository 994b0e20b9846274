package web

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/events"
)

// heartbeat is how often an idle stream sends a comment line, so the
// client and any proxy between see the connection is alive. A variable so
// tests need not wait 15 s.
var heartbeat = 15 * time.Second

// writeWait bounds each write to a client that stopped reading.
var writeWait = 10 * time.Second

const (
	// streamBuffer is how many events a slow client may fall behind before
	// the broker drops it; it then reconnects and resumes.
	streamBuffer = 256
	// retryMillis is the reconnection delay the stream asks browsers for.
	retryMillis = 2000
)

// events serves GET /api/events as Server-Sent Events: "id:" is the
// broker's event ID, "event:" its type, "data:" its JSON. A client resumes
// after the ID in its Last-Event-ID header (or ?last_event_id=). When the
// events after that ID are no longer kept, the stream starts with an event
// "reset": the client must reload its state. Event IDs start again with
// every process; a client that names the stream it resumes (?instance=, as
// the dashboard's script does) also gets a reset after a restart.
func (s *server) events(w http.ResponseWriter, r *http.Request) error {
	last, err := requestedLastID(r)
	if err != nil {
		return err
	}
	onlyModel := r.URL.Query().Get("model")
	if len(onlyModel) > 64 {
		return invalid("model must be a model id, got %q", clip(onlyModel, 30))
	}
	write := func(bw *bufio.Writer, ev events.Event) {
		// A reset (live updates from other instances were lost) concerns
		// every model.
		if onlyModel == "" || ev.Type == "reset" || eventModel(ev) == onlyModel {
			writeEvent(bw, ev)
		}
	}
	otherProcess := r.URL.Query().Has("instance") && r.URL.Query().Get("instance") != s.instance
	if otherProcess {
		last = 0 // its IDs name events of another process
	}
	rc := http.NewResponseController(w)
	// The server's read and write timeouts are for ordinary requests; a
	// stream lives until the client goes, and each write has its own bound.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("clear the read deadline of an event stream: %w", err)
	}
	_ = rc.SetWriteDeadline(time.Now().Add(writeWait))

	sub, ok := s.d.Broker.Subscribe(last, streamBuffer)
	defer sub.Close()
	missed := !ok || otherProcess
	closing := s.streams.closing(r)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	bw := bufio.NewWriter(w)
	// send bounds the writes it makes (an event larger than the buffer is
	// written before the flush) and the flush; false: the client is gone.
	send := func(write func()) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		write()
		return bw.Flush() == nil && rc.Flush() == nil
	}
	ok = send(func() {
		fmt.Fprintf(bw, "retry: %d\n\n", retryMillis)
		if missed {
			fmt.Fprintf(bw, "event: reset\ndata: {\"reason\":\"events were missed (too old, or the server restarted); reload the current state\"}\n\n")
		}
	})
	if !ok {
		return nil
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-closing:
			return nil
		case ev, open := <-sub.C:
			if !open {
				// Dropped for falling behind: the client reconnects with
				// Last-Event-ID and the broker replays what it kept.
				return nil
			}
			ok := send(func() {
				write(bw, ev)
				// Send what else is already queued in the same flush.
				for n := len(sub.C); n > 0; n-- {
					if ev, open := <-sub.C; open {
						write(bw, ev)
					}
				}
			})
			if !ok {
				return nil
			}
		case <-tick.C:
			if !send(func() { bw.WriteString(": heartbeat\n\n") }) {
				return nil
			}
		}
	}
}

// eventModel is the id of the model an event is about: a "model" event
// carries the model, others ("delivery", "notification") its model_id;
// "" when none.
func eventModel(ev events.Event) string {
	if ev.Type == "model" {
		var m struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(ev.Data, &m) != nil {
			return ""
		}
		return m.ID
	}
	// Only model_id is read: a notification's own "id" is a number.
	var v struct {
		ModelID string `json:"model_id"`
	}
	if json.Unmarshal(ev.Data, &v) != nil {
		return ""
	}
	return v.ModelID
}

func writeEvent(w *bufio.Writer, ev events.Event) {
	// json.Marshal output has no raw newlines, so data is one line.
	fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, ev.Data)
}

// requestedLastID reads Last-Event-ID, which a reconnecting browser sends,
// or else ?last_event_id=.
func requestedLastID(r *http.Request) (uint64, error) {
	v := r.Header.Get("Last-Event-ID")
	name := "Last-Event-ID"
	if v == "" {
		v, name = r.URL.Query().Get("last_event_id"), "last_event_id"
	}
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, invalid("%s must be the id of an event this server sent (a whole number), got %q", name, clip(v, 30))
	}
	return id, nil
}

// newInstance is a random name for this server's event stream.
func newInstance() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// streams ends event streams when their server shuts down: Shutdown waits
// for active requests, and a stream would otherwise hold it until its
// deadline.
type streams struct {
	mu      sync.Mutex
	byServe map[*http.Server]chan struct{}
}

func newStreams() *streams { return &streams{byServe: map[*http.Server]chan struct{}{}} }

// closing returns a channel closed when the server serving r shuts down.
func (st *streams) closing(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	ch, ok := st.byServe[srv]
	if !ok {
		ch = make(chan struct{})
		st.byServe[srv] = ch
		srv.RegisterOnShutdown(func() {
			st.mu.Lock()
			defer st.mu.Unlock()
			close(ch)
			delete(st.byServe, srv)
		})
	}
	return ch
}
