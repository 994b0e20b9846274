package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/training"
)

const simToken = "r8_test_token"

// withSim starts the simulator and a trainhook pointed at it. mode is "on"
// (webhook mode: the simulator delivers to this server over loopback) or
// "off" (polling).
func withSim(t *testing.T, mode string, simOpts fakereplicate.Options, env map[string]string) (*server, *fakereplicate.Server) {
	t.Helper()
	simOpts.Token = simToken
	if simOpts.Duration == 0 {
		simOpts.Duration = 1500 * time.Millisecond
	}
	if simOpts.WebhookRetryWindow == 0 {
		simOpts.WebhookRetryWindow = 2 * time.Second
	}
	sim, simURL := apptest.Sim(t, simOpts)
	ln := apptest.Listen(t)
	vars := map[string]string{
		"APP_URL": apptest.URL(ln), "TRAINHOOK_WEBHOOKS": mode,
		"REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": simToken, "REPLICATE_WEBHOOK_SECRET": sim.Key().Secret(),
		"TRAINHOOK_POLL_INTERVAL": "200ms", "TRAINHOOK_RECONCILE_AFTER": "3s",
	}
	for k, v := range env {
		vars[k] = v
	}
	return startOn(t, ln, vars), sim
}

func (s *server) startTraining(body string, h http.Header) (int, training.Model, string) {
	s.t.Helper()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json")
	r := s.do("POST", "/api/models", []byte(body), h)
	var m training.Model
	if r.code == http.StatusUnprocessableEntity {
		var e struct {
			Error string
			Model training.Model
		}
		r.json(s.t, &e)
		return r.code, e.Model, e.Error
	}
	if r.code < 300 {
		r.json(s.t, &m)
	}
	return r.code, m, r.errorText()
}

const loraInput = `{"input_images":"https://example.com/data.zip","trigger_word":"ZKX","steps":1000}`

func startBody(dest string) string {
	return fmt.Sprintf(`{"name":"lora %s","trainer":"ostris/flux-dev-lora-trainer","destination":"trainhook-sim/%s","input":%s}`, dest, dest, loraInput)
}

// waitFinal polls the API until every model is terminal, or fails the test.
func (s *server) waitFinal(ids ...string) map[string]detail {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	out := map[string]detail{}
	for time.Now().Before(deadline) {
		done := true
		for _, id := range ids {
			d := s.model(id)
			out[id] = d
			if !d.Status.Terminal() {
				done = false
			}
		}
		if done {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	for id, d := range out {
		s.t.Errorf("model %s is still %s", id, d.Status)
	}
	s.t.FailNow()
	return nil
}

// oneTrainingEach checks the simulator created exactly one training per model.
func oneTrainingEach(t *testing.T, sim *fakereplicate.Server, models ...training.Model) {
	t.Helper()
	perDest := map[string]int{}
	for _, tr := range sim.Trainings() {
		perDest[tr.Destination]++
	}
	for _, m := range models {
		if perDest[m.Destination] != 1 {
			t.Errorf("model %s (%s) got %d trainings, want 1", m.ID, m.Destination, perDest[m.Destination])
		}
	}
}

func lastSource(d detail) training.Source {
	return d.History[len(d.History)-1].Source
}

func TestLifecycleOutcomes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "off"} {
		t.Run("webhooks "+mode, func(t *testing.T) {
			t.Parallel()
			s, sim := withSim(t, mode, fakereplicate.Options{Duration: 2 * time.Second}, nil)
			code, ok, _ := s.startTraining(startBody("ok-"+mode), nil)
			_, bad, _ := s.startTraining(startBody("bad-"+mode), nil)
			_, cxl, _ := s.startTraining(startBody("cxl-"+mode), nil)
			if code != 201 || ok.Status != training.Training || ok.TrainingID == "" {
				t.Fatalf("start: %d %+v", code, ok)
			}
			if err := sim.Complete(bad.TrainingID, "failed", "input_images must be provided"); err != nil {
				t.Fatal(err)
			}
			r := s.do("POST", "/api/models/"+cxl.ID+"/cancel", nil, nil)
			if r.code != 200 && r.code != 202 {
				t.Fatalf("cancel: %d %s", r.code, r.body)
			}
			got := s.waitFinal(ok.ID, bad.ID, cxl.ID)
			truth, _ := sim.Training(ok.TrainingID)
			if d := got[ok.ID]; d.Status != training.Ready || !strings.Contains(string(d.Output), truth.OutputVersion) || truth.OutputVersion == "" {
				t.Errorf("succeeded: %+v (truth %+v)", d.Model, truth)
			}
			if d := got[bad.ID]; d.Status != training.Failed || d.Error != "input_images must be provided" {
				t.Errorf("failed: %+v", d.Model)
			}
			if d := got[cxl.ID]; d.Status != training.Canceled {
				t.Errorf("canceled: %+v", d.Model)
			}
			oneTrainingEach(t, sim, ok, bad, cxl)
			st := sim.Stats()
			if st.Total("trainings.create") != 3 {
				t.Errorf("creates: %d", st.Total("trainings.create"))
			}
			if mode == "on" && lastSource(got[ok.ID]) != training.SourceWebhook {
				t.Errorf("webhook mode settled by %s", lastSource(got[ok.ID]))
			}
			if mode == "off" && lastSource(got[ok.ID]) != training.SourcePoll {
				t.Errorf("polling mode settled by %s", lastSource(got[ok.ID]))
			}
			t.Logf("API calls: %d (%v)", st.Requests, st.Calls)
		})
	}
}

