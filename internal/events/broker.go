// Package events fans committed changes out to live subscribers (the
// dashboard and SSE clients). Publishing never blocks the writer: a
// subscriber that falls behind is dropped and must reconnect.
package events

import (
	"encoding/json"
	"log/slog"
	"sync"
)

// Event is one committed change. ID increases by one per event in this
// process; SSE clients resume after the last ID they saw.
type Event struct {
	ID   uint64          `json:"id"`
	Type string          `json:"type"` // "model", "delivery"
	Data json.RawMessage `json:"data"`
}

// Broker keeps the most recent events for resumption and the live subscribers.
type Broker struct {
	mu     sync.Mutex
	nextID uint64
	ring   []kept // the last len(ring) events, oldest first once full
	start  int
	subs   map[*Subscription]struct{}
	log    *slog.Logger
}

// Subscription receives events on C until it is closed or dropped.
type Subscription struct {
	C       chan Event
	b       *Broker
	dropped bool
}

// kept is an event in the ring. Its data is encoded only when someone reads
// it: with no subscribers, publishing costs no JSON encoding.
type kept struct {
	id   uint64
	typ  string
	data any
	raw  json.RawMessage
}

func (k *kept) event(log *slog.Logger) (Event, bool) {
	if k.raw == nil {
		raw, err := json.Marshal(k.data)
		if err != nil {
			log.Error("events: cannot encode event", "type", k.typ, "err", err)
			return Event{}, false
		}
		k.raw, k.data = raw, nil
	}
	return Event{ID: k.id, Type: k.typ, Data: k.raw}, true
}

// NewBroker keeps up to keep events for Last-Event-ID resumption.
func NewBroker(keep int, log *slog.Logger) *Broker {
	if keep < 1 {
		keep = 1
	}
	return &Broker{nextID: 1, ring: make([]kept, 0, keep), subs: map[*Subscription]struct{}{}, log: log}
}

// Publish sends an event to every subscriber. Call it only after the change
// it describes has committed. data must not be modified afterwards.
func (b *Broker) Publish(typ string, data any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := kept{id: b.nextID, typ: typ, data: data}
	b.nextID++
	var ev Event
	ok := len(b.subs) > 0
	if ok {
		ev, ok = k.event(b.log)
	}
	if len(b.ring) < cap(b.ring) {
		b.ring = append(b.ring, k)
	} else {
		b.ring[b.start] = k
		b.start = (b.start + 1) % len(b.ring)
	}
	if !ok {
		return
	}
	for s := range b.subs {
		select {
		case s.C <- ev:
		default:
			s.dropped = true
			delete(b.subs, s)
			close(s.C)
			b.log.Warn("events: dropped a slow subscriber; it must reconnect", "last_event_id", ev.ID)
		}
	}
}

// Subscribe returns a subscription that first replays the kept events after
// lastID (0: none) and then receives new ones. ok is false when lastID is
// older than what is kept, so the caller knows events were missed.
func (b *Broker) Subscribe(lastID uint64, buffer int) (s *Subscription, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var replay []Event
	ok = true
	if lastID > 0 {
		n := len(b.ring)
		for i := 0; i < n; i++ {
			k := &b.ring[(b.start+i)%n]
			if k.id > lastID {
				if ev, good := k.event(b.log); good {
					replay = append(replay, ev)
				}
			}
		}
		if lastID+1 < b.nextID && (n == 0 || b.ring[b.start].id > lastID+1) {
			ok = false
		}
		// An id this process never issued comes from before a restart.
		if lastID >= b.nextID {
			ok = false
		}
	}
	s = &Subscription{C: make(chan Event, buffer+len(replay)), b: b}
	for _, ev := range replay {
		s.C <- ev
	}
	b.subs[s] = struct{}{}
	return s, ok
}

// LastID is the id of the newest event published, 0 if none.
func (b *Broker) LastID() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nextID - 1
}

// Close ends the subscription.
func (s *Subscription) Close() {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, live := b.subs[s]; live {
		delete(b.subs, s)
		close(s.C)
	}
}

// Dropped reports whether the broker dropped the subscription for being slow.
func (s *Subscription) Dropped() bool {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.dropped
}
