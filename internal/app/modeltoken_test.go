package app_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/training"
)

// A training trainhook started carries ?model=&token= in its webhook URL, so
// a delivery for it without them is refused (403), changes nothing and does
// not use up its webhook-id; the same delivery sent to the tokenized URL is
// then applied. A model an app registered with a bare URL keeps receiving
// deliveries without a token.
func TestStartedTrainingNeedsItsToken(t *testing.T) {
	t.Parallel()
	s, sim := withSim(t, "on", fakereplicate.Options{Duration: time.Minute}, nil)
	_, started, _ := s.startTraining(startBody("token-needed"), nil)
	if started.TrainingID == "" {
		t.Fatalf("start: %+v", started)
	}
	truth, _ := sim.Training(started.TrainingID)
	u, _ := url.Parse(truth.Webhook)
	if u.Query().Get("token") == "" {
		t.Fatalf("webhook URL %q has no token", truth.Webhook)
	}
	hook := "/api/webhooks/replicate/completed"
	body := payload(started.TrainingID, "succeeded")
	before := s.model(started.ID)

	r := s.do("POST", hook, body, signed(sim.Key(), "msg_untokened", time.Now(), body))
	if r.code != 403 || !strings.Contains(r.errorText(), "?model=&token=") {
		t.Fatalf("untokened delivery for a started training: %d %s", r.code, r.body)
	}
	after := s.model(started.ID)
	if after.Status != before.Status || len(after.History) != len(before.History) || after.Status != training.Training {
		t.Fatalf("the refused delivery changed the model: %s (%d history) → %s (%d history)", before.Status, len(before.History), after.Status, len(after.History))
	}
	if m := s.do("GET", "/metrics", nil, nil); !strings.Contains(string(m.body), `trainhook_webhook_refusals_total{reason="model_binding"} 1`) {
		t.Errorf("the refusal was not counted:\n%s", m.body)
	}

	// The same delivery, to the URL the training was created with.
	r = s.do("POST", hook+"?"+u.RawQuery, body, signed(sim.Key(), "msg_untokened", time.Now(), body))
	if r.code != 200 || !strings.Contains(string(r.body), `"outcome":"applied"`) {
		t.Fatalf("tokenized delivery after the refusal: %d %s", r.code, r.body)
	}
	if d := s.model(started.ID); d.Status != training.Ready {
		t.Fatalf("model %s is %s, want Ready", started.ID, d.Status)
	}

	// A model registered by an app: its training's webhook URL is bare.
	if err := sim.AddTraining("app-started-training"); err != nil {
		t.Fatal(err)
	}
	registered := s.register("app-started-training")
	body = payload("app-started-training", "succeeded")
	r = s.do("POST", hook, body, signed(sim.Key(), "msg_bare", time.Now(), body))
	if r.code != 200 {
		t.Fatalf("bare delivery for a registered model: %d %s", r.code, r.body)
	}
	if d := s.model(registered.ID); d.Status != training.Ready {
		t.Fatalf("registered model %s is %s, want Ready", registered.ID, d.Status)
	}
}