// With every webhook dropped, reconciliation still finds the outcome.
func TestEveryWebhookDroppedIsReconciled(t *testing.T) {
	t.Parallel()
	s, sim := withSim(t, "on", fakereplicate.Options{Faults: fakereplicate.Faults{DropWebhooks: 1}}, map[string]string{"TRAINHOOK_RECONCILE_AFTER": "1s"})
	var models []training.Model
	for i := 0; i < 4; i++ {
		_, m, _ := s.startTraining(startBody(fmt.Sprintf("drop-%d", i)), nil)
		models = append(models, m)
	}
	_ = sim.Complete(models[3].TrainingID, "failed", "CUDA out of memory")
	ids := []string{models[0].ID, models[1].ID, models[2].ID, models[3].ID}
	got := s.waitFinal(ids...)
	for i, m := range models {
		d := got[m.ID]
		want := training.Ready
		if i == 3 {
			want = training.Failed
		}
		if d.Status != want || lastSource(d) != training.SourcePoll {
			t.Errorf("model %d: %s by %s", i, d.Status, lastSource(d))
		}
	}
	oneTrainingEach(t, sim, models...)
	if st := sim.Stats(); st.WebhooksDelivered != 0 || st.WebhooksDropped == 0 {
		t.Fatalf("faults not in effect: %+v", st)
	}
}

// Duplicated and reordered deliveries apply each transition once.
func TestDuplicateAndReorderedWebhooks(t *testing.T) {
	t.Parallel()
	s, sim := withSim(t, "on", fakereplicate.Options{Faults: fakereplicate.Faults{DupWebhooks: 1, ReorderWebhooks: true}},
		map[string]string{"TRAINHOOK_WEBHOOK_EVENTS": "start,logs,completed"})
	var models []training.Model
	var ids []string
	for i := 0; i < 4; i++ {
		_, m, _ := s.startTraining(startBody(fmt.Sprintf("dup-%d", i)), nil)
		models, ids = append(models, m), append(ids, m.ID)
	}
	got := s.waitFinal(ids...)
	time.Sleep(2500 * time.Millisecond) // let reordered stragglers arrive
	for _, m := range models {
		d := s.model(m.ID)
		if d.Status != got[m.ID].Status || d.Status != training.Ready {
			t.Errorf("model %s: %s then %s", m.ID, got[m.ID].Status, d.Status)
		}
		ready := 0
		for _, h := range d.History {
			if h.To == training.Ready && h.Decision == training.Move {
				ready++
			}
		}
		if ready != 1 {
			t.Errorf("model %s moved to Ready %d times: %+v", m.ID, ready, d.History)
		}
	}
	oneTrainingEach(t, sim, models...)
	if st := sim.Stats(); st.WebhooksDelivered < 8 {
		t.Fatalf("expected duplicated deliveries: %+v", st)
	}
}

