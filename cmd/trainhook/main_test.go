package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/trainhook/trainhook/internal/apptest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
)

// binary is the trainhook binary built once for these tests, which run it as
// a user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trainhook-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "trainhook")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build trainhook: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

type proc struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	stdout *syncBuffer
}

type syncBuffer struct {
	buf bytes.Buffer
	mu  chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

// serve starts `trainhook serve` and waits until /readyz answers.
func serve(t *testing.T, env ...string) *proc {
	t.Helper()
	return serveAt(t, apptest.FreeAddr(t), env...)
}

func serveAt(t *testing.T, addr string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), append([]string{"ADDR=" + addr, "PORT=", "APP_URL=", "NEXT_PUBLIC_APP_URL=", "TRAINHOOK_API_TOKEN=", "REPLICATE_API_TOKEN="}, env...)...)
	p := &proc{cmd: cmd, url: "http://" + addr, stderr: &bytes.Buffer{}, stdout: &syncBuffer{mu: make(chan struct{}, 1)}}
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
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not become ready: %s\n%s", p.stdout.String(), p.stderr)
	return nil
}

func post(t *testing.T, url string, body []byte, h http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func status(t *testing.T, url, id string) string {
	t.Helper()
	resp, err := http.Get(url + "/api/models/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m.Status
}

// An acknowledged delivery survives the process being killed at once.
func TestAcknowledgedDeliverySurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "th.db")
	env := []string{"DATABASE_URL=" + db, "REPLICATE_WEBHOOK_SECRET=" + secret}
	p := serve(t, env...)
	code, body := post(t, p.url+"/api/models", []byte(`{"training_id":"train-kill"}`), nil)
	if code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}
	var m struct{ ID string }
	_ = json.Unmarshal([]byte(body), &m)

	key, _ := replicate.ParseKey(secret)
	payload := []byte(`{"id":"train-kill","status":"succeeded","output":{"version":"a/b:c","weights":"https://x/trained_model.tar"}}`)
	h := http.Header{}
	key.SignRequest(h, "msg_kill", time.Now(), payload)
	if code, body := post(t, p.url+"/api/webhooks/replicate/completed", payload, h); code != 200 {
		t.Fatalf("deliver: %d %s", code, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()

	p2 := serve(t, env...)
	if got := status(t, p2.url, m.ID); got != "Ready" {
		t.Fatalf("after SIGKILL and restart the model is %q, want Ready", got)
	}
	// Replicate retrying the same message after the restart is not applied again.
	key.SignRequest(h, "msg_kill", time.Now(), payload)
	if code, body := post(t, p2.url+"/api/webhooks/replicate/completed", payload, h); code != 200 || !strings.Contains(body, `"duplicate"`) {
		t.Fatalf("retry after restart: %d %s", code, body)
	}
}

func TestGracefulShutdownOnSIGTERM(t *testing.T) {
	t.Parallel()
	p := serve(t, "DATABASE_URL="+filepath.Join(t.TempDir(), "th.db"))
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.stdout.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
	if !strings.Contains(p.stdout.String(), `"msg":"stopped"`) {
		t.Fatalf("no orderly stop in the log:\n%s", p.stdout.String())
	}
}

func TestStartupLogSaysModeAndWhy(t *testing.T) {
	t.Parallel()
	p := serve(t, "DATABASE_URL="+filepath.Join(t.TempDir(), "th.db"), "APP_URL=http://localhost:8080")
	// The log is buffered (it is written at least every 100 ms).
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !strings.Contains(p.stdout.String(), `"mode":"polling"`); {
		time.Sleep(20 * time.Millisecond)
	}
	sc := bufio.NewScanner(strings.NewReader(p.stdout.String()))
	found := false
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if line["mode"] == "polling" && strings.Contains(fmt.Sprint(line["msg"]), "APP_URL is http://localhost:8080: Replicate cannot reach it") {
			found = true
		}
		if strings.Contains(sc.Text(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
			t.Fatal("the signing key appears in the log")
		}
	}
	if !found {
		t.Fatalf("no mode line:\n%s", p.stdout.String())
	}
}

func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		name     string
		env      []string
		args     []string
		code     int
		contains string
	}{
		{"version", nil, []string{"version"}, 0, "trainhook "},
		{"no command", nil, nil, 2, "Usage: trainhook"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"serve --help", nil, []string{"serve", "--help"}, 0, "REPLICATE_WEBHOOK_SECRET"},
		{"serve --help, secure defaults", nil, []string{"serve", "--help"}, 0, "refuses\n    to start unless TRAINHOOK_INSECURE_OPEN_API=true"},
		{"serve --help, allowed hosts", nil, []string{"serve", "--help"}, 0, "  TRAINHOOK_ALLOWED_HOSTS\n      Comma-separated host names"},
		{"bad flag", nil, []string{"serve", "--nope"}, 2, "flag provided but not defined"},
		{"invalid max body", []string{"TRAINHOOK_MAX_BODY=ten"}, []string{"serve"}, 2, "TRAINHOOK_MAX_BODY"},
		{"webhook mode without a key", []string{"APP_URL=https://app.example.com", "REPLICATE_WEBHOOK_SECRET=", "REPLICATE_API_TOKEN=", "DATABASE_URL=" + filepath.Join(dir, "a.db")}, []string{"serve"}, 2, "webhooks/default/secret"},
		{"API token too short", []string{"TRAINHOOK_API_TOKEN=short-token"}, []string{"serve", "--addr", "127.0.0.1:0"}, 2, "at least 32 characters, not 11; generate one with: trainhook token new"},
		{"open API off loopback", []string{"DATABASE_URL=" + filepath.Join(dir, "open.db"), "ADDR=", "PORT=0", "TRAINHOOK_API_TOKEN=", "TRAINHOOK_INSECURE_OPEN_API="}, []string{"serve"}, 1,
			"TRAINHOOK_API_TOKEN is not set and trainhook would listen on :0, not on loopback only"},
		{"token without new", nil, []string{"token"}, 2, "Usage: trainhook token new"},
		{"postgres unreachable", []string{"DATABASE_URL=postgres://u:pw@127.0.0.1:1/db"}, []string{"serve", "--addr", "127.0.0.1:0"}, 1, "open PostgreSQL database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, c.env, c.args...)
			if code != c.code || !strings.Contains(out+errOut, c.contains) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, c.code, out, errOut, c.contains)
			}
		})
	}
}

