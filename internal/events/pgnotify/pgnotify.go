// Package pgnotify carries live updates between trainhook instances that
// share a PostgreSQL database, with LISTEN/NOTIFY: a change one instance
// commits reaches the dashboards connected to every instance.
//
// A Bridge stands where the service publishes: Publish hands the event to
// this instance's events.Broker, as before, and queues a notification for
// the others. Its Run loop sends the queue (many notifications in one round
// trip) and listens on a dedicated connection, republishing what the other
// instances send into the local broker.
package pgnotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/training"
)

// Channel is the default notification channel.
const Channel = "trainhook_events"

// ListenerApplicationName is the application_name of the listening
// connection, so that it can be told apart in pg_stat_activity.
const ListenerApplicationName = "trainhook-listen"

// maxPayload is the largest notification payload PostgreSQL accepts (8000
// bytes in a default build), less room to spare. A model event is usually
// 1-3 KB: the service trims its log tail to 2 KB and leaves out its input.
const maxPayload = 7900

// Options configure a Bridge.
type Options struct {
	// Channel is the LISTEN/NOTIFY channel; default Channel. Instances that
	// share a database and a channel see each other's events.
	Channel string
	// Load reads a model whose event was too large for a notification, so
	// the notification carried only its id (usually the store's GetModel).
	// Without it such events are not republished.
	Load func(ctx context.Context, id string) (training.Model, error)
	// Queue is how many events may wait to be sent; more are dropped with
	// a log line (the other instances' dashboards miss that update). Default 4096.
	Queue int
	Log   *slog.Logger
}

// Bridge publishes events to the local broker and to the other instances.
// Publish is safe for concurrent use and never blocks.
type Bridge struct {
	pool    *pgxpool.Pool
	broker  *events.Broker
	channel string
	origin  string // this instance, so it can ignore its own notifications
	// ownPrefix starts every payload this instance sends (encoding/json
	// writes the fields in order), so those are skipped without decoding.
	ownPrefix string
	load      func(context.Context, string) (training.Model, error)
	log       *slog.Logger
	queue     chan outgoing

	dropped atomic.Int64
	latest  versions

	onListen  func() // for tests: called each time the listener is listening
	listening chan struct{}
	listened  sync.Once
}

// Listening is closed once the bridge first listens for other instances'
// events; what they publish before then does not reach this one.
func (b *Bridge) Listening() <-chan struct{} { return b.listening }

type outgoing struct {
	typ  string
	data any
}

// notification is the payload: small, so that most fit in the 8000-byte
// limit with their data.
type notification struct {
	Origin  string          `json:"o"`
	Type    string          `json:"t"`
	ID      string          `json:"id,omitempty"` // the model's id, for "model" events
	Version int64           `json:"v,omitempty"`  // the model's version, to drop events that arrive out of order
	Data    json.RawMessage `json:"d,omitempty"`  // the event's data; absent when too large: load the model by ID
}

// New returns a bridge publishing into broker. Start its Run.
func New(pool *pgxpool.Pool, broker *events.Broker, o Options) *Bridge {
	if o.Channel == "" {
		o.Channel = Channel
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	var id [8]byte
	rand.Read(id[:])
	return &Bridge{
		pool: pool, broker: broker, channel: o.Channel, origin: hex.EncodeToString(id[:]),
		ownPrefix: `{"o":"` + hex.EncodeToString(id[:]) + `",`,
		load:      o.Load, log: o.Log, queue: make(chan outgoing, o.Queue),
		latest: versions{m: map[string]int64{}}, listening: make(chan struct{}),
	}
}

// Publish has events.Broker's signature and promise: call it only after
// the change has committed. The local broker gets the event at once; the
// other instances get it when Run sends it, usually within milliseconds.
func (b *Bridge) Publish(typ string, data any) {
	if m, ok := data.(training.Model); ok {
		b.latest.seen(m.ID, m.Version)
	}
	b.broker.Publish(typ, data)
	select {
	case b.queue <- outgoing{typ, data}:
	default:
		if n := b.dropped.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th... drop
			b.log.Warn("pgnotify: send queue full; other instances miss live updates", "dropped", n)
		}
	}
}

// Dropped is how many events were not sent because the queue was full.
func (b *Bridge) Dropped() int64 { return b.dropped.Load() }

// Run sends queued events and listens for the other instances' until ctx
// ends, reconnecting after errors. Before it returns it sends what is
// queued (for at most five seconds), so stop it after the service has
// stopped publishing, and before closing the pool.
func (b *Bridge) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { b.listen(ctx) })
	b.send(ctx)
	wg.Wait()
}

