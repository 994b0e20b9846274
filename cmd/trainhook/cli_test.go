package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/trainhook/trainhook/internal/apptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// The client commands run as a user runs them: the real binary against a
// real `trainhook serve` in webhook mode, with the simulator of Replicate
// in this process. Everything stays on 127.0.0.1.

const (
	stackReplicateToken = "r8_cli_test"
	stackAPIToken       = "cli-test-api-token-0123456789abcdef"
)

// stack is one simulator and one server, shared by the subtests of
// TestCLIAgainstServer.
type stack struct {
	sim       *fakereplicate.Server
	simURL    string
	srv       *proc
	db        string
	serverEnv []string // the server's configuration, as doctor should see it
	client    *apiclient.Client
}

func startStack(t *testing.T) *stack {
	t.Helper()
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: stackReplicateToken, Secret: secret, Duration: 3 * time.Second})
	addr := apptest.FreeAddr(t)
	s := &stack{sim: sim, simURL: simURL, db: filepath.Join(t.TempDir(), "th.db")}
	s.serverEnv = []string{
		"APP_URL=http://" + addr, "TRAINHOOK_WEBHOOKS=on", "DATABASE_URL=" + s.db,
		"REPLICATE_BASE_URL=" + simURL, "REPLICATE_API_TOKEN=" + stackReplicateToken, "REPLICATE_WEBHOOK_SECRET=" + secret,
		"TRAINHOOK_API_TOKEN=" + stackAPIToken, "TRAINHOOK_WEBHOOK_EVENTS=start,logs,completed",
		"TRAINHOOK_POLL_INTERVAL=200ms", "TRAINHOOK_RECONCILE_AFTER=2s",
	}
	s.srv = serveAt(t, addr, s.serverEnv...)
	var err error
	if s.client, err = apiclient.New(s.srv.url, stackAPIToken); err != nil {
		t.Fatal(err)
	}
	return s
}

// clientEnv is the environment of a client command: the server's URL and
// API token and nothing else of trainhook's.
func (s *stack) clientEnv(extra ...string) []string {
	return append(cleanEnv("TRAINHOOK_URL="+s.srv.url, "TRAINHOOK_API_TOKEN="+stackAPIToken), extra...)
}

// cleanEnv blanks every variable trainhook reads, so the developer's own
// environment cannot leak into a test, then adds kv.
func cleanEnv(kv ...string) []string {
	var env []string
	for _, v := range config.Vars() {
		env = append(env, v.Name+"=")
	}
	env = append(env, "TRAINHOOK_URL=", "TRAINHOOK_API_TOKEN=", "TERM=dumb")
	return append(env, kv...)
}

// TestCLIAgainstServer runs every client command, webhook send and doctor
// against one server; the subtests run in parallel.
func TestCLIAgainstServer(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	for name, f := range map[string]func(*testing.T, *stack){
		"train --wait to Ready":              testTrainWaitReady,
		"train --wait --json to Ready":       testTrainWaitReadyJSON,
		"train --wait to Failed":             testTrainWaitFailed,
		"watch stops on Ctrl-C":              testWatchInterrupted,
		"cancel":                             testCancel,
		"models and models show":             testModels,
		"client errors":                      testClientErrors,
		"webhook send":                       testWebhookSend,
		"webhook send refusals":              testWebhookSendRefused,
		"doctor healthy":                     testDoctorHealthy,
		"doctor notify":                      testDoctorNotify,
		"doctor redirect":                    testDoctorRedirect,
		"doctor wrong key":                   testDoctorWrongKey,
		"doctor 413 in front":                testDoctorBodyLimit,
		"doctor unreachable":                 testDoctorUnreachable,
		"doctor bad Replicate token":         testDoctorBadToken,
		"doctor REPLICATE_BASE_URL password": testDoctorBaseURLPassword,
		"doctor proxy's Host refused":        testDoctorProxyHost,
		"doctor invalid configuration":       testDoctorInvalidConfig,
		"doctor polling mode, postgres":      testDoctorPollingPostgres,
		"doctor --json":                      testDoctorJSON,
		"train input file and flags mix":     testTrainInputFile,
		"webhook send --model":               testWebhookSendToStartedModel,
		"doctor polling mode, local":         testDoctorPollingLocal,
		"models rm and models retry":         testModelsRemoveRetry,
		"usage edges against a server":       testClientUsageEdges,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, s)
		})
	}
}