// A create whose answer is lost: the training exists, trainhook does not
// know its id. It must find it (by its webhook in webhook mode, by listing
// and matching in polling mode) and never create a second one.
func TestLostCreateResponseIsRecovered(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "off"} {
		for _, after := range []bool{true, false} {
			name := fmt.Sprintf("webhooks %s, created=%v", mode, after)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s, sim := withSim(t, mode, fakereplicate.Options{}, nil)
				if err := sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 502, Count: 1, After: after}); err != nil {
					t.Fatal(err)
				}
				code, m, _ := s.startTraining(startBody("lost"), nil)
				if code != http.StatusAccepted || m.Status != training.Pending || m.TrainingID != "" {
					t.Fatalf("start with a lost answer: %d %+v", code, m)
				}
				d := s.waitFinal(m.ID)[m.ID]
				if d.Status != training.Ready || d.TrainingID == "" {
					t.Fatalf("recovered model: %+v", d.Model)
				}
				oneTrainingEach(t, sim, m)
			})
		}
	}
}

func TestStartRefusedByReplicate(t *testing.T) {
	t.Parallel()
	s, sim := withSim(t, "off", fakereplicate.Options{}, nil)
	bad := `{"trainer":"ostris/flux-dev-lora-trainer:` + strings.Repeat("0", 64) + `","destination":"trainhook-sim/x","input":{}}`
	code, m, msg := s.startTraining(bad, nil)
	if code != http.StatusUnprocessableEntity || m.Status != training.Failed || !strings.Contains(msg, "version") || !strings.Contains(m.Error, "version") {
		t.Fatalf("bad version: %d %q %+v", code, msg, m)
	}
	code, m, msg = s.startTraining(`{"trainer":"nobody/no-such-trainer","destination":"trainhook-sim/x","input":{}}`, nil)
	if code != http.StatusUnprocessableEntity || m.Status != training.Failed {
		t.Fatalf("unknown trainer: %d %q %+v", code, msg, m)
	}
	for _, c := range []struct{ body, want string }{
		{`{"trainer":"nope","destination":"a/b"}`, "trainer"},
		{`{"trainer":"a/b","destination":"nope"}`, "destination"},
		{`{"trainer":"a/b","destination":"c/d","input":[1]}`, "input"},
		{`{"trainer":"a/b","destination":"c/d","training_id":"abc"}`, "not both"},
		{`{"name":"only a name"}`, "training_id"},
	} {
		if code, _, msg := s.startTraining(c.body, nil); code != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %d %q", c.body, code, msg)
		}
	}
	if n := len(sim.Trainings()); n != 0 {
		t.Fatalf("refused starts created %d trainings", n)
	}
}

func TestIdempotencyKeyStartsOneTraining(t *testing.T) {
	t.Parallel()
	s, sim := withSim(t, "off", fakereplicate.Options{}, nil)
	h := http.Header{"Idempotency-Key": {"order-42"}}
	c1, a, _ := s.startTraining(startBody("idem"), h)
	c2, b, _ := s.startTraining(startBody("idem"), h)
	if c1 != 201 || c2 != 200 || a.ID != b.ID {
		t.Fatalf("%d %d %s %s", c1, c2, a.ID, b.ID)
	}
	if n := len(sim.Trainings()); n != 1 {
		t.Fatalf("%d trainings", n)
	}
}

