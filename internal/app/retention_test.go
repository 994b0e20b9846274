package app_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// deliveries lists the stored deliveries through the API, newest first, as
// "webhook-id verified/refused outcome".
func (s *server) deliveries() []string {
	s.t.Helper()
	r := s.do("GET", "/api/deliveries?limit=200", nil, nil)
	if r.code != http.StatusOK {
		s.t.Fatalf("list deliveries: %d %s", r.code, r.body)
	}
	var out struct {
		Deliveries []training.Delivery `json:"deliveries"`
	}
	r.json(s.t, &out)
	var got []string
	for _, d := range out.Deliveries {
		kind := "refused"
		if d.Verified {
			kind = "verified"
		}
		got = append(got, fmt.Sprintf("%s %s %s", d.WebhookID, kind, d.Outcome))
	}
	return got
}

// waitDeliveries waits for the deliveries list to be want: a refused
// delivery's audit row is written after the answer, off the request path.
func (s *server) waitDeliveries(want ...string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.deliveries()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("deliveries = %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) metric(line string) bool {
	s.t.Helper()
	r := s.do("GET", "/metrics", nil, nil)
	return strings.Contains(string(r.body), line+"\n")
}

// Over real HTTP on the default settings: a prune deletes refused deliveries
// after 7 days and verified ones after 30, never the model or its history,
// and a webhook-id stays a duplicate while its claim is kept.
func TestRetentionPrunesOldDeliveriesKeepsModels(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	m := s.register("train-ret")
	body := payload("train-ret", "succeeded")
	forger, _ := replicate.ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	if r := s.do("POST", "/api/webhooks/replicate/completed", body, signed(forger, "msg_forged", time.Now(), body)); r.code != http.StatusUnauthorized {
		t.Fatalf("forged delivery: %d %s", r.code, r.body)
	}
	if r := s.deliver("msg_done", body); r.code != http.StatusOK || !strings.Contains(string(r.body), `"applied"`) {
		t.Fatalf("delivery: %d %s", r.code, r.body)
	}
	s.waitDeliveries("msg_done verified applied", "msg_forged refused refused")
	ready := s.model(m.ID)
	if ready.Status != training.Ready || len(ready.History) != 2 {
		t.Fatalf("model after the delivery: %s with %d history entries", ready.Status, len(ready.History))
	}

	// Nothing is old yet.
	now := time.Now()
	if got, err := s.app.Prune(t.Context(), now); err != nil || got.Total() != 0 {
		t.Fatalf("Prune now = %+v, %v; want nothing deleted", got, err)
	}
	s.waitDeliveries("msg_done verified applied", "msg_forged refused refused")

	// Eight days on, the refused delivery is gone; the verified one and
	// its claim stay, so Replicate's retry of it (same webhook-id, new
	// timestamp and signature) is still a duplicate.
	got, err := s.app.Prune(t.Context(), now.Add(8*24*time.Hour))
	if err != nil || got.Refused != 1 || got.Verified != 0 || got.Claims != 0 {
		t.Fatalf("Prune 8 days on = %+v, %v; want the refused delivery only", got, err)
	}
	s.waitDeliveries("msg_done verified applied")
	if r := s.deliver("msg_done", body); r.code != http.StatusOK || !strings.Contains(string(r.body), `"duplicate"`) {
		t.Fatalf("retry of a kept delivery: %d %s, want a duplicate", r.code, r.body)
	}

	// Thirty-one days on, the verified deliveries and the claim are gone too.
	got, err = s.app.Prune(t.Context(), now.Add(31*24*time.Hour))
	if err != nil || got.Verified != 2 || got.Claims != 1 || got.PayloadBytes != int64(2*len(body)) {
		t.Fatalf("Prune 31 days on = %+v, %v; want 2 verified deliveries of %d bytes and 1 claim", got, err, len(body))
	}
	s.waitDeliveries()
	after := s.model(m.ID)
	if after.Status != training.Ready || !after.UpdatedAt.Equal(ready.UpdatedAt) || len(after.History) != len(ready.History) {
		t.Fatalf("model after the prunes: %s, updated %v, %d history entries; want it unchanged", after.Status, after.UpdatedAt, len(after.History))
	}
	if r := s.do("GET", "/api/models?status=Ready", nil, nil); !strings.Contains(string(r.body), m.ID) {
		t.Fatalf("model not listed after the prunes: %s", r.body)
	}
	for _, line := range []string{
		`trainhook_pruned_rows_total{kind="refused_deliveries"} 1`,
		`trainhook_pruned_rows_total{kind="verified_deliveries"} 2`,
		`trainhook_pruned_rows_total{kind="webhook_ids"} 1`,
		fmt.Sprintf(`trainhook_pruned_payload_bytes_total %d`, 2*len(body)+len(body)),
		`trainhook_prune_runs_total{outcome="ok"} 3`,
	} {
		if !s.metric(line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// With a short TRAINHOOK_RETENTION the delivery rows go, but the webhook-id
// claim is kept for MinClaimRetention: a retry with the same webhook-id is
// still a duplicate and is not applied again, and a replay of the captured
// request is refused by its signed timestamp.
func TestShortRetentionKeepsClaimsThroughRetries(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"TRAINHOOK_RETENTION": "1h", "TRAINHOOK_REFUSED_RETENTION": "1h"})
	m := s.register("train-short")
	body := payload("train-short", "succeeded")
	sent := time.Now()
	captured := signed(testKey, "msg_short", sent, body)
	if r := s.do("POST", "/api/webhooks/replicate/completed", body, captured); r.code != http.StatusOK {
		t.Fatalf("delivery: %d %s", r.code, r.body)
	}
	before := s.model(m.ID)

	got, err := s.app.Prune(t.Context(), sent.Add(2*time.Hour))
	if err != nil || got.Verified != 1 || got.Claims != 0 {
		t.Fatalf("Prune 2 hours on = %+v, %v; want the delivery pruned and its claim kept", got, err)
	}
	s.waitDeliveries()
	// Replicate's retry: same id, fresh timestamp and signature.
	if r := s.deliver("msg_short", body); r.code != http.StatusOK || !strings.Contains(string(r.body), `"duplicate"`) {
		t.Fatalf("retry after the delivery was pruned: %d %s, want a duplicate", r.code, r.body)
	}
	// Someone replaying the captured request, signed 6 minutes ago.
	old := signed(testKey, "msg_short", time.Now().Add(-6*time.Minute), body)
	if r := s.do("POST", "/api/webhooks/replicate/completed", body, old); r.code != http.StatusUnauthorized {
		t.Fatalf("replay of a request older than 5 minutes: %d %s, want 401", r.code, r.body)
	}
	if after := s.model(m.ID); len(after.History) != len(before.History) || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("a retry changed the model: %d history entries, was %d", len(after.History), len(before.History))
	}

	// The claim goes once MinClaimRetention has passed.
	got, err = s.app.Prune(t.Context(), sent.Add(73*time.Hour))
	if err != nil || got.Claims != 1 {
		t.Fatalf("Prune 73 hours on = %+v, %v; want the claim pruned", got, err)
	}
}

// A flood of forged deliveries keeps at most TRAINHOOK_REFUSED_MAX of them,
// the newest, whatever their age.
func TestRefusedMaxCapsFlood(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"TRAINHOOK_REFUSED_MAX": "3"})
	forger, _ := replicate.ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	body := payload("train-flood", "succeeded")
	var want []string
	for i := range 8 {
		id := fmt.Sprintf("flood_%d", i)
		if r := s.do("POST", "/api/webhooks/replicate/completed", body, signed(forger, id, time.Now(), body)); r.code != http.StatusUnauthorized {
			t.Fatalf("forged delivery: %d %s", r.code, r.body)
		}
		// Wait for each, so that ids follow the order sent.
		want = append([]string{id + " refused refused"}, want...)
		s.waitDeliveries(want...)
	}
	got, err := s.app.Prune(t.Context(), time.Now())
	if err != nil || got.RefusedOver != 5 || got.Refused != 0 {
		t.Fatalf("Prune = %+v, %v; want 5 refused deliveries over the cap", got, err)
	}
	s.waitDeliveries(want[:3]...)
	if !s.metric(`trainhook_pruned_rows_total{kind="refused_over_cap"} 5`) {
		t.Error("/metrics lacks the refused deliveries over the cap")
	}
}