// cliProc is a command running in the background.
type cliProc struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
}

func startCLI(t *testing.T, env []string, args ...string) *cliProc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &cliProc{cmd: cmd, stdout: &syncBuffer{mu: make(chan struct{}, 1)}, stderr: &syncBuffer{mu: make(chan struct{}, 1)}}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// wait returns the exit code, failing the test after 30 s.
func (p *cliProc) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("still running after 30s\nstdout: %s\nstderr: %s", p.stdout, p.stderr)
		return -1
	}
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func trainArgs(dest string, extra ...string) []string {
	return append([]string{"train", "--trainer", "ostris/flux-dev-lora-trainer", "--destination", dest,
		"--input", "input_images=https://example.com/datasets/zkx.zip", "--input", "steps=200"}, extra...)
}

func testTrainWaitReady(t *testing.T, s *stack) {
	code, out, errOut := runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/plain", "--name", "plain portrait", "--metadata", "user_id=u_42", "--wait")...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	mustContain(t, "train --wait output", out,
		`Started model `, `"plain portrait": training `,
		"] Training", "% (step ", "/200)", "] Ready",
		`Ready after `, "  version  trainhook-sim/plain:", "  weights  https://replicate.delivery/")
	// Not a terminal: plain lines, no redrawing.
	if strings.Contains(out, "\r") || strings.Contains(out, "\x1b[") {
		t.Errorf("terminal control codes in piped output: %q", out)
	}
	page, err := s.client.Models(context.Background(), apiclient.ListOptions{Query: "plain portrait"})
	if err != nil || len(page.Models) != 1 {
		t.Fatalf("%v %v", page, err)
	}
	m := page.Models[0]
	if string(m.Metadata) != `{"user_id":"u_42"}` {
		t.Errorf("metadata %s", m.Metadata)
	}
}

func testTrainWaitReadyJSON(t *testing.T, s *stack) {
	code, out, errOut := runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/json", "--wait", "--json")...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var d apiclient.ModelDetail
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("stdout is not one JSON model (%v):\n%s", err, out)
	}
	var o replicate.TrainingOutput
	_ = json.Unmarshal(d.Output, &o)
	if d.Status != training.Ready || !strings.HasPrefix(o.Version, "trainhook-sim/json:") || o.Weights == "" {
		t.Fatalf("model %+v", d.Model)
	}
	var in bytes.Buffer
	_ = json.Compact(&in, d.Input)
	if len(d.History) < 3 || in.String() != `{"input_images":"https://example.com/datasets/zkx.zip","steps":200}` {
		t.Fatalf("history %v, input %s", d.History, d.Input)
	}
}

func testTrainWaitFailed(t *testing.T, s *stack) {
	const dest, msg = "trainhook-sim/fails", "input_images must be provided"
	p := startCLI(t, s.clientEnv(), trainArgs(dest, "--wait")...)
	var tid string
	apptest.WaitFor(t, "the training exists", 15*time.Second, func() bool {
		for _, tr := range s.sim.Trainings() {
			if tr.Destination == dest {
				tid = tr.ID
				return true
			}
		}
		return false
	})
	if err := s.sim.Complete(tid, "failed", msg); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 1 {
		t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", code, p.stdout, p.stderr)
	}
	out := p.stdout.String()
	mustContain(t, "train --wait output", out, "] Failed", "Failed after ", "  error    "+msg)

	// The same outcome through watch, in both forms.
	id := strings.Fields(strings.TrimPrefix(out, "Started model "))[0]
	code, wout, werr := runCLI(t, s.clientEnv(), "watch", id)
	if code != 1 {
		t.Fatalf("watch: exit %d\n%s%s", code, wout, werr)
	}
	mustContain(t, "watch output", wout, "Failed after ", msg)
	code, wout, werr = runCLI(t, s.clientEnv(), "watch", "--json", id)
	var d apiclient.ModelDetail
	if code != 1 || json.Unmarshal([]byte(wout), &d) != nil || d.Status != training.Failed || d.Error != msg {
		t.Fatalf("watch --json: exit %d\n%s%s", code, wout, werr)
	}
}

