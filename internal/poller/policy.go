// Package poller checks on trainings that webhooks have not settled: in
// polling mode every unfinished one, in webhook mode those that went silent.
// Poll results go through the service's Apply like webhooks do, and all
// polling state lives in the database, so a restart loses nothing.
package poller

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// Policy decides when a model is checked next. It is pure but for jitter.
type Policy struct {
	Webhook        bool          // webhook mode: check only what went silent
	Interval       time.Duration // polling mode: while a training is young
	ReconcileAfter time.Duration // webhook mode: silence before a check
	Cap            time.Duration // the longest gap between checks in polling mode (60s)
	// Jitter returns a random fraction in [-1, 1); nil means none. Jitter
	// keeps several instances from checking in lockstep.
	Jitter func() float64
}

// youngFor is how long a training is polled at the base interval before
// the interval starts to grow.
const youngFor = 2 * time.Minute

// Next returns when m should be checked next, or nil if never (terminal).
func (p Policy) Next(m training.Model, now time.Time, _ training.Source) *time.Time {
	if m.Status.Terminal() {
		return nil
	}
	var d time.Duration
	if p.Webhook {
		d = p.ReconcileAfter
	} else {
		d = p.pollGap(now.Sub(m.CreatedAt))
	}
	if p.Jitter != nil {
		d += time.Duration(float64(d) * 0.1 * p.Jitter())
	}
	t := now.Add(d)
	return &t
}

// pollGap doubles the interval for every two minutes a training has run
// past youngFor, up to Cap.
func (p Policy) pollGap(age time.Duration) time.Duration {
	capGap := max(p.Cap, p.Interval)
	if age <= youngFor {
		return p.Interval
	}
	steps := float64(age-youngFor) / float64(youngFor)
	d := float64(p.Interval) * math.Pow(2, steps)
	if d > float64(capGap) {
		return capGap
	}
	return time.Duration(d)
}

// Retry returns the delay before checking again after a failed check.
func (p Policy) Retry(attempts int) time.Duration {
	d := time.Duration(float64(5*time.Second) * math.Pow(2, float64(min(attempts, 10))))
	return min(d, 5*time.Minute)
}

// RandomJitter is the default Jitter.
func RandomJitter() float64 { return rand.Float64()*2 - 1 }