// The per-model token in the webhook URL binds a delivery to its model.
func TestModelTokenBinding(t *testing.T) {
	t.Parallel()
	s, sim := withSim(t, "on", fakereplicate.Options{Duration: 30 * time.Second}, nil)
	_, a, _ := s.startTraining(startBody("bind-a"), nil)
	_, b, _ := s.startTraining(startBody("bind-b"), nil)
	truth, _ := sim.Training(a.TrainingID)
	u, _ := url.Parse(truth.Webhook)
	if u.Query().Get("model") != a.ID || u.Query().Get("token") == "" {
		t.Fatalf("webhook URL %q", truth.Webhook)
	}
	tokenA := u.Query().Get("token")
	body := payload(a.TrainingID, "succeeded")
	hook := "/api/webhooks/replicate/completed"
	// Token of model a, but the URL claims model b.
	r := s.do("POST", hook+"?model="+b.ID+"&token="+tokenA, body, signed(sim.Key(), "msg_x1", time.Now(), body))
	if r.code != 403 || !strings.Contains(r.errorText(), "token") {
		t.Fatalf("mismatched token: %d %s", r.code, r.body)
	}
	// Model b's real token, but the training id belongs to model a.
	truthB, _ := sim.Training(b.TrainingID)
	ub, _ := url.Parse(truthB.Webhook)
	r = s.do("POST", hook+"?"+ub.RawQuery, body, signed(sim.Key(), "msg_x2", time.Now(), body))
	if r.code != 403 || !strings.Contains(r.errorText(), "belongs to another model") {
		t.Fatalf("training of another model: %d %s", r.code, r.body)
	}
	for _, m := range []training.Model{a, b} {
		if d := s.model(m.ID); d.Status != training.Training {
			t.Fatalf("refused deliveries changed model %s: %s", m.ID, d.Status)
		}
	}
}

func TestRateLimitIsRespected(t *testing.T) {
	s, sim := withSim(t, "off", fakereplicate.Options{Faults: fakereplicate.Faults{RateLimit: 60}, Duration: 2 * time.Second},
		map[string]string{"TRAINHOOK_API_RATE_LIMIT": "50", "TRAINHOOK_POLL_INTERVAL": "100ms"})
	var ids []string
	for i := 0; i < 3; i++ {
		_, m, _ := s.startTraining(startBody(fmt.Sprintf("rl-%d", i)), nil)
		ids = append(ids, m.ID)
	}
	// Inject 429s and 5xx on reads too: they are retried.
	_ = sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.get", Status: 429, Count: 2, RetryAfter: 1})
	_ = sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.list", Status: 503, Count: 2})
	got := s.waitFinal(ids...)
	for _, d := range got {
		if d.Status != training.Ready {
			t.Errorf("%s: %s", d.ID, d.Status)
		}
	}
	st := sim.Stats()
	if st.Throttled != 0 || st.MaxPerMinute > 60 {
		t.Fatalf("budget exceeded: throttled %d, max/min %d", st.Throttled, st.MaxPerMinute)
	}
	b, _ := json.Marshal(st.Calls)
	t.Logf("calls: %s", b)
}

// In webhook mode with a token, trainhook checks the signing key against the
// account's: with none configured it uses the account's; with keys that do
// not include it, it refuses to start (every webhook would be refused).
func TestSigningKeySelfCheck(t *testing.T) {
	t.Parallel()
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: simToken})
	base := map[string]string{
		"APP_URL": "https://trainhook.example.com", "REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": simToken,
		"DATABASE_URL": filepath.Join(t.TempDir(), "k.db"), "ADDR": "127.0.0.1:0",
	}
	load := func(extra map[string]string) config.Config {
		vars := map[string]string{}
		for k, v := range base {
			vars[k] = v
		}
		for k, v := range extra {
			vars[k] = v
		}
		cfg, err := config.Load(func(k string) string { return vars[k] })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	a, err := app.Start(context.Background(), load(nil), log)
	if err != nil {
		t.Fatalf("no key configured, token set: %v", err)
	}
	if len(a.Keys) != 1 || !a.Keys[0].Equal(sim.Key()) {
		t.Fatalf("did not use the account's key: %v", a.Keys.Fingerprints())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = a.Run(ctx)

	_, err = app.Start(context.Background(), load(map[string]string{"REPLICATE_WEBHOOK_SECRET": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}), log)
	if err == nil || !strings.Contains(err.Error(), "does not include this account's signing key") || strings.Contains(err.Error(), "C2FVsBQ") {
		t.Fatalf("wrong key: %v", err)
	}
	// Rotation: the old key and the account's key together are fine.
	a, err = app.Start(context.Background(), load(map[string]string{"REPLICATE_WEBHOOK_SECRET": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD " + sim.Key().Secret()}), log)
	if err != nil {
		t.Fatalf("rotation: %v", err)
	}
	_ = a.Run(ctx)
}
