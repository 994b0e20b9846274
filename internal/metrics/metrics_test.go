package metrics

import (
	"strings"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	r := New()
	c := r.NewCounter("trainhook_deliveries_total", "Deliveries by outcome.", "outcome")
	c.Inc("applied")
	c.Add(2, "duplicate")
	h := r.NewHistogram("trainhook_intake_seconds", "Intake latency.", []float64{0.01, 0.1})
	h.Observe(5 * time.Millisecond)
	h.Observe(50 * time.Millisecond)
	r.GaugeFunc("trainhook_up", "Up.", func() float64 { return 1 })
	// A gauge may read the registry's own counters (this deadlocked once).
	r.GaugeFunc("trainhook_ratio", "Ratio.", func() float64 { return float64(c.Total()) })
	var b strings.Builder
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`# TYPE trainhook_deliveries_total counter`,
		`trainhook_deliveries_total{outcome="applied"} 1`,
		`trainhook_deliveries_total{outcome="duplicate"} 2`,
		`trainhook_intake_seconds_bucket{le="0.01"} 1`,
		`trainhook_intake_seconds_bucket{le="0.1"} 2`,
		`trainhook_intake_seconds_bucket{le="+Inf"} 2`,
		`trainhook_intake_seconds_count 2`,
		`trainhook_up 1`,
		`trainhook_ratio 3`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
	if c.Value("duplicate") != 2 {
		t.Fatal("Value")
	}
}
