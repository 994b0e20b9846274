package events

import (
	"io"
	"log/slog"
	"testing"
)

func TestBrokerReplayAndDrop(t *testing.T) {
	b := NewBroker(3, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 5; i++ {
		b.Publish("model", i)
	}
	// Events 3,4,5 are kept; resuming after 3 replays 4 and 5.
	s, ok := b.Subscribe(3, 1)
	if !ok {
		t.Fatal("resume after 3 should be complete")
	}
	if a, c := <-s.C, <-s.C; a.ID != 4 || c.ID != 5 {
		t.Fatalf("replayed %d %d", a.ID, c.ID)
	}
	if _, ok := b.Subscribe(1, 1); ok {
		t.Fatal("resume after 1 misses event 2 and must say so")
	}
	if _, ok := b.Subscribe(99, 1); ok || b.LastID() != 5 {
		t.Fatal("an id from before a restart must be reported as missed")
	}
	// A subscriber that does not read is dropped, never blocking Publish.
	slow, _ := b.Subscribe(0, 1)
	b.Publish("model", 6)
	b.Publish("model", 7)
	if !slow.Dropped() {
		t.Fatal("slow subscriber kept")
	}
	<-slow.C
	if _, open := <-slow.C; open {
		t.Fatal("dropped subscription not closed")
	}
	s.Close()
	s.Close()
}