// notifyAll sends one notification per payload, in the array's order, in
// one statement and one transaction (so they are delivered together and in
// order): a statement per notification cost the database server a parse
// and an execution for each.
const notifyAll = `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`

// send forwards the queue: each round trip sends what has gathered, up to
// 256 notifications.
func (b *Bridge) send(ctx context.Context) {
	payloads := make([]string, 0, 256)
	flush := func(ctx context.Context, first outgoing) {
		payloads = payloads[:0]
		add := func(ev outgoing) {
			if payload, ok := b.encode(ev); ok {
				payloads = append(payloads, payload)
			}
		}
		add(first)
	gather:
		for len(payloads) < 256 {
			select {
			case ev := <-b.queue:
				add(ev)
			default:
				break gather
			}
		}
		if len(payloads) == 0 {
			return
		}
		if _, err := b.pool.Exec(ctx, notifyAll, b.channel, payloads); err != nil && ctx.Err() == nil {
			b.log.Warn("pgnotify: notify other instances", "events", len(payloads), "err", err)
		}
	}
	for {
		select {
		case ev := <-b.queue:
			flush(ctx, ev)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case ev := <-b.queue:
					flush(dctx, ev)
				default:
					return
				}
			}
		}
	}
}

func (b *Bridge) encode(ev outgoing) (string, bool) {
	n := notification{Origin: b.origin, Type: ev.typ}
	if m, ok := ev.data.(training.Model); ok {
		n.ID, n.Version = m.ID, m.Version
	}
	data, err := json.Marshal(ev.data)
	if err != nil {
		b.log.Error("pgnotify: cannot encode event", "type", ev.typ, "err", err)
		return "", false
	}
	n.Data = data
	payload, err := json.Marshal(n)
	if err == nil && len(payload) > maxPayload {
		if n.ID == "" {
			b.log.Warn("pgnotify: event too large to send", "type", ev.typ, "bytes", len(payload))
			return "", false
		}
		n.Data = nil // the receivers load the model
		payload, err = json.Marshal(n)
	}
	if err != nil {
		b.log.Error("pgnotify: cannot encode event", "type", ev.typ, "err", err)
		return "", false
	}
	return string(payload), true
}

// listen keeps a connection listening and republishes what arrives. After
// a reconnect it publishes a "reset" event: notifications sent while it was
// away are lost, and the dashboard reloads its state on "reset".
func (b *Bridge) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for connected := false; ctx.Err() == nil; {
		err := b.listenOnce(ctx, func() {
			if connected {
				b.broker.Publish("reset", map[string]string{"reason": "live updates from other instances were interrupted; reload the current state"})
			}
			connected = true
			b.listened.Do(func() { close(b.listening) })
			backoff = 100 * time.Millisecond
			if b.onListen != nil {
				b.onListen()
			}
		})
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("pgnotify: listening for other instances' events failed; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (b *Bridge) listenOnce(ctx context.Context, listening func()) error {
	// A connection of its own, outside the pool: LISTEN belongs to a
	// session, and this one waits for notifications all the time.
	cfg := b.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{b.channel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		b.receive(ctx, n.Payload)
	}
}

func (b *Bridge) receive(ctx context.Context, payload string) {
	if strings.HasPrefix(payload, b.ownPrefix) {
		return // published locally already; every instance hears its own
	}
	var n notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.Type == "" {
		b.log.Warn("pgnotify: ignoring a notification that is not trainhook's", "channel", b.channel)
		return
	}
	if n.Origin == b.origin {
		return // published locally already
	}
	if n.ID != "" && !b.latest.seen(n.ID, n.Version) {
		return // older than what this instance published or received
	}
	if n.Data != nil {
		b.broker.Publish(n.Type, n.Data)
		return
	}
	if b.load == nil || n.Type != "model" {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := b.load(lctx, n.ID)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			b.log.Warn("pgnotify: load a changed model", "model_id", n.ID, "err", err)
		}
		return
	}
	b.broker.Publish(n.Type, training.Summary(m))
}

// versions remembers the newest version of each model this instance has
// published or received. Notifications from different instances can arrive
// in another order than their commits (each instance notifies after its own
// commit); an older one must not overwrite a newer state on the dashboard.
type versions struct {
	mu sync.Mutex
	m  map[string]int64
}

// seen records v for id and reports whether it is newer than any before.
func (vs *versions) seen(id string, v int64) bool {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if v <= vs.m[id] {
		return false
	}
	if len(vs.m) >= 100_000 {
		clear(vs.m) // forget old models rather than grow without bound
	}
	vs.m[id] = v
	return true
}

// String describes the bridge for logs.
func (b *Bridge) String() string {
	return fmt.Sprintf("pgnotify bridge on channel %s (instance %s)", b.channel, b.origin)
}