// trainhook token new prints a fresh token that serve accepts.
func TestTokenNew(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 3 {
		code, out, errOut := runCLI(t, nil, "token", "new")
		tok := strings.TrimSpace(out)
		if code != 0 || errOut != "" || len(tok) != 43 || strings.ContainsAny(tok, "+/= ") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 43 characters of base64url", code, out, errOut)
		}
		if seen[tok] {
			t.Fatalf("the same token twice: %s", tok)
		}
		seen[tok] = true
		if _, err := config.Load(func(k string) string { return map[string]string{"TRAINHOOK_API_TOKEN": tok}[k] }); err != nil {
			t.Fatalf("the configuration refuses the generated token: %v", err)
		}
	}
}

func TestBusyPortFailsTheStart(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, errOut := runCLI(t, []string{"DATABASE_URL=" + filepath.Join(t.TempDir(), "b.db"), "PORT="}, "serve", "--addr", l.Addr().String())
	if code != 1 || !strings.Contains(errOut, "listen on") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// The server killed mid-training misses the final webhook (the simulator
// gives up retrying while it is down); after a restart, reconciliation
// finds the outcome from the state kept in the database.
func TestKilledMidTrainingRecoversAfterRestart(t *testing.T) {
	t.Parallel()
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_kill", Duration: 3 * time.Second, WebhookRetryWindow: 500 * time.Millisecond})
	addr := apptest.FreeAddr(t)
	env := []string{
		"ADDR=" + addr, "APP_URL=http://" + addr, "TRAINHOOK_WEBHOOKS=on", "DATABASE_URL=" + filepath.Join(t.TempDir(), "th.db"),
		"REPLICATE_BASE_URL=" + simURL, "REPLICATE_API_TOKEN=r8_kill", "REPLICATE_WEBHOOK_SECRET=" + sim.Key().Secret(),
		"TRAINHOOK_RECONCILE_AFTER=1s", "TRAINHOOK_POLL_INTERVAL=200ms",
	}
	p := serveAt(t, addr, env...)
	code, body := post(t, p.url+"/api/models", []byte(`{"trainer":"ostris/flux-dev-lora-trainer","destination":"trainhook-sim/kill","input":{"steps":10}}`), nil)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	var m struct{ ID, TrainingID string }
	_ = json.Unmarshal([]byte(body), &m)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()

	// Wait until the training is over and Replicate has given up on its webhook.
	deadline := time.Now().Add(15 * time.Second)
	for {
		tr, _ := sim.Training(m.TrainingID)
		if tr.CompletedAt != nil && time.Since(*tr.CompletedAt) > 2*time.Second || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	p2 := serveAt(t, addr, env...)
	deadline = time.Now().Add(20 * time.Second)
	for status(t, p2.url, m.ID) != "Ready" {
		if time.Now().After(deadline) {
			t.Fatalf("model %s is %s after restart", m.ID, status(t, p2.url, m.ID))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(sim.Trainings()); n != 1 {
		t.Fatalf("%d trainings", n)
	}
}

// The README's first command: the demo starts everything and its sample
// training reaches Ready, in both modes.
func TestDemo(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "off"} {
		t.Run("webhooks "+mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary, "demo", "--addr", "127.0.0.1:0", "--duration", "3s", "--webhooks", mode, "--data", t.TempDir())
			out := &syncBuffer{mu: make(chan struct{}, 1)}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
			}()
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(out.String(), "] Ready: new version trainhook-sim/demo-portrait-lora:") {
				if time.Now().After(deadline) {
					t.Fatalf("the demo's training did not reach Ready in 30s:\n%s", out.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			// An event's sequence is the model's version after the change:
			// higher for each later event of the model, not counted from 1.
			notified := regexp.MustCompile(`\] app notified: model\.training #(\d+) .*\n(?s:.*)\] app notified: model\.ready #(\d+) \(webhook-id evt_`)
			for !notified.MatchString(out.String()) {
				if time.Now().After(deadline) {
					t.Fatalf("the demo's app was not notified of Ready:\n%s", out.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if m := notified.FindStringSubmatch(out.String()); m != nil {
				training, _ := strconv.Atoi(m[1])
				ready, _ := strconv.Atoi(m[2])
				if training < 1 || ready <= training {
					t.Errorf("the app was told model.training #%d then model.ready #%d; want sequences from 1, increasing:\n%s", training, ready, out.String())
				}
			}
			for _, want := range []string{"dashboard:  http://127.0.0.1:", "Started a sample training", "] Training", "trained_model.tar",
				"signature verified"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("demo output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// A second server on the same SQLite file refuses to start, naming the file
// and the process that holds it; once that process is gone (even killed),
// the file is free again.
func TestSecondServeOnOneSQLiteFileRefuses(t *testing.T) {
	db := filepath.Join(t.TempDir(), "th.db")
	env := []string{"DATABASE_URL=" + db, "REPLICATE_WEBHOOK_SECRET=" + secret}
	first := serve(t, env...)
	code, out, errOut := runCLI(t, append(env, "PORT="), "serve", "--addr", apptest.FreeAddr(t))
	all := out + errOut
	if code != 1 {
		t.Fatalf("second serve exited %d, want 1:\n%s", code, all)
	}
	mustContain(t, "refusal", all, db, fmt.Sprintf("pid %d", first.cmd.Process.Pid), "one trainhook server at a time")
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	serve(t, env...)
}
