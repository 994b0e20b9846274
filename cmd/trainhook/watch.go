package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/training"
)

func runWatch(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("watch", e)
	server := serverFlag(fs, e)
	asJSON := fs.Bool("json", false, "print only the model as it ended, as JSON (no progress)")
	poll := fs.Bool("poll", false, "poll GET /api/models/{id} instead of following the server's event stream")
	fs.Usage = usageFunc(fs, e, "watch ID [flags]", `
Follows a model until its training ends, with a progress bar (a plain line
per change when output is not a terminal), then prints the outcome.

Exit status: 0 when the model is Ready; 1 when it is Failed or Canceled, or
on an error; 130 when interrupted (Ctrl-C), which stops watching and cancels
nothing.`)
	pos, code, ok := parseFlags(fs, args, e, 1, "the model ID")
	if !ok {
		return code
	}
	c, ok := newClient(e, "watch", *server)
	if !ok {
		return exitUsage
	}
	return follow(ctx, e, c, pos[0], followOptions{json: *asJSON, poll: *poll})
}

type followOptions struct {
	json bool // print the final model as JSON, no progress
	poll bool // never use the event stream
	// want is the final status that exits 0 (Ready when empty).
	want training.Status
}

// follow watches a model until it is final, showing progress, and returns
// the exit code: 0 when it ended as wanted, 1 otherwise, 130 when ctx ended
// (Ctrl-C) first.
func follow(ctx context.Context, e env, c *apiclient.Client, id string, o followOptions) int {
	var view *progressView
	if !o.json {
		view = newProgressView(e.stdout, isTerminal(e.stdout, e.getenv))
		defer view.close()
	}
	d, err := c.Watch(ctx, id, apiclient.WatchOptions{NoEvents: o.poll}, func(m training.Model) {
		if view != nil {
			view.update(m)
		}
	})
	if view != nil {
		view.close()
	}
	if err != nil {
		if ctx.Err() != nil {
			state := ""
			if d.Status != "" {
				state = " (still " + string(d.Status) + ")"
			}
			fmt.Fprintf(e.stderr, "Stopped watching model %s%s; its training goes on and nothing was canceled.\nResume with: trainhook watch %s\n", id, state, id)
			return exitInterrupted
		}
		fmt.Fprintf(e.stderr, "watch: %s\n", explain(err, c, id))
		return exitFailed
	}
	if o.json {
		writeJSON(e.stdout, d)
	} else {
		printOutcome(e.stdout, d.Model)
	}
	want := o.want
	if want == "" {
		want = training.Ready
	}
	if d.Status != want {
		return exitFailed
	}
	return exitOK
}

// printOutcome says how a final model ended.
func printOutcome(w io.Writer, m training.Model) {
	took := humanDuration(m.UpdatedAt.Sub(m.CreatedAt))
	switch m.Status {
	case training.Ready:
		fmt.Fprintf(w, "Ready after %s: model %s %q\n", took, m.ID, m.Name)
		var out struct{ Version, Weights string }
		if json.Unmarshal(m.Output, &out) == nil && (out.Version != "" || out.Weights != "") {
			fmt.Fprintf(w, "  version  %s\n  weights  %s\n", orDash(out.Version), orDash(out.Weights))
		} else if len(m.Output) > 0 {
			fmt.Fprintf(w, "  output   %s\n", m.Output)
		}
	case training.Failed:
		msg := m.Error
		if msg == "" {
			msg = "Replicate gave no error message (remote status " + orDash(m.RemoteStatus) + ")"
		}
		fmt.Fprintf(w, "Failed after %s: model %s %q\n  error    %s\n", took, m.ID, m.Name, msg)
	case training.Canceled:
		fmt.Fprintf(w, "Canceled after %s: model %s %q\n", took, m.ID, m.Name)
	default:
		fmt.Fprintf(w, "Model %s %q is %s\n", m.ID, m.Name, m.Status)
	}
	if m.Flagged {
		fmt.Fprintf(w, "  warning  Replicate reported two different outcomes; see `trainhook models show %s`\n", m.ID)
	}
}