func testWatchInterrupted(t *testing.T, s *stack) {
	code, out, errOut := runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/interrupted", "--json")...)
	var m training.Model
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m.Status != training.Training {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	p := startCLI(t, s.clientEnv(), "watch", m.ID)
	apptest.WaitFor(t, "watch prints", 15*time.Second, func() bool { return strings.Contains(p.stdout.String(), "Training") })
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 130 {
		t.Fatalf("exit %d, want 130\nstdout: %s\nstderr: %s", code, p.stdout, p.stderr)
	}
	mustContain(t, "stderr", p.stderr.String(), "nothing was canceled", "Resume with: trainhook watch "+m.ID)
	if tr, _ := s.sim.Training(m.TrainingID); tr.Status == "canceled" {
		t.Fatal("Ctrl-C canceled the training")
	}
}

func testCancel(t *testing.T, s *stack) {
	code, out, errOut := runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/canceled", "--json")...)
	var m training.Model
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, s.clientEnv(), "cancel", m.ID)
	if code != 0 {
		t.Fatalf("cancel: exit %d\n%s%s", code, out, errOut)
	}
	mustContain(t, "cancel output", out, "Canceled model "+m.ID)
	code, out, errOut = runCLI(t, s.clientEnv(), "cancel", m.ID)
	if code != 1 {
		t.Fatalf("second cancel: exit %d\n%s%s", code, out, errOut)
	}
	mustContain(t, "second cancel", errOut, "already Canceled")
	// watch of a final model answers at once, with its exit code.
	if code, out, _ := runCLI(t, s.clientEnv(), "watch", m.ID); code != 1 || !strings.Contains(out, "Canceled after") {
		t.Fatalf("watch: exit %d\n%s", code, out)
	}
}

func testModels(t *testing.T, s *stack) {
	ctx := context.Background()
	if err := s.sim.AddTraining("modelslistr7k2m9x4c1rm80cq"); err != nil {
		t.Fatal(err)
	}
	reg, err := s.client.Register(ctx, apiclient.RegisterRequest{Name: "registered portrait", TrainingID: "modelslistr7k2m9x4c1rm80cq"})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, s.clientEnv(), "models", "--query", "registered portrait")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[0], "PROGRESS") ||
		!strings.HasPrefix(lines[1], reg.Model.ID) || !strings.Contains(lines[1], "modelslistr7k2m9x4c1rm80cq") ||
		// The simulator runs the training, so a poll may have moved it on.
		!(strings.Contains(lines[1], "Pending") || strings.Contains(lines[1], "Training")) {
		t.Fatalf("table:\n%s", out)
	}

	code, out, _ = runCLI(t, s.clientEnv(), "models", "--status", "pending", "--json", "--limit", "1000")
	var page apiclient.ModelPage
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Models) == 0 {
		t.Fatalf("--json: exit %d\n%s", code, out)
	}
	for _, m := range page.Models {
		if m.Status != training.Pending {
			t.Fatalf("--status pending listed a %s model", m.Status)
		}
	}

	code, out, errOut = runCLI(t, s.clientEnv(), "models", "show", reg.Model.ID)
	if code != 0 {
		t.Fatalf("show: exit %d\n%s%s", code, out, errOut)
	}
	if first := strings.Fields(strings.SplitN(out, "\n", 2)[0]); len(first) != 2 || first[0] != "Model" || first[1] != reg.Model.ID {
		t.Errorf("models show starts with %q", first)
	}
	mustContain(t, "models show", out, "registered portrait", "History", "registered through the API")
	code, out, _ = runCLI(t, s.clientEnv(), "models", "show", "--json", reg.Model.ID)
	var d apiclient.ModelDetail
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.ID != reg.Model.ID || len(d.History) == 0 || d.History[0].Note != "registered through the API" {
		t.Fatalf("show --json: exit %d\n%s", code, out)
	}
	code, _, errOut = runCLI(t, s.clientEnv(), "models", "show", "01nonexistent0000000000000")
	if code != 1 || !strings.Contains(errOut, `no model with id "01nonexistent0000000000000"`) {
		t.Fatalf("unknown id: exit %d: %s", code, errOut)
	}
	for _, args := range [][]string{{"models", "--status", "done"}, {"models", "--limit", "0"}, {"models", "show"}, {"models", "portrait"}} {
		if code, _, errOut := runCLI(t, s.clientEnv(), args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errOut)
		}
	}
}

