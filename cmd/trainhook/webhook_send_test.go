package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/training"
)

func testWebhookSend(t *testing.T, s *stack) {
	ctx := context.Background()
	const tid = "whsendr7k2m9x4c1rm80cq3ftw"
	if err := s.sim.AddTraining(tid); err != nil {
		t.Fatal(err)
	}
	reg, err := s.client.Register(ctx, apiclient.RegisterRequest{Name: "sent by hand", TrainingID: tid})
	if err != nil {
		t.Fatal(err)
	}
	send := func(extra ...string) (int, string, string) {
		return runCLI(t, cleanEnv("REPLICATE_WEBHOOK_SECRET="+secret),
			append([]string{"webhook", "send", "--url", s.srv.url, "--training-id", tid}, extra...)...)
	}

	code, out, errOut := send("--status", "processing")
	if code != 0 {
		t.Fatalf("processing: exit %d\n%s%s", code, out, errOut)
	}
	mustContain(t, "output", out, "POST "+s.srv.url+"/api/webhooks/replicate/completed", "HTTP 200 OK", `"outcome":"applied"`, `"status":"Training"`)
	d, _ := s.client.Model(ctx, reg.Model.ID)
	if d.Status != training.Training || d.Progress.Percent != 42 || d.Progress.Total != 1000 {
		t.Fatalf("after processing: %s %+v (the payload's log says 42%%)", d.Status, d.Progress)
	}

	// The full webhook URL with a query string works too, and a repeated
	// webhook-id is acknowledged as a duplicate.
	full := s.srv.url + "/api/webhooks/replicate/completed?source=cli-test"
	code, out, errOut = runCLI(t, cleanEnv(), "webhook", "send", "--url", full, "--training-id", tid, "--status", "succeeded",
		"--secret", secret, "--webhook-id", "msg_cli_fixed", "--json")
	var rep sendReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.StatusCode != 200 || rep.URL != full {
		t.Fatalf("succeeded: exit %d\n%s%s", code, out, errOut)
	}
	if d, _ := s.client.Model(ctx, reg.Model.ID); d.Status != training.Ready || !strings.Contains(string(d.Output), `"weights":"https://replicate.delivery/`) {
		t.Fatalf("after succeeded: %s %s", d.Status, d.Output)
	}
	code, out, _ = send("--status", "succeeded", "--webhook-id", "msg_cli_fixed", "--secret", secret)
	if code != 0 || !strings.Contains(out, `"outcome":"duplicate"`) {
		t.Fatalf("repeat: exit %d\n%s", code, out)
	}

	// A big delivery carries the whole log; the server's 10 MiB default takes 5 MiB.
	code, out, _ = send("--status", "failed", "--logs-size", "5MiB")
	if code != 0 || !strings.Contains(out, "5.0 MiB") {
		t.Fatalf("5 MiB: exit %d\n%s", code, out)
	}
}

func testWebhookSendRefused(t *testing.T, s *stack) {
	base := []string{"webhook", "send", "--url", s.srv.url, "--training-id", "whsendrefused00000000000000", "--status", "succeeded"}
	for _, c := range []struct {
		flag, reason string
	}{
		{"--forge", "no valid signature"},
		{"--stale", "more than 5 minutes old"},
	} {
		code, out, errOut := runCLI(t, cleanEnv("REPLICATE_WEBHOOK_SECRET="+secret), append(base, c.flag)...)
		if code != 1 {
			t.Fatalf("%s: exit %d, want 1\n%s%s", c.flag, code, out, errOut)
		}
		mustContain(t, c.flag, out, "HTTP 401 Unauthorized", c.reason, "Refused, as it must be")
	}
	code, out, _ := runCLI(t, cleanEnv(), append(base, "--forge", "--json")...)
	var rep sendReport
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.StatusCode != 401 || !rep.Forged {
		t.Fatalf("--forge --json: exit %d\n%s", code, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"webhook", "send", "--training-id", "x", "--status", "succeeded"}, "missing --url"},
		{[]string{"webhook", "send", "--url", s.srv.url, "--training-id", "x", "--status", "done"}, `--status "done"`},
		{[]string{"webhook", "send", "--url", s.srv.url, "--training-id", "x", "--status", "failed"}, "no signing key"},
		{[]string{"webhook", "send", "--url", s.srv.url, "--training-id", "x", "--status", "failed", "--secret", "nope"}, `starts with "whsec_"`},
		{[]string{"webhook", "send", "--url", s.srv.url, "--training-id", "x", "--status", "failed", "--forge", "--token", "t"}, "--token needs --model"},
		{[]string{"webhook", "frob"}, `unknown subcommand "frob"`},
	} {
		code, _, errOut := runCLI(t, cleanEnv(), c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", c.args, code, c.want, errOut)
		}
	}
}

// For a training trainhook started, a delivery must come to the model's own
// URL: --model fetches its token and training id through the API, and the
// delivery is applied. Without it, the same delivery is refused (403).
func testWebhookSendToStartedModel(t *testing.T, s *stack) {
	code, out, errOut := runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/sent-to-model", "--json")...)
	var m training.Model
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m.TrainingID == "" {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	env := s.clientEnv("REPLICATE_WEBHOOK_SECRET=" + secret)
	code, out, _ = runCLI(t, env, "webhook", "send", "--training-id", m.TrainingID, "--status", "succeeded")
	if code != 1 || !strings.Contains(out, "HTTP 403") {
		t.Fatalf("bare delivery for a started training: exit %d, want 1 and a 403\n%s", code, out)
	}
	code, out, errOut = runCLI(t, env, "webhook", "send", "--model", m.ID, "--status", "succeeded")
	// "same" when the simulator's own webhook (3 s trainings) got there first.
	accepted := strings.Contains(out, `"outcome":"applied"`) || strings.Contains(out, `"outcome":"same"`)
	if code != 0 || !accepted || !strings.Contains(out, "training "+m.TrainingID) {
		t.Fatalf("webhook send --model: exit %d\n%s%s", code, out, errOut)
	}
	if d, err := s.client.Model(context.Background(), m.ID); err != nil || d.Status != training.Ready {
		t.Fatalf("model after the delivery: %s, %v; want Ready", d.Status, err)
	}
	code, _, errOut = runCLI(t, env, "webhook", "send", "--model", "01m00000000000000000000000", "--status", "succeeded")
	if code != 1 || !strings.Contains(errOut, "no model with id") {
		t.Errorf("--model of an unknown model: exit %d, want 1\n%s", code, errOut)
	}
}