// progressView shows a model's progress: on a terminal one line redrawn in
// place (and every second, for the elapsed time); otherwise a plain line
// each time the status or the whole percentage changes.
type progressView struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu     sync.Mutex
	m      training.Model
	seen   bool
	last   string // the last plain line's key
	drawn  bool   // a terminal line is showing
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

func newProgressView(w io.Writer, tty bool) *progressView {
	p := &progressView{w: w, tty: tty, now: time.Now, stop: make(chan struct{}), done: make(chan struct{})}
	if tty {
		go p.tick()
	} else {
		close(p.done)
	}
	return p
}

func (p *progressView) tick() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			if p.seen && !p.closed {
				p.draw()
			}
			p.mu.Unlock()
		}
	}
}

func (p *progressView) update(m training.Model) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.m, p.seen = m, true
	if p.tty {
		p.draw()
		return
	}
	key := fmt.Sprintf("%s %d %d", m.Status, int(m.Progress.Percent), m.Progress.Step)
	if key != p.last {
		p.last = key
		fmt.Fprintln(p.w, plainLine(m, p.elapsed()))
	}
}

// close ends the terminal line so what follows starts on a new one.
func (p *progressView) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.drawn {
		p.draw()
		fmt.Fprintln(p.w)
	}
	p.mu.Unlock()
	close(p.stop)
	<-p.done
}

func (p *progressView) elapsed() time.Duration {
	return max(0, p.now().Sub(p.m.CreatedAt))
}

func (p *progressView) draw() {
	fmt.Fprint(p.w, "\r\x1b[K"+barLine(p.m, p.elapsed()))
	p.drawn = true
}

const barWidth = 24

// barLine is the terminal form: "Training  [██████▌          ]  27%  270/1000  1m02s".
func barLine(m training.Model, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s ", m.Status)
	switch {
	case m.Status == training.Pending:
		b.WriteString("waiting for Replicate")
	case m.Status == training.Training && m.Progress.Percent == 0 && m.Progress.Total == 0:
		b.WriteString("[" + strings.Repeat("░", barWidth) + "]  starting")
	default:
		pct := m.Progress.Percent
		if m.Status == training.Ready {
			pct = 100
		}
		fill := int(pct / 100 * barWidth * 8)
		bar := strings.Repeat("█", fill/8)
		if r := fill % 8; r > 0 && fill/8 < barWidth {
			bar += string([]rune("▏▎▍▌▋▊▉")[r-1])
		}
		bar += strings.Repeat("░", barWidth-len([]rune(bar)))
		fmt.Fprintf(&b, "[%s] %3.0f%%", bar, pct)
		if m.Progress.Total > 0 {
			fmt.Fprintf(&b, "  %d/%d", m.Progress.Step, m.Progress.Total)
		}
	}
	b.WriteString("  " + humanDuration(elapsed))
	if left := training.TimeLeft(m, time.Now()); left != "" {
		b.WriteString(", " + left)
	}
	return b.String()
}

// plainLine is the form for logs and pipes: "[  12.0s] Training  42% (step 420/1000)".
func plainLine(m training.Model, elapsed time.Duration) string {
	s := fmt.Sprintf("[%7.1fs] %s", elapsed.Seconds(), m.Status)
	if m.Status == training.Training && (m.Progress.Percent > 0 || m.Progress.Total > 0) {
		s += fmt.Sprintf(" %3.0f%%", m.Progress.Percent)
		if m.Progress.Total > 0 {
			s += fmt.Sprintf(" (step %d/%d)", m.Progress.Step, m.Progress.Total)
		}
		if left := training.TimeLeft(m, time.Now()); left != "" {
			s += ", " + left
		}
	}
	return s
}
