package training

import (
	"strings"
	"testing"
	"time"
)

// fuzzRemotes are the statuses a fuzzed report may carry: every one
// Replicate sends, one it does not, and an empty one.
var fuzzRemotes = append(append([]string{}, RemoteStatuses...), "exploded", "")

// FuzzApplySequence applies a fuzzed sequence of reports (status, log
// length) to one model, as webhooks and polls would in any order, any number
// of times. Whatever the sequence: a final status is never left, a model
// moves into a final status at most once, and every history entry is a move
// or a conflict that Apply reported.
//
//	go test -run '^$' -fuzz '^FuzzApplySequence$' ./internal/training
func FuzzApplySequence(f *testing.F) {
	f.Add([]byte{0, 10, 1, 20, 2, 30})          // starting, processing, succeeded
	f.Add([]byte{2, 30, 1, 10, 3, 40, 2, 30})   // succeeded, a late processing, failed, succeeded again
	f.Add([]byte{1, 50, 1, 20, 5, 0, 4, 0})     // logs shrink, aborted, canceled
	f.Add([]byte{6, 0, 7, 0, 1, 255, 3, 255})   // unknown, empty, processing, failed
	f.Add([]byte{4, 0, 4, 0, 4, 0, 2, 0, 3, 0}) // canceled three times, then conflicts
	f.Fuzz(func(t *testing.T, seq []byte) {
		m := Model{ID: "m", TrainingID: "t", Status: Pending}
		now := time.Unix(1_750_000_000, 0)
		finalMoves := 0
		for i := 0; i+1 < len(seq); i += 2 {
			remote := fuzzRemotes[int(seq[i])%len(fuzzRemotes)]
			logs := strings.Repeat("x", int(seq[i+1]))
			obs := Observation{TrainingID: "t", Remote: remote, Logs: logs, Source: SourcePoll, At: now}
			if remote == RemoteSucceeded {
				obs.Output = []byte(`{"version":"a/b:c","weights":"w"}`)
			}
			before := m
			next, d, h := Apply(m, obs, now)
			switch {
			case before.Status.Terminal() && next.Status != before.Status:
				t.Fatalf("report %d (%q) moved final %s to %s", i/2, remote, before.Status, next.Status)
			case d == Move && h == nil, d == Conflict && h == nil:
				t.Fatalf("decision %s without a history entry", d)
			case d != Move && d != Conflict && h != nil:
				t.Fatalf("decision %s with a history entry %+v", d, h)
			case (d == Same || d == Stale || d == Unknown) && next.Status != before.Status:
				t.Fatalf("decision %s changed the status", d)
			case h != nil && h.From != before.Status:
				t.Fatalf("history says from %s, the model was %s", h.From, before.Status)
			}
			if d == Move && next.Status.Terminal() {
				finalMoves++
				if next.CompletedAt == nil || next.NextCheckAt != nil {
					t.Fatalf("final model without completed_at or still scheduled: %+v", next)
				}
			}
			if d == Conflict && !next.Flagged {
				t.Fatal("a conflict did not flag the model")
			}
			m = next
			now = now.Add(time.Second)
		}
		if finalMoves > 1 {
			t.Fatalf("moved into a final status %d times", finalMoves)
		}
	})
}
