package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// Mistyped commands and flags get one line naming what was meant, not the
// whole usage; help and both spellings of version answer on stdout.
func TestCLIEdges(t *testing.T) {
	for _, c := range []struct {
		args         []string
		code         int
		stdout       string
		stderr       string
		notInStderr  string
		stderrIsNone bool
	}{
		{args: []string{"help"}, code: 0, stdout: "Usage: trainhook <command>", stderrIsNone: true},
		{args: []string{"--help"}, code: 0, stdout: "Usage: trainhook <command>", stderrIsNone: true},
		{args: []string{"help", "cancel"}, code: 0, stderr: "Usage: trainhook cancel ID"},
		{args: []string{"--version"}, code: 0, stdout: "trainhook ", stderrIsNone: true},
		{args: []string{"version"}, code: 0, stdout: "trainhook ", stderrIsNone: true},
		{args: []string{"trian"}, code: 2, stderr: `unknown command "trian" (did you mean "train"?)`, notInStderr: "Commands:"},
		{args: []string{"modles", "--json"}, code: 2, stderr: `did you mean "models"?`, notInStderr: "Commands:"},
		{args: []string{"xyzzy"}, code: 2, stderr: "Run 'trainhook help' for the list of commands.", notInStderr: "did you mean"},
		{args: []string{"models", "--limt", "3"}, code: 2, stderr: "flag provided but not defined: -limt (did you mean --limit?)", notInStderr: "Flags:"},
		{args: []string{"serve", "--adr", "127.0.0.1:0"}, code: 2, stderr: "did you mean --addr?", notInStderr: "Environment:"},
		{args: []string{"demo", "--webhook", "off"}, code: 2, stderr: "did you mean --webhooks?"},
		{args: []string{"watch", "--jsn", "x"}, code: 2, stderr: "did you mean --json?"},
	} {
		code, out, errOut := runCLI(t, cleanEnv(), c.args...)
		switch {
		case code != c.code:
			t.Errorf("%v: exit %d, want %d\n%s%s", c.args, code, c.code, out, errOut)
		case !strings.Contains(out, c.stdout):
			t.Errorf("%v: stdout lacks %q:\n%s", c.args, c.stdout, out)
		case !strings.Contains(errOut, c.stderr):
			t.Errorf("%v: stderr lacks %q:\n%s", c.args, c.stderr, errOut)
		case c.notInStderr != "" && strings.Contains(errOut, c.notInStderr):
			t.Errorf("%v: stderr has %q, the whole usage:\n%s", c.args, c.notInStderr, errOut)
		case c.stderrIsNone && errOut != "":
			t.Errorf("%v: wrote to stderr: %s", c.args, errOut)
		}
	}
	_, v1, _ := runCLI(t, cleanEnv(), "version")
	_, v2, _ := runCLI(t, cleanEnv(), "--version")
	if v1 != v2 {
		t.Errorf("version %q and --version %q differ", v1, v2)
	}
}

// Values the server refuses are usage errors (exit 2); cancel --json prints
// the model even when the cancel fails; the next-page hint keeps the
// filters and the page size.
func testClientUsageEdges(t *testing.T, s *stack) {
	code, out, errOut := runCLI(t, s.clientEnv(), "train", "--trainer", "foo", "--destination", "trainhook-sim/edges")
	if code != 2 || !strings.Contains(errOut, `"trainer" must be owner/model`) {
		t.Errorf("train --trainer foo: exit %d, want 2\n%s%s", code, out, errOut)
	}

	code, out, errOut = runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/edges-cancel", "--json", "--name", "edges paging one")...)
	var m training.Model
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, s.clientEnv(), "cancel", m.ID); code != 0 {
		t.Fatalf("cancel: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, s.clientEnv(), "cancel", "--json", m.ID)
	var res struct {
		Model *training.Model
		Error string
	}
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Model == nil || res.Model.ID != m.ID || !strings.Contains(res.Error, "already Canceled") {
		t.Errorf("cancel --json of a canceled model: exit %d, want 1 with the model and the error\n%s", code, out)
	}

	if code, out, errOut := runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/edges-two", "--name", "edges paging two")...); code != 0 {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, s.clientEnv(), "models", "--query", "edges paging", "--limit", "1")
	if code != 0 || !strings.Contains(out, "More: trainhook models --query 'edges paging' --limit 1 --cursor ") {
		t.Fatalf("models --query --limit 1: exit %d\n%s", code, out)
	}
	next := strings.Fields(out[strings.Index(out, "More: ")+len("More: "):])
	code, out2, errOut := runCLI(t, s.clientEnv(), "models", "--query", "edges paging", "--limit", "1", "--cursor", next[len(next)-1])
	if code != 0 || !strings.Contains(out2, "edges paging") || strings.Contains(out2, "More:") {
		t.Errorf("the next page: exit %d\n%s%s", code, out2, errOut)
	}
}

// demo says when it reuses an earlier demo's database, and --fresh starts
// clean.
func TestDemoReusesItsData(t *testing.T) {
	dir := t.TempDir()
	run := func(extra ...string) string {
		cmd := exec.Command(binary, append([]string{"demo", "--addr", "127.0.0.1:0", "--duration", "2s", "--data", dir}, extra...)...)
		out := &syncBuffer{mu: make(chan struct{}, 1)}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), "Press Ctrl-C to stop.") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		return out.String()
	}
	if out := run(); strings.Contains(out, "Reusing") || !strings.Contains(out, "Press Ctrl-C") {
		t.Fatalf("first demo:\n%s", out)
	}
	if out := run(); !strings.Contains(out, "Reusing the database an earlier demo left in "+dir) || !strings.Contains(out, "--fresh starts clean") {
		t.Fatalf("second demo does not say it reuses the data:\n%s", out)
	}
	if out := run("--fresh"); strings.Contains(out, "Reusing") || !strings.Contains(out, "Press Ctrl-C") {
		t.Fatalf("demo --fresh:\n%s", out)
	}
}
