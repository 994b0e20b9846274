package fakereplicate

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// Replicate's training statuses.
const (
	statusStarting   = "starting"
	statusProcessing = "processing"
	statusSucceeded  = "succeeded"
	statusFailed     = "failed"
	statusCanceled   = "canceled"
	statusAborted    = "aborted"
)

func terminal(status string) bool {
	switch status {
	case statusSucceeded, statusFailed, statusCanceled, statusAborted:
		return true
	}
	return false
}

// simTraining is one training. Its schedule is fixed when it is created;
// its state at any moment is computed from the schedule (stateAt), so a
// training costs nothing while it runs: no goroutine, no timer unless it
// has a webhook.
type simTraining struct {
	seq         int
	id          string
	model       string // trainer owner/name
	version     string // trainer version id
	destination string
	input       json.RawMessage
	webhook     string
	filter      []string        // webhook_events_filter as sent; nil when absent
	events      map[string]bool // events that are sent
	baseURL     string          // scheme://host the training was created through

	createdAt time.Time
	startAt   time.Time // processing begins (zero for an aborted training)
	runEnd    time.Time // a full run would end
	endAt     time.Time // the scheduled outcome happens
	outcome   string
	failure   failure

	steps, images, rank, batch int
	learningRate               float64
	autocaption                bool
	inputImages                string
	outVersion, weights        string

	forced *forcedEnd

	// Webhook bookkeeping (guarded by Server.mu).
	terminalSent bool
	lastLogsLen  int
}

type failure struct {
	at        float64 // fraction of the run at which it fails
	err       string
	traceback string
}

// forcedEnd is an outcome imposed by a cancel or by /_sim/.../complete.
type forcedEnd struct {
	status    string
	at        time.Time
	startedAt *time.Time
	err       string
}

// state is a training as observed at one moment.
type state struct {
	status      string
	startedAt   *time.Time
	completedAt *time.Time
	logs        string
	err         string
	output      map[string]string
	progress    float64 // 0..1 through the run
}

func (t *simTraining) stateAt(now time.Time) state {
	if f := t.forced; f != nil && !now.Before(f.at) {
		return t.forcedState()
	}
	switch {
	case t.outcome == statusAborted && now.Before(t.endAt), t.outcome != statusAborted && now.Before(t.startAt):
		return state{status: statusStarting}
	case t.outcome == statusAborted:
		end := t.endAt
		return state{status: statusAborted, completedAt: &end}
	case now.Before(t.endAt):
		start := t.startAt
		return state{status: statusProcessing, startedAt: &start, logs: t.logsUntil(now), progress: t.fraction(now)}
	}
	start, end := t.startAt, t.endAt
	st := state{status: t.outcome, startedAt: &start, completedAt: &end, progress: t.fraction(end)}
	switch t.outcome {
	case statusSucceeded:
		st.logs = t.logsUntil(t.runEnd) + "Training complete\n"
		st.output = t.output()
	case statusFailed:
		st.logs = t.logsUntil(end) + t.failure.traceback
		st.err = t.failure.err
	}
	return st
}

func (t *simTraining) forcedState() state {
	f := t.forced
	at := f.at
	st := state{status: f.status, startedAt: f.startedAt, completedAt: &at}
	if f.startedAt != nil {
		st.progress = t.fraction(at)
	}
	switch f.status {
	case statusSucceeded:
		st.logs = t.logsUntil(t.runEnd) + "Training complete\n"
		st.output = t.output()
		st.progress = 1
	case statusFailed:
		st.logs = t.logsUntil(at) + "Traceback (most recent call last):\n  File \"/src/train.py\", line 388, in train\nRuntimeError: " + f.err + "\n"
		st.err = f.err
	case statusCanceled:
		if f.startedAt != nil && !f.startedAt.Equal(at) {
			st.logs = t.logsUntil(at)
		} else {
			// Canceled while queued: Replicate reports started_at ≈
			// completed_at and a predict_time of a few microseconds.
			end := at.Add(3 * time.Microsecond)
			st.completedAt = &end
		}
	}
	return st
}

