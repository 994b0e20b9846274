package fakereplicate

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// The trainer generated payloads name: Replicate's FLUX LoRA trainer and a
// version of it seen in real training objects.
const (
	Trainer        = "ostris/flux-dev-lora-trainer"
	TrainerVersion = "e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497"
)

// OOMError is the error of a generated failed training when none is given.
const OOMError = "CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 79.11 GiB of which 1.02 GiB is free."

// PayloadOptions describe a training webhook payload.
type PayloadOptions struct {
	TrainingID  string
	Status      string // Replicate's status
	Destination string // owner/name, for output.version
	Error       string // for failed; OOMError when empty
	Steps       int
	Webhook     string // echoed as Replicate does
	PadTo       int64  // pad the logs to about this many bytes
	Now         time.Time
	// Output is a succeeded training's output; nil: a random version of
	// Destination and random weights.
	Output *replicate.TrainingOutput
	// Logs, when not nil, is the log the payload carries instead of the
	// trainer's log the status implies.
	Logs *string
}

// TrainingPayload builds the body of a training webhook: the training
// object as GET /v1/trainings/{id} returns it (REPLICATE.md §3), with a
// LoRA trainer's log and its tqdm progress lines as far as the status got.
// It is written as Replicate's Python writes JSON: "<" and ">" unescaped.
func TrainingPayload(o PayloadOptions) ([]byte, error) {
	if o.Steps <= 0 {
		o.Steps = 1000
	}
	if o.Destination == "" {
		o.Destination = "trainhook-sim/portrait-lora"
	}
	created := o.Now.Add(-21 * time.Minute).UTC()
	started := created.Add(7*time.Second + 784*time.Millisecond)
	t := replicate.Training{
		ID: o.TrainingID, Model: Trainer, Version: TrainerVersion, Status: o.Status, Source: "api",
		CreatedAt: &created,
		URLs: map[string]string{
			"get":    "https://api.replicate.com/v1/trainings/" + o.TrainingID,
			"cancel": "https://api.replicate.com/v1/trainings/" + o.TrainingID + "/cancel",
			"web":    "https://replicate.com/p/" + o.TrainingID,
		},
		Webhook: o.Webhook, WebhookEventsFilter: []string{replicate.EventStart, replicate.EventCompleted},
		Output: json.RawMessage("null"), Error: json.RawMessage("null"),
	}
	input, _ := json.Marshal(map[string]any{
		"input_images": "https://example.com/datasets/zkx-portraits.zip", "trigger_word": "ZKX",
		"steps": o.Steps, "lora_rank": 16, "learning_rate": 0.0004, "batch_size": 1,
		"resolution": "512,768,1024", "autocaption": true, "optimizer": "adamw8bit",
	})
	t.Input = input

	// How far the run got: the share of steps its log shows.
	reached := 0.0
	switch o.Status {
	case training.RemoteStarting, training.RemoteAborted:
	case training.RemoteProcessing:
		reached = 0.42
	case training.RemoteSucceeded:
		reached = 1
	case training.RemoteFailed:
		reached = 0.37
	case training.RemoteCanceled:
		reached = 0.6
	}
	if o.Status != training.RemoteStarting && o.Status != training.RemoteAborted {
		t.StartedAt = &started
	}
	if o.Logs != nil {
		t.Logs = *o.Logs
	} else {
		t.Logs = trainerLog(o, reached)
	}

	if training.RemoteTerminal(o.Status) {
		completed := o.Now.Add(-2 * time.Second).UTC()
		if o.Status == training.RemoteAborted {
			completed = created.Add(5 * time.Minute)
		}
		t.CompletedAt = &completed
		total := completed.Sub(created).Seconds()
		t.Metrics = &replicate.Metrics{TotalTime: &total}
		if t.StartedAt != nil {
			predict := completed.Sub(started).Seconds()
			t.Metrics.PredictTime = &predict
		}
	} else {
		t.Metrics = &replicate.Metrics{}
	}
	switch o.Status {
	case training.RemoteSucceeded:
		out := replicate.TrainingOutput{
			Version: o.Destination + ":" + randomHex(32),
			Weights: "https://replicate.delivery/xezq/" + randomHex(20) + "/trained_model.tar",
		}
		if o.Output != nil {
			out = *o.Output
		}
		t.Output, _ = json.Marshal(out)
	case training.RemoteFailed:
		msg := o.Error
		if msg == "" {
			msg = OOMError
		}
		t.Error, _ = json.Marshal(msg)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("encode training %s: %w", o.TrainingID, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// trainerLog is a FLUX LoRA trainer's log up to reached (0..1) of its steps.
func trainerLog(o PayloadOptions, reached float64) string {
	if o.Status == training.RemoteStarting || o.Status == training.RemoteAborted {
		return ""
	}
	var b strings.Builder
	const images = 14
	b.WriteString("Downloading input_images from https://example.com/datasets/zkx-portraits.zip\n")
	fmt.Fprintf(&b, "Extracted %d images\n", images)
	fmt.Fprintf(&b, "Captioning %d images with LLaVA 1.5 13B\n", images)
	for i := 1; i <= images; i++ {
		fmt.Fprintf(&b, "Caption for image_%02d.jpg: a photo of ZKX, a person with short dark hair, smiling, studio lighting\n", i)
	}
	// Padding for body-limit tests: more caption lines, as a large
	// dataset would print, before the progress lines so the last line
	// still tells the progress.
	for i := images + 1; int64(b.Len()) < o.PadTo-4<<10; i++ {
		fmt.Fprintf(&b, "Caption for image_%05d.jpg: a photo of ZKX, a person with short dark hair, outdoors, natural light, 85mm\n", i)
	}
	b.WriteString("Loading FLUX.1-dev transformer, VAE and text encoders\n")
	b.WriteString("Preparing LoRA network: rank 16\n")
	fmt.Fprintf(&b, "Caching latents for %d images\n", images)
	fmt.Fprintf(&b, "Training for %d steps, batch size 1, learning rate 0.0004\n", o.Steps)
	const total = 1300 * time.Second // how long the steps take
	last := int(reached * float64(o.Steps))
	every := max(1, o.Steps/100)
	var shown []int
	for step := 0; step < last; step += every {
		shown = append(shown, step)
	}
	for _, step := range append(shown, last) {
		b.WriteString(TqdmLine(step, o.Steps, total))
		b.WriteByte('\n')
		if step > 0 && step%(every*25) == 0 {
			fmt.Fprintf(&b, "step %d: loss 0.%04d, lr 4.0e-04\n", step, 4123-step%997)
		}
	}
	switch o.Status {
	case training.RemoteSucceeded:
		b.WriteString("Saving LoRA weights to output/flux_train_replicate/lora.safetensors\n")
		b.WriteString("Packing output/flux_train_replicate into trained_model.tar\n")
		b.WriteString("Uploading trained_model.tar\n")
	case training.RemoteFailed:
		msg := o.Error
		if msg == "" {
			msg = OOMError
		}
		b.WriteString("Traceback (most recent call last):\n")
		b.WriteString("  File \"/src/train.py\", line 411, in train\n    job.run()\n")
		b.WriteString("  File \"/src/ai-toolkit/jobs/process/BaseSDTrainProcess.py\", line 1797, in run\n    loss_dict = self.hook_train_loop(batch)\n")
		b.WriteString("torch.OutOfMemoryError: " + msg + "\n")
	case training.RemoteCanceled:
		b.WriteString("Training canceled\n")
	}
	return b.String()
}

// TqdmLine prints a progress bar line as tqdm does for step of total steps
// that take trainTime in all, e.g.
// " 40%|████      | 400/1000 [00:12<00:18, 33.10it/s]".
func TqdmLine(step, total int, trainTime time.Duration) string {
	pct := 100 * step / total
	const width = 10
	eighths := width * 8 * step / total
	bar := strings.Repeat("█", eighths/8)
	if r := eighths % 8; r > 0 {
		bar += string([]rune(" ▏▎▍▌▋▊▉")[r])
	}
	bar += strings.Repeat(" ", width-len([]rune(bar)))
	if step == 0 {
		return fmt.Sprintf("%3d%%|%s| %d/%d [00:00<?, ?it/s]", pct, bar, step, total)
	}
	elapsed := time.Duration(float64(trainTime) * float64(step) / float64(total))
	rate := float64(total) / trainTime.Seconds()
	speed := fmt.Sprintf("%.2fit/s", rate)
	if rate < 1 {
		speed = fmt.Sprintf("%.2fs/it", 1/rate)
	}
	return fmt.Sprintf("%3d%%|%s| %d/%d [%s<%s, %s]", pct, bar, step, total, clockTime(elapsed), clockTime(trainTime-elapsed), speed)
}

func clockTime(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%02d:%02d", s/60, s%60)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
