package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeCommands returns the commands of the README's "Command line"
// example block, one per entry: continuation lines joined, comments
// removed.
func readmeCommands(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Command line\n")
	if !ok {
		t.Fatal(`README.md has no "## Command line" section`)
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if ok {
		block, _, ok = strings.Cut(block, "\n```")
	}
	if !ok {
		t.Fatal("the README's Command line section has no sh block")
	}
	var cmds [][]string
	var cur string
	for _, line := range strings.Split(block, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ') {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		cont := strings.HasSuffix(line, `\`)
		cur += " " + strings.TrimSuffix(line, `\`)
		if cont {
			continue
		}
		if f := strings.Fields(cur); len(f) > 0 {
			if f[0] != "trainhook" || strings.ContainsAny(cur, `'"$*?|;&<>`) {
				t.Fatalf("README example %q: this test runs trainhook commands without shell syntax", strings.TrimSpace(cur))
			}
			cmds = append(cmds, f[1:])
		}
		cur = ""
	}
	if len(cmds) < 5 {
		t.Fatalf("found only %d commands in the README's Command line block", len(cmds))
	}
	return cmds
}

var exportLine = regexp.MustCompile(`(?m)^  export (.+)$`)

// The README's command-line examples run as written against `trainhook
// demo`, in a second terminal given the export lines the demo prints. ID
// stands for a model the reader has: the one the train example started, or
// for 'models retry', a canceled one.
func TestReadmeExamplesRunAgainstTheDemo(t *testing.T) {
	cmds := readmeCommands(t)
	demo := exec.Command(binary, "demo", "--addr", "127.0.0.1:0", "--duration", "3s", "--data", t.TempDir())
	out := &syncBuffer{mu: make(chan struct{}, 1)}
	demo.Stdout, demo.Stderr = out, out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = demo.Process.Signal(syscall.SIGTERM)
		_ = demo.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := cleanEnv()
	for _, m := range exportLine.FindAllStringSubmatch(out.String(), -1) {
		env = append(env, strings.Fields(m[1])...)
	}
	if len(env) == len(cleanEnv()) {
		t.Fatalf("the demo printed no export lines:\n%s", out.String())
	}

	// A canceled model, for 'models retry ID'.
	code, o, e := runCLI(t, env, "train", "--trainer", "ostris/flux-dev-lora-trainer", "--destination", "trainhook-sim/readme-canceled", "--json")
	canceled := modelIDIn(o)
	if code != 0 || canceled == "" {
		t.Fatalf("start a training to cancel: exit %d\n%s%s", code, o, e)
	}
	if code, o, e := runCLI(t, env, "cancel", canceled); code != 0 {
		t.Fatalf("cancel: exit %d\n%s%s", code, o, e)
	}

	var started string
	for _, args := range cmds {
		args = append([]string(nil), args...)
		for i, a := range args {
			if a != "ID" {
				continue
			}
			args[i] = started
			if len(args) > 1 && args[0] == "models" && args[1] == "retry" {
				args[i] = canceled
			}
			if args[i] == "" {
				t.Fatalf("README example %v uses ID before any example started a model", args)
			}
		}
		code, o, e := runCLI(t, env, args...)
		t.Logf("trainhook %s: exit %d\n%s%s", strings.Join(args, " "), code, o, e)
		if code != 0 {
			t.Errorf("README example 'trainhook %s' exited %d against the demo:\n%s%s", strings.Join(args, " "), code, o, e)
		}
		if args[0] == "train" && started == "" {
			started = strings.Fields(strings.TrimPrefix(o+" ", "Started model "))[0]
			if !strings.HasPrefix(o, "Started model ") {
				t.Fatalf("train printed no model id:\n%s", o)
			}
		}
	}
}

var modelIDPattern = regexp.MustCompile(`"id":\s*"([0-9a-z]{26})"`)

func modelIDIn(s string) string {
	if m := modelIDPattern.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}