func (t *simTraining) output() map[string]string {
	return map[string]string{"version": t.destination + ":" + t.outVersion, "weights": t.weights}
}

// fraction is how far through a full run the training is at now.
func (t *simTraining) fraction(now time.Time) float64 {
	if t.startAt.IsZero() || now.Before(t.startAt) {
		return 0
	}
	run := t.runEnd.Sub(t.startAt)
	if run <= 0 {
		return 1
	}
	return math.Min(1, float64(now.Sub(t.startAt))/float64(run))
}

// The phases of a run, as fractions: setup until trainFrom, the training
// steps until trainTo, then saving and upload.
const (
	trainFrom = 0.10
	trainTo   = 0.90
)

type logLine struct {
	at   float64
	text string
}

// logsUntil is the log as printed by now. Each line is a pure function of
// the training and its position, so a later log always extends an earlier
// one, as Replicate's logs do.
func (t *simTraining) logsUntil(now time.Time) string {
	if t.startAt.IsZero() || now.Before(t.startAt) {
		return ""
	}
	f := t.fraction(now)
	var b strings.Builder
	for _, l := range t.setupLines() {
		if l.at <= f {
			b.WriteString(l.text)
			b.WriteByte('\n')
		}
	}
	n := min(100, t.steps)
	trainTime := time.Duration(float64(t.runEnd.Sub(t.startAt)) * (trainTo - trainFrom))
	for i := 0; i <= n; i++ {
		if trainFrom+(trainTo-trainFrom)*float64(i)/float64(n) > f {
			break
		}
		b.WriteString(TqdmLine(t.steps*i/n, t.steps, trainTime))
		b.WriteByte('\n')
	}
	for _, l := range []logLine{
		{0.92, "Saving LoRA weights to output/flux_train_replicate/lora.safetensors"},
		{0.95, "Packing output/flux_train_replicate into trained_model.tar"},
		{0.98, "Uploading trained_model.tar"},
	} {
		if l.at <= f {
			b.WriteString(l.text)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func (t *simTraining) setupLines() []logLine {
	src := t.inputImages
	if src == "" {
		src = "(no input_images given)"
	}
	lines := []logLine{
		{0, "Downloading input_images from " + src},
		{0.01, fmt.Sprintf("Extracted %d images", t.images)},
	}
	if t.autocaption {
		lines = append(lines,
			logLine{0.02, fmt.Sprintf("Captioning %d images with LLaVA 1.5 13B", t.images)},
			logLine{0.05, fmt.Sprintf("Captioned %d images", t.images)})
	}
	return append(lines,
		logLine{0.06, "Loading FLUX.1-dev transformer, VAE and text encoders"},
		logLine{0.08, fmt.Sprintf("Preparing LoRA network: rank %d", t.rank)},
		logLine{0.09, fmt.Sprintf("Caching latents for %d images", t.images)},
		logLine{trainFrom, fmt.Sprintf("Training for %d steps, batch size %d, learning rate %g", t.steps, t.batch, t.learningRate)},
	)
}

// Realistic failures, as Replicate's trainers report them.
var failures = []failure{
	{
		at:  0.06,
		err: "Error no file named config.json found in directory FLUX.1-dev/transformer.",
		traceback: "Traceback (most recent call last):\n" +
			"  File \"/src/train.py\", line 296, in train\n" +
			"    transformer = FluxTransformer2DModel.from_pretrained(\"FLUX.1-dev\", subfolder=\"transformer\")\n" +
			"OSError: Error no file named config.json found in directory FLUX.1-dev/transformer.\n",
	},
	{
		at:  -1, // somewhere in the training steps
		err: "CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 79.11 GiB of which 1.02 GiB is free.",
		traceback: "Traceback (most recent call last):\n" +
			"  File \"/src/train.py\", line 411, in train\n" +
			"    job.run()\n" +
			"  File \"/src/ai-toolkit/jobs/process/BaseSDTrainProcess.py\", line 1797, in run\n" +
			"    loss_dict = self.hook_train_loop(batch)\n" +
			"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 79.11 GiB of which 1.02 GiB is free.\n",
	},
	{
		at:        0.99,
		err:       "Training failed. Failed to create trained image after successful training run.",
		traceback: "Failed to create trained image after successful training run.\n",
	},
}

var missingImages = failure{
	at:  0,
	err: "input_images must be provided",
	traceback: "Traceback (most recent call last):\n" +
		"  File \"/src/train.py\", line 221, in train\n" +
		"    raise ValueError(\"input_images must be provided\")\n" +
		"ValueError: input_images must be provided\n",
}

// view says which response a training is rendered for: each shows
// timestamps with a different number of fractional digits (as Replicate's
// do: 9 on create, 6 on GET, 3 in some webhooks) and a different urls form.
type view int

const (
	viewCreate view = iota
	viewGet
	viewPrediction
	viewList
	viewWebhook
)

// json renders the training as Replicate would in view v at now.
func (t *simTraining) json(now time.Time, v view, base string) map[string]any {
	st := t.stateAt(now)
	digits := map[view][3]int{ // created_at, started_at, completed_at
		viewCreate:     {9, 9, 9},
		viewGet:        {6, 6, 6},
		viewPrediction: {6, 6, 3},
		viewList:       {6, 3, 6},
		viewWebhook:    {6, 3, 9},
	}[v]
	kind := "trainings"
	if v == viewCreate || v == viewPrediction {
		// Trainings are predictions underneath; the create response links
		// to /v1/predictions/{id}, GET to /v1/trainings/{id}.
		kind = "predictions"
	}
	m := map[string]any{
		"id":           t.id,
		"model":        t.model,
		"version":      t.version,
		"input":        t.input,
		"logs":         st.logs,
		"output":       nil,
		"error":        nil,
		"status":       st.status,
		"source":       "api",
		"data_removed": false,
		"created_at":   formatTime(t.createdAt, digits[0]),
		"urls": map[string]string{
			"get":    base + "/v1/" + kind + "/" + t.id,
			"cancel": base + "/v1/" + kind + "/" + t.id + "/cancel",
			"web":    "https://replicate.com/p/" + t.id,
		},
	}
	if st.output != nil {
		m["output"] = st.output
	}
	if st.err != "" {
		m["error"] = st.err
	}
	if v != viewCreate {
		// The create response leaves these out; later ones carry them, null
		// until set.
		m["started_at"] = formatTimePtr(st.startedAt, digits[1])
		m["completed_at"] = formatTimePtr(st.completedAt, digits[2])
		m["metrics"] = metrics(t.createdAt, st)
	}
	if v == viewList {
		// Replicate's list results carry no logs and no webhook settings.
		delete(m, "logs")
		return m
	}
	if t.webhook != "" {
		m["webhook"] = t.webhook
		if t.filter != nil {
			m["webhook_events_filter"] = t.filter
		}
	}
	return m
}

func metrics(created time.Time, st state) map[string]any {
	m := map[string]any{}
	if st.completedAt == nil {
		return m
	}
	if st.startedAt != nil {
		m["predict_time"] = seconds(st.completedAt.Sub(*st.startedAt))
	}
	m["total_time"] = seconds(st.completedAt.Sub(created))
	return m
}

func seconds(d time.Duration) float64 { return float64(d.Microseconds()) / 1e6 }

func formatTime(t time.Time, digits int) string {
	layout := "2006-01-02T15:04:05." + strings.Repeat("0", digits) + "Z"
	return t.UTC().Format(layout)
}

func formatTimePtr(t *time.Time, digits int) any {
	if t == nil {
		return nil
	}
	return formatTime(*t, digits)
}
