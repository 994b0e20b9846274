package pgnotify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type instance struct {
	bridge *Bridge
	broker *events.Broker
	sub    *events.Subscription
	listen chan struct{}
}

// startInstances starts n bridges, each with its own pool and broker, on
// one new database, and waits until each listens.
func startInstances(t *testing.T, n int, load func(context.Context, string) (training.Model, error)) []*instance {
	t.Helper()
	url := pgtest.URL(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var pools []*pgxpool.Pool
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, p := range pools {
			p.Close()
		}
	})
	out := make([]*instance, n)
	for i := range out {
		pool, err := pgxpool.New(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		pools = append(pools, pool)
		broker := events.NewBroker(64, quiet)
		sub, _ := broker.Subscribe(0, 64)
		b := New(pool, broker, Options{Load: load, Log: quiet})
		in := &instance{bridge: b, broker: broker, sub: sub, listen: make(chan struct{}, 8)}
		b.onListen = func() { in.listen <- struct{}{} }
		wg.Go(func() { b.Run(ctx) })
		out[i] = in
	}
	for _, in := range out {
		select {
		case <-in.bridge.Listening():
		case <-time.After(10 * time.Second):
			t.Fatal("Listening was not closed: the listener did not start")
		}
	}
	return out
}

func waitListen(t *testing.T, in *instance) {
	t.Helper()
	select {
	case <-in.listen:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not start")
	}
}

// next returns the next event a subscription gets, failing after a while.
func next(t *testing.T, in *instance) events.Event {
	t.Helper()
	select {
	case ev := <-in.sub.C:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event arrived")
		return events.Event{}
	}
}

// none checks that no event arrives for a moment.
func none(t *testing.T, in *instance, what string) {
	t.Helper()
	select {
	case ev := <-in.sub.C:
		t.Errorf("%s: unexpected event %s %s", what, ev.Type, ev.Data)
	case <-time.After(300 * time.Millisecond):
	}
}

func model(id string, version int64) training.Model {
	return training.Model{ID: id, Name: "m " + id, Status: training.Training, Version: version, LogTail: "step 1\n"}
}

func decodeModel(t *testing.T, ev events.Event) training.Model {
	t.Helper()
	if ev.Type != "model" {
		t.Fatalf("event type %q, want model", ev.Type)
	}
	var m training.Model
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatalf("event data %s: %v", ev.Data, err)
	}
	return m
}

// An event published on one instance reaches the others' brokers once, and
// is not echoed back to its own.
func TestEventsReachOtherInstances(t *testing.T) {
	ins := startInstances(t, 3, nil)
	ins[0].bridge.Publish("model", model("m1", 2))
	if got := decodeModel(t, next(t, ins[0])); got.ID != "m1" {
		t.Errorf("local event for %s", got.ID)
	}
	for _, in := range ins[1:] {
		got := decodeModel(t, next(t, in))
		if got.ID != "m1" || got.Name != "m m1" || got.LogTail != "step 1\n" {
			t.Errorf("remote event = %+v", got)
		}
	}
	ins[2].bridge.Publish("model", model("m2", 1))
	for _, in := range ins {
		if got := decodeModel(t, next(t, in)); got.ID != "m2" {
			t.Errorf("event for %s, want m2", got.ID)
		}
	}
	for i, in := range ins {
		none(t, in, fmt.Sprintf("instance %d", i))
	}
}

