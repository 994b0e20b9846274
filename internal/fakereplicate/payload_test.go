package fakereplicate

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// The payloads parse as Replicate's training objects, and their logs tell
// the progress the status implies.
func TestTrainingPayload(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 36, 47, 0, time.UTC)
	for _, c := range []struct {
		status  string
		percent float64
		step    int
	}{
		{"starting", 0, 0}, {"processing", 42, 420}, {"succeeded", 100, 1000}, {"failed", 37, 370}, {"canceled", 60, 600}, {"aborted", 0, 0},
	} {
		body, err := TrainingPayload(PayloadOptions{TrainingID: "r7k2m9x4c1rm80cq3ftw6n8e5a", Status: c.status, Steps: 1000, Webhook: "https://x.io/hook", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := replicate.ParseTraining(body)
		if err != nil {
			t.Fatalf("%s: %v", c.status, err)
		}
		p, _ := training.ParseProgress(tr.Logs)
		if p.Percent != c.percent || p.Step != c.step {
			t.Errorf("%s: progress %+v, want %v%% step %d", c.status, p, c.percent, c.step)
		}
		if tr.Terminal() != training.RemoteTerminal(c.status) || (tr.CompletedAt != nil) != tr.Terminal() {
			t.Errorf("%s: terminal %v, completed_at %v", c.status, tr.Terminal(), tr.CompletedAt)
		}
		var out replicate.TrainingOutput
		hasOutput := tr.Output != nil && json.Unmarshal(tr.Output, &out) == nil && out.Version != ""
		if hasOutput != (c.status == "succeeded") || c.status == "succeeded" && !strings.HasSuffix(out.Weights, "/trained_model.tar") {
			t.Errorf("%s: output %s", c.status, tr.Output)
		}
		if (tr.ErrorText() != "") != (c.status == "failed") {
			t.Errorf("%s: error %q", c.status, tr.ErrorText())
		}
		if tr.Model != Trainer || tr.Webhook != "https://x.io/hook" || tr.URLs["web"] == "" || !bytes.Contains(body, []byte(`"data_removed":false`)) {
			t.Errorf("%s: not the shape of a training object: %s", c.status, body[:200])
		}
	}
	big, _ := TrainingPayload(PayloadOptions{TrainingID: "x", Status: "succeeded", PadTo: 5 << 20, Now: now})
	if n := len(big); n < 5<<20 || n > 6<<20 {
		t.Errorf("padded to %d bytes, want about 5 MiB", n)
	}
	tr, _ := replicate.ParseTraining(big)
	if p, _ := training.ParseProgress(tr.Logs); p.Percent != 100 {
		t.Errorf("padding hides the progress: %+v", p)
	}
}