func testClientErrors(t *testing.T, s *stack) {
	closed := "http://" + apptest.FreeAddr(t)
	code, _, errOut := runCLI(t, cleanEnv("TRAINHOOK_URL="+closed), "models")
	if code != 1 {
		t.Fatalf("unreachable: exit %d", code)
	}
	mustContain(t, "unreachable", errOut, "cannot reach trainhook at "+closed+": is `trainhook serve` running? set --server or TRAINHOOK_URL")

	code, _, errOut = runCLI(t, cleanEnv("TRAINHOOK_API_TOKEN=wrong"), "models", "--server", s.srv.url)
	if code != 1 || !strings.Contains(errOut, "the server refused the API token: set TRAINHOOK_API_TOKEN to the server's value") {
		t.Fatalf("wrong token: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI(t, cleanEnv(), "watch", "--server", s.srv.url, "01nonexistent0000000000000")
	if code != 1 || !strings.Contains(errOut, "requires an API token") {
		t.Fatalf("no token: exit %d: %s", code, errOut)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"train"}, "missing --trainer owner/model[:version] and --destination owner/name"},
		{[]string{"train", "--trainer", "a/b", "--destination", "c/d", "--input", "steps"}, "want key=value"},
		{[]string{"watch"}, "missing the model ID"},
		{[]string{"cancel", "a", "b"}, "want only the model ID"},
		{[]string{"models", "--server", "localhost:8080"}, "want an http(s) URL"},
	} {
		code, _, errOut := runCLI(t, s.clientEnv(), c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", c.args, code, c.want, errOut)
		}
	}
	for _, cmd := range []string{"train", "models", "watch", "cancel", "doctor"} {
		if code, _, errOut := runCLI(t, nil, cmd, "--help"); code != 0 || !strings.Contains(errOut, "Usage: trainhook "+cmd) {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, nil, "webhook", "send", "--help"); code != 0 || !strings.Contains(errOut, "--forge") {
		t.Errorf("webhook send --help: exit %d\n%s", code, errOut)
	}
}

func testTrainInputFile(t *testing.T, s *stack) {
	dir := t.TempDir()
	good := filepath.Join(dir, "input.json")
	if err := os.WriteFile(good, []byte(`{"steps": 10, "trigger_word": "ZKX", "resolution": "512,768"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, s.clientEnv(), "train", "--trainer", "ostris/flux-dev-lora-trainer", "--destination", "trainhook-sim/file",
		"--input-file", good, "--input", "steps=300", "--input", "autocaption=false", "--input", `trigger_word="007"`, "--json")
	var m training.Model
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	d, err := s.client.Model(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"autocaption":false,"resolution":"512,768","steps":300,"trigger_word":"007"}`; string(d.Input) != want {
		t.Fatalf("input %s, want %s", d.Input, want)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{\n  \"steps\": 10,\n  \"trigger_word\": ZKX\n}"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, s.clientEnv(), "train", "--trainer", "ostris/flux-dev-lora-trainer", "--destination", "trainhook-sim/bad", "--input-file", bad)
	if code != 2 || !strings.Contains(errOut, "invalid JSON at line 3, column 19") {
		t.Fatalf("bad file: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI(t, s.clientEnv(), "train", "--trainer", "nope", "--destination", "trainhook-sim/bad")
	if code != 2 || !strings.Contains(errOut, `"trainer" must be owner/model`) {
		t.Fatalf("bad trainer: exit %d, want 2 (a usage error): %s", code, errOut)
	}
}
