package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

// placeholder stands for the training id in the payload template; it has the
// length of a real id so the template's size is the body's size.
const placeholder = "@@TRAINING_ID_PLACEHOLDER@"

// Fixed parts of every delivery, shaped like REPLICATE.md §3 "Example:
// succeeded training".
const (
	trainerModel   = "ostris/flux-dev-lora-trainer"
	trainerVersion = "e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497"
	benchOwner     = "trainhook-bench"
	// outputVersionHash stands for the 64-hex version id of a trained model.
	outputVersionHash = "81592a3e9edf0b50fd80f19c04f5a318b8b9244745ee95294822bc8a5ff27ed1"
)

// payload builds the body of a `succeeded` delivery for any training id.
type payload struct {
	parts [][]byte // the template split at each placeholder
	size  int      // bytes in every body
}

// newPayload makes a template of about target bytes (never less, unless
// target is below the size of a payload with an empty log). webhookURL is
// echoed in the body, as Replicate does.
func newPayload(target int, webhookURL string, now time.Time) (*payload, error) {
	created := now.Add(-22 * time.Minute).UTC()
	started := created.Add(7*time.Second + 784431*time.Microsecond)
	completed := now.UTC()
	predict := completed.Sub(started).Seconds()
	total := completed.Sub(created).Seconds()
	input, _ := json.Marshal(map[string]any{
		"input_images":  "https://example.com/datasets/zkx.zip",
		"trigger_word":  "ZKX",
		"steps":         1000,
		"lora_rank":     16,
		"learning_rate": 0.0004,
		"autocaption":   true,
	})
	output, _ := json.Marshal(map[string]string{
		"version": expectedVersion(placeholder),
		"weights": expectedWeights(placeholder),
	})
	t := replicate.Training{
		ID:          placeholder,
		Model:       trainerModel,
		Version:     trainerVersion,
		Input:       input,
		Output:      output,
		Error:       json.RawMessage("null"),
		Status:      "succeeded",
		Source:      "api",
		CreatedAt:   &created,
		StartedAt:   &started,
		CompletedAt: &completed,
		Metrics:     &replicate.Metrics{PredictTime: &predict, TotalTime: &total},
		URLs: map[string]string{
			"get":    "https://api.replicate.com/v1/trainings/" + placeholder,
			"cancel": "https://api.replicate.com/v1/trainings/" + placeholder + "/cancel",
			"web":    "https://replicate.com/p/" + placeholder,
		},
		Webhook:             webhookURL,
		WebhookEventsFilter: []string{"start", "completed"},
	}

	head := "Extracting 14 images...\nLoading Flux model\nLoading checkpoint shards: 100%|██████████| 3/3 [00:01<00:00,  2.31it/s]\nStarting training\n"
	tail := "Saving weights\nTraining complete\n"
	t.Logs = head + tail
	base, err := marshal(t)
	if err != nil {
		return nil, err
	}
	// Pad the log with tqdm lines until the body reaches the target size.
	// The steps are spread so the last line reads 100%, as a finished run's
	// does; since a line's length depends on its step, grow the count until
	// the lines fill the room.
	room := target - len(base)
	var lines []string
	for k := 0; room > 0; {
		n := 0
		for _, l := range lines {
			n += escapedLen(l)
		}
		if n >= room {
			break
		}
		avg := escapedLen(tqdmStep(500, 0))
		k += max(1, (room-n)/avg)
		lines = make([]string, k)
		for i := range lines {
			lines[i] = tqdmStep((i+1)*1000/k, i)
		}
	}
	t.Logs = head + strings.Join(lines, "") + tail
	body, err := marshal(t)
	if err != nil {
		return nil, err
	}
	return &payload{parts: bytes.Split(body, []byte(placeholder)), size: len(body)}, nil
}

// escapedLen is the length of a log line inside a JSON string: the lines
// hold nothing JSON escapes but the newline.
func escapedLen(line string) int { return len(line) + strings.Count(line, "\n") }

// tqdmStep is the progress line for step of 1000, as flux-dev-lora-trainer
// prints them; i varies the loss.
func tqdmStep(step, i int) string {
	pct := step / 10
	bar := strings.Repeat("█", pct/10) + strings.Repeat(" ", 10-pct/10)
	elapsed := step * 13 / 10 // about 1.3 s per step
	left := (1000 - step) * 13 / 10
	return fmt.Sprintf("flux_train_replicate: %3d%%|%s| %d/1000 [%02d:%02d<%02d:%02d,  1.30s/it, lr: 4e-04 loss: %.3e]\n",
		pct, bar, step, elapsed/60, elapsed%60, left/60, left%60, 0.42-float64(i%97)/1000)
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as Python's json module writes it: "<" stays "<"
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// body returns the delivery for one training id (of the placeholder's length).
func (p *payload) body(trainingID string) []byte {
	b := make([]byte, 0, p.size+len(p.parts)*(len(trainingID)-len(placeholder)))
	for i, part := range p.parts {
		if i > 0 {
			b = append(b, trainingID...)
		}
		b = append(b, part...)
	}
	return b
}

// expectedVersion and expectedWeights are the output a delivery carries for a
// training id, and so what verification expects the model to hold.
func expectedVersion(trainingID string) string {
	return benchOwner + "/model-" + trainingID + ":" + outputVersionHash
}

func expectedWeights(trainingID string) string {
	return "https://replicate.delivery/xezq/" + trainingID + "/trained_model.tar"
}
