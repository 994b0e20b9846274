package app

import (
	"context"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// modelGauges publishes how many models wait (Pending) and run (Training),
// so that alerts can tell "no deliveries while trainings run" and "models
// stuck" from a quiet day. The counts come from the database, so on
// PostgreSQL every instance reports the same totals: alert on max(), not
// sum(). One scrape reads the database once for both gauges.
type modelGauges struct {
	a  *App
	mu sync.Mutex
	at time.Time
	n  map[training.Status]int
}

func (a *App) registerModelGauges() {
	g := &modelGauges{a: a}
	a.Metrics.GaugeFunc("trainhook_models_pending", "Models registered or started whose training Replicate has not reported running yet.", func() float64 {
		return float64(g.count(training.Pending))
	})
	a.Metrics.GaugeFunc("trainhook_models_training", "Models whose training runs on Replicate.", func() float64 {
		return float64(g.count(training.Training))
	})
}

// count returns the number of models in st, from a count at most a second
// old. It returns -1 when the database cannot be read, which no alert
// mistakes for "none".
func (g *modelGauges) count(st training.Status) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == nil || time.Since(g.at) > time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := g.a.Store.CountModels(ctx)
		cancel()
		if err != nil {
			g.a.Log.Warn("metrics: count models", "err", err)
			g.n = nil
			return -1
		}
		g.n, g.at = n, time.Now()
	}
	return g.n[st]
}
