package training

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTransitionTable pins every (current status × Replicate status) pair.
// The README's transition table is this table.
func TestTransitionTable(t *testing.T) {
	type want struct {
		to Status
		d  Decision
	}
	remotes := append(append([]string{}, RemoteStatuses...), "queued-somehow")
	table := map[Status]map[string]want{
		Pending: {
			"starting": {Training, Move}, "processing": {Training, Move}, "succeeded": {Ready, Move},
			"failed": {Failed, Move}, "canceled": {Canceled, Move}, "aborted": {Failed, Move}, "queued-somehow": {Pending, Unknown},
		},
		Training: {
			"starting": {Training, Refresh}, "processing": {Training, Refresh}, "succeeded": {Ready, Move},
			"failed": {Failed, Move}, "canceled": {Canceled, Move}, "aborted": {Failed, Move}, "queued-somehow": {Training, Unknown},
		},
		Ready: {
			"starting": {Ready, Stale}, "processing": {Ready, Stale}, "succeeded": {Ready, Same},
			"failed": {Ready, Conflict}, "canceled": {Ready, Conflict}, "aborted": {Ready, Conflict}, "queued-somehow": {Ready, Unknown},
		},
		Failed: {
			"starting": {Failed, Stale}, "processing": {Failed, Stale}, "succeeded": {Failed, Conflict},
			"failed": {Failed, Same}, "canceled": {Failed, Conflict}, "aborted": {Failed, Same}, "queued-somehow": {Failed, Unknown},
		},
		Canceled: {
			"starting": {Canceled, Stale}, "processing": {Canceled, Stale}, "succeeded": {Canceled, Conflict},
			"failed": {Canceled, Conflict}, "canceled": {Canceled, Same}, "aborted": {Canceled, Conflict}, "queued-somehow": {Canceled, Unknown},
		},
	}
	for _, from := range Statuses {
		for _, remote := range remotes {
			w, ok := table[from][remote]
			if !ok {
				t.Fatalf("table misses (%s, %s)", from, remote)
			}
			to, d := Transition(from, remote)
			if to != w.to || d != w.d {
				t.Errorf("Transition(%s, %s) = (%s, %s), want (%s, %s)", from, remote, to, d, w.to, w.d)
			}
		}
	}
}

func TestApplyNeverLeavesTerminal(t *testing.T) {
	now := time.Now()
	for _, from := range []Status{Ready, Failed, Canceled} {
		for _, remote := range RemoteStatuses {
			m := Model{ID: "m", Status: from, Output: []byte(`{"version":"a:b"}`), Error: "x"}
			got, d, h := Apply(m, Observation{Remote: remote, Logs: strings.Repeat("x", 100)}, now)
			if got.Status != from {
				t.Errorf("%s + %s moved to %s", from, remote, got.Status)
			}
			if string(got.Output) != string(m.Output) || got.Error != m.Error {
				t.Errorf("%s + %s changed the outcome", from, remote)
			}
			if (d == Conflict) != (h != nil) {
				t.Errorf("%s + %s: decision %s with history %v", from, remote, d, h)
			}
		}
	}
}

func TestApplyOutcomes(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	done := now.Add(-time.Second)
	base := Model{ID: "m1", Status: Training, LogLen: 10}
	logs := "Loading\n 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]\n"

	cases := []struct {
		obs        Observation
		status     Status
		errContain string
	}{
		{Observation{Remote: "succeeded", Output: []byte(`{"version":"acme/x:abc","weights":"https://w/trained_model.tar"}`), Logs: logs, CompletedAt: &done}, Ready, ""},
		{Observation{Remote: "failed", Error: "input_images must be provided", Logs: logs}, Failed, "input_images must be provided"},
		{Observation{Remote: "failed", Logs: logs}, Failed, "no error message"},
		{Observation{Remote: "aborted"}, Failed, "aborted before it started"},
		{Observation{Remote: "canceled", Logs: logs}, Canceled, ""},
	}
	for _, c := range cases {
		t.Run(c.obs.Remote+c.obs.Error, func(t *testing.T) {
			c.obs.Source, c.obs.SourceRef, c.obs.At = SourceWebhook, "msg_1", now
			got, d, h := Apply(base, c.obs, now)
			if d != Move || got.Status != c.status || h == nil {
				t.Fatalf("got %s %s %v", got.Status, d, h)
			}
			if h.From != Training || h.To != c.status || h.Source != SourceWebhook || h.SourceRef != "msg_1" {
				t.Errorf("history %+v", *h)
			}
			if !strings.Contains(got.Error, c.errContain) {
				t.Errorf("error %q lacks %q", got.Error, c.errContain)
			}
			if c.status == Ready && string(got.Output) != string(c.obs.Output) {
				t.Errorf("output %s", got.Output)
			}
			if got.CompletedAt == nil || got.NextCheckAt != nil {
				t.Errorf("completed %v next check %v", got.CompletedAt, got.NextCheckAt)
			}
		})
	}
}

func TestApplyRefreshIgnoresOlderLogs(t *testing.T) {
	now := time.Now()
	m := Model{ID: "m", Status: Training, LogLen: 500, Progress: Progress{Percent: 50, Step: 500, Total: 1000}}
	older := Observation{Remote: "processing", Logs: " 10%|#   | 100/1000\n"}
	got, d, _ := Apply(m, older, now)
	if d != Stale || got.Progress.Percent != 50 {
		t.Fatalf("older logs applied: %s %+v", d, got.Progress)
	}
	newer := Observation{Remote: "processing", Logs: strings.Repeat("x", 500) + "\n 60%|######    | 600/1000\n"}
	got, d, _ = Apply(m, newer, now)
	if d != Refresh || got.Progress != (Progress{Percent: 60, Step: 600, Total: 1000}) {
		t.Fatalf("newer logs: %s %+v", d, got.Progress)
	}
}

func ExampleTransition() {
	for _, r := range []string{"processing", "succeeded", "processing", "failed"} {
		to, d := Transition(Ready, r)
		fmt.Println(r, to, d)
	}
	// Output:
	// processing Ready stale
	// succeeded Ready same
	// processing Ready stale
	// failed Ready conflict
}
