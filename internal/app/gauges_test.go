package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// /metrics counts the models waiting and running, from the database.
func TestMetricsCountPendingAndTrainingModels(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	waitGauges := func(pending, running int) {
		t.Helper()
		want := []string{fmt.Sprintf("trainhook_models_pending %d\n", pending), fmt.Sprintf("trainhook_models_training %d\n", running)}
		var body string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			r := s.do("GET", "/metrics", nil, nil)
			if r.code != http.StatusOK {
				t.Fatalf("metrics: %d %s", r.code, r.body)
			}
			body = string(r.body)
			if strings.Contains(body, want[0]) && strings.Contains(body, want[1]) {
				return
			}
		}
		t.Fatalf("metrics never showed %q and %q:\n%s", want[0], want[1], body)
	}
	waitGauges(0, 0)
	s.register("gauge-train-a")
	s.register("gauge-train-b")
	waitGauges(2, 0)
	if r := s.deliver("msg_gauge_1", payload("gauge-train-a", "processing")); r.code != http.StatusOK {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	waitGauges(1, 1)
	for i, id := range []string{"gauge-train-a", "gauge-train-b"} {
		if r := s.deliver(fmt.Sprintf("msg_gauge_done_%d", i), payload(id, "succeeded")); r.code != http.StatusOK {
			t.Fatalf("deliver: %d %s", r.code, r.body)
		}
	}
	waitGauges(0, 0)
}
