// Package metrics keeps counters and histograms and writes them in the
// Prometheus text format. It is small on purpose: trainhook needs a handful
// of series, not a client library.
package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds every series; the zero value is not usable, use New.
type Registry struct {
	mu      sync.Mutex
	order   []string
	help    map[string]string
	kind    map[string]string
	series  map[string]map[string]any // name -> label string -> *atomic.Int64 or *Histogram
	gauges  map[string]func() float64
	buckets map[string][]float64 // histogram upper bounds by name
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{help: map[string]string{}, kind: map[string]string{}, series: map[string]map[string]any{}, gauges: map[string]func() float64{}, buckets: map[string][]float64{}}
}

func (r *Registry) declare(name, help, kind string) {
	if _, ok := r.help[name]; !ok {
		r.order = append(r.order, name)
		r.help[name], r.kind[name] = help, kind
		r.series[name] = map[string]any{}
	}
}

// Counter is a monotonically increasing count with fixed label names.
type Counter struct {
	r      *Registry
	name   string
	labels []string
}

// NewCounter declares a counter with the given label names.
func (r *Registry) NewCounter(name, help string, labels ...string) *Counter {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.declare(name, help, "counter")
	return &Counter{r: r, name: name, labels: labels}
}

// Add adds n to the series with these label values (in declared order).
func (c *Counter) Add(n int64, values ...string) {
	key := labelString(c.labels, values)
	c.r.mu.Lock()
	v, ok := c.r.series[c.name][key]
	if !ok {
		v = new(atomic.Int64)
		c.r.series[c.name][key] = v
	}
	c.r.mu.Unlock()
	v.(*atomic.Int64).Add(n)
}

// Inc adds one.
func (c *Counter) Inc(values ...string) { c.Add(1, values...) }

// Value returns the count for these label values (for tests and the dashboard).
func (c *Counter) Value(values ...string) int64 {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if v, ok := c.r.series[c.name][labelString(c.labels, values)]; ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// Total sums the counter over every label value.
func (c *Counter) Total() int64 {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	var n int64
	for _, v := range c.r.series[c.name] {
		n += v.(*atomic.Int64).Load()
	}
	return n
}

// GaugeFunc declares a gauge read when metrics are written.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.declare(name, help, "gauge")
	r.gauges[name] = f
}

// Histogram counts observations into fixed buckets (seconds).
type Histogram struct {
	r       *Registry
	name    string
	labels  []string
	buckets []float64
}

type histSeries struct {
	mu     sync.Mutex
	counts []uint64
	sum    float64
	n      uint64
}

// NewHistogram declares a histogram with upper bounds in seconds.
func (r *Registry) NewHistogram(name, help string, buckets []float64, labels ...string) *Histogram {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.declare(name, help, "histogram")
	r.buckets[name] = buckets
	return &Histogram{r: r, name: name, labels: labels, buckets: buckets}
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration, values ...string) {
	key := labelString(h.labels, values)
	h.r.mu.Lock()
	v, ok := h.r.series[h.name][key]
	if !ok {
		v = &histSeries{counts: make([]uint64, len(h.buckets))}
		h.r.series[h.name][key] = v
	}
	h.r.mu.Unlock()
	s := v.(*histSeries)
	sec := d.Seconds()
	s.mu.Lock()
	for i, b := range h.buckets {
		if sec <= b {
			s.counts[i]++
		}
	}
	s.sum += sec
	s.n++
	s.mu.Unlock()
}

// LatencyBuckets suit request latencies from 0.5 ms to 10 s.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .015, .025, .05, .1, .25, .5, 1, 2.5, 10}

// DelayBuckets suit detection delays from 100 ms to an hour.
var DelayBuckets = []float64{.1, .5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

func labelString(names, values []string) string {
	if len(names) != len(values) {
		panic(fmt.Sprintf("metrics: %d label values for %d labels", len(values), len(names)))
	}
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", n, values[i])
	}
	return b.String()
}

// WriteTo writes every series in the Prometheus text exposition format.
// Gauge functions run without the registry's lock held, so they may read
// counters of the same registry.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	order := append([]string(nil), r.order...)
	gauges := make(map[string]func() float64, len(r.gauges))
	for k, v := range r.gauges {
		gauges[k] = v
	}
	r.mu.Unlock()
	values := make(map[string]float64, len(gauges))
	for name, f := range gauges {
		values[name] = f()
	}

	var b strings.Builder
	r.mu.Lock()
	for _, name := range order {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, r.help[name], name, r.kind[name])
		if v, ok := values[name]; ok {
			fmt.Fprintf(&b, "%s %s\n", name, formatFloat(v))
			continue
		}
		keys := make([]string, 0, len(r.series[name]))
		for k := range r.series[name] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch v := r.series[name][k].(type) {
			case *atomic.Int64:
				fmt.Fprintf(&b, "%s%s %d\n", name, braces(k), v.Load())
			case *histSeries:
				v.mu.Lock()
				for i, ub := range r.buckets[name] {
					fmt.Fprintf(&b, "%s_bucket%s %d\n", name, braces(join(k, fmt.Sprintf("le=%q", formatFloat(ub)))), v.counts[i])
				}
				fmt.Fprintf(&b, "%s_bucket%s %d\n", name, braces(join(k, `le="+Inf"`)), v.n)
				fmt.Fprintf(&b, "%s_sum%s %s\n%s_count%s %d\n", name, braces(k), formatFloat(v.sum), name, braces(k), v.n)
				v.mu.Unlock()
			}
		}
	}
	r.mu.Unlock()
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

func braces(s string) string {
	if s == "" {
		return ""
	}
	return "{" + s + "}"
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return fmt.Sprintf("%g", f)
}

// Handler serves the registry at /metrics.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = r.WriteTo(w)
	})
}
