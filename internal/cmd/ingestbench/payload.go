package main

import (
	"bytes"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// placeholder stands for the training id in the payload template; it has the
// length of a real id so the template's size is the body's size.
const placeholder = "@@TRAINING_ID_PLACEHOLDER@"

const (
	benchOwner = "trainhook-bench"
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
// echoed in the body, as Replicate does. The body is the simulator's
// training payload (fakereplicate.TrainingPayload) with a log of tqdm
// progress lines sized to reach the target.
func newPayload(target int, webhookURL string, now time.Time) (*payload, error) {
	const (
		head  = "Extracting 14 images...\nLoading Flux model\nStarting training\n"
		tail  = "Saving weights\nTraining complete\n"
		steps = 1000
		// about 1.3 s per step, as flux-dev-lora-trainer runs
		trainTime = steps * 1300 * time.Millisecond
	)
	build := func(logs string) ([]byte, error) {
		return fakereplicate.TrainingPayload(fakereplicate.PayloadOptions{
			TrainingID: placeholder, Status: training.RemoteSucceeded, Webhook: webhookURL, Now: now, Steps: steps,
			Output: &replicate.TrainingOutput{Version: expectedVersion(placeholder), Weights: expectedWeights(placeholder)},
			Logs:   &logs,
		})
	}
	base, err := build(head + tail)
	if err != nil {
		return nil, err
	}
	// Pad the log with tqdm lines until the body reaches the target size.
	// The steps are spread so the last line reads 100%, as a finished run's
	// does; since a line's length depends on its step, grow the count until
	// the lines fill the room.
	room := target - len(base)
	line := func(step int) string { return fakereplicate.TqdmLine(step, steps, trainTime) + "\n" }
	sum := 0
	for step := 1; step <= steps; step++ {
		sum += escapedLen(line(step))
	}
	avg := float64(sum) / steps // the mean length of a line, over all steps
	var lines []string
	for k := 0; room > 0; {
		n := 0
		for _, l := range lines {
			n += escapedLen(l)
		}
		if n >= room {
			break
		}
		k += max(1, int(float64(room-n)/avg))
		lines = make([]string, k)
		for i := range lines {
			lines[i] = line((i + 1) * steps / k)
		}
	}
	body, err := build(head + strings.Join(lines, "") + tail)
	if err != nil {
		return nil, err
	}
	return &payload{parts: bytes.Split(body, []byte(placeholder)), size: len(body)}, nil
}

// escapedLen is the length of a log line inside a JSON string: the lines
// hold nothing JSON escapes but the newline.
func escapedLen(line string) int { return len(line) + strings.Count(line, "\n") }

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
