package training

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEventModel(t *testing.T) {
	m := Model{ID: "m1", Input: json.RawMessage(`{"steps":1000}`), IdempotencyKey: "k", LogTail: strings.Repeat("é", MaxEventLog)}
	e := EventModel(m)
	if e.Input != nil || e.IdempotencyKey != "" || e.ID != "m1" {
		t.Errorf("event carries input %s, key %q, id %q", e.Input, e.IdempotencyKey, e.ID)
	}
	if len(e.LogTail) > MaxEventLog || len(e.LogTail) < MaxEventLog-1 || !utf8.ValidString(e.LogTail) {
		t.Errorf("log tail of %d bytes (valid UTF-8: %v); want the last %d bytes cut at a character", len(e.LogTail), utf8.ValidString(e.LogTail), MaxEventLog)
	}
	if m.LogTail == e.LogTail || m.Input == nil {
		t.Error("EventModel changed the model it was given")
	}
	short := Model{LogTail: "step 1\n"}
	if EventModel(short).LogTail != "step 1\n" {
		t.Error("a short log tail was cut")
	}
}