// A burst of events, sent in batches, reaches another instance whole and in
// the order it was published.
func TestBurstArrivesInOrder(t *testing.T) {
	ins := startInstances(t, 2, nil)
	sub, _ := ins[1].broker.Subscribe(0, 1024)
	defer sub.Close()
	const n = 600
	for i := range n {
		ins[0].bridge.Publish("model", model(fmt.Sprintf("m%03d", i), 1))
	}
	for i := range n {
		select {
		case ev := <-sub.C:
			if got, want := decodeModel(t, ev).ID, fmt.Sprintf("m%03d", i); got != want {
				t.Fatalf("event %d is for %s, want %s", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d events arrived", i, n)
		}
	}
}

// Notifications from different instances can arrive in another order than
// their commits: an older version of a model than one seen is dropped.
func TestOlderVersionsAreDropped(t *testing.T) {
	ins := startInstances(t, 2, nil)
	a, b := ins[0], ins[1]
	a.bridge.Publish("model", model("m1", 5))
	next(t, a)
	if got := decodeModel(t, next(t, b)); got.ID != "m1" {
		t.Fatalf("event for %s", got.ID)
	}
	a.bridge.Publish("model", model("m1", 4)) // late news
	a.bridge.Publish("model", model("m2", 1)) // then something else
	next(t, a)
	next(t, a)
	if got := decodeModel(t, next(t, b)); got.ID != "m2" {
		t.Errorf("after an older version of m1, got an event for %s, want m2", got.ID)
	}
	// And b's own newer version is not overwritten by a's older one.
	b.bridge.Publish("model", model("m3", 9))
	next(t, b)
	decodeModel(t, next(t, a))
	a.bridge.Publish("model", model("m3", 8))
	next(t, a)
	none(t, b, "older version of m3")
}

// An event too large for a notification travels as the model's id; the
// receivers load the model and publish it shaped as the service does.
func TestLargeEventsAreLoaded(t *testing.T) {
	big := model("m-big", 3)
	big.Output = json.RawMessage(`{"weights":"` + strings.Repeat("w", 9000) + `"}`)
	big.LogTail = strings.Repeat("é", 3000) + "\n 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]" // events carry no log tail
	big.Input = json.RawMessage(`{"secret":"not in events"}`)
	var loads []string
	var mu sync.Mutex
	load := func(_ context.Context, id string) (training.Model, error) {
		mu.Lock()
		loads = append(loads, id)
		mu.Unlock()
		if id != big.ID {
			return training.Model{}, fmt.Errorf("no model %s", id)
		}
		return big, nil
	}
	ins := startInstances(t, 2, load)
	ins[0].bridge.Publish("model", training.Summary(big))
	next(t, ins[0])
	got := decodeModel(t, next(t, ins[1]))
	if got.ID != big.ID || len(got.Output) < 9000 || got.Input != nil || got.LogTail != "" || got.Progress.ETASeconds != 18 {
		t.Errorf("loaded event: id %s, output %d bytes, input %s, log tail %d bytes, eta %d; want no input or log tail, and the time left", got.ID, len(got.Output), got.Input, len(got.LogTail), got.Progress.ETASeconds)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(loads) != 1 || loads[0] != big.ID {
		t.Errorf("loads = %v, want one of %s", loads, big.ID)
	}
}

// When the listening connection is lost, the bridge reconnects and tells
// its dashboards to reload (they may have missed updates meanwhile).
func TestReconnectPublishesReset(t *testing.T) {
	ins := startInstances(t, 2, nil)
	a, b := ins[0], ins[1]
	var killed int
	err := a.bridge.pool.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, ListenerApplicationName).Scan(&killed)
	if err != nil || killed != 2 {
		t.Fatalf("terminated %d listeners (%v), want 2", killed, err)
	}
	for _, in := range ins {
		waitListen(t, in)
		if ev := next(t, in); ev.Type != "reset" {
			t.Errorf("after reconnecting: event %s %s, want reset", ev.Type, ev.Data)
		}
	}
	a.bridge.Publish("model", model("m1", 1))
	next(t, a)
	if got := decodeModel(t, next(t, b)); got.ID != "m1" {
		t.Errorf("after reconnecting: event for %s", got.ID)
	}
}

// Publish never blocks the service's writer: with the queue full, events
// still reach the local broker, and the rest are counted as dropped.
func TestPublishNeverBlocks(t *testing.T) {
	broker := events.NewBroker(64, quiet)
	sub, _ := broker.Subscribe(0, 64)
	b := New(nil, broker, Options{Queue: 2, Log: quiet}) // not running: nothing drains the queue
	done := make(chan struct{})
	go func() {
		for i := range 10 {
			b.Publish("model", model(fmt.Sprint("m", i), 1))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked")
	}
	if len(sub.C) != 10 {
		t.Errorf("local broker got %d events, want 10", len(sub.C))
	}
	if b.Dropped() != 8 {
		t.Errorf("Dropped = %d, want 8", b.Dropped())
	}
}

// A notification's change (the sender's or a resend's) reaches the
// dashboards of the other instances as it is.
func TestNotificationEventsReachOtherInstances(t *testing.T) {
	ins := startInstances(t, 2, nil)
	c := store.NotificationChange{ID: 7, ModelID: "m1", Type: "model.ready", Status: store.NotifyFailed, Attempts: 1, LastError: "HTTP 410", LastStatus: 410}
	want, _ := json.Marshal(c)
	ins[0].bridge.Publish(store.NotificationEventType, c)
	for i, in := range ins {
		if ev := next(t, in); ev.Type != "notification" || string(ev.Data) != string(want) {
			t.Errorf("instance %d got %s %s, want notification %s", i, ev.Type, ev.Data, want)
		}
	}
}
