package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/trainhook/trainhook/internal/training"
)

// A typo leaves a Failed model: the list says why, 'models rm' removes it,
// and a canceled training is started again with 'models retry'.
func testModelsRemoveRetry(t *testing.T, s *stack) {
	code, out, errOut := runCLI(t, s.clientEnv(), "train", "--trainer", "nobody/nothing", "--destination", "trainhook-sim/rm-typo", "--name", "typo in the trainer")
	if code != 1 {
		t.Fatalf("train with a bad trainer: exit %d\n%s%s", code, out, errOut)
	}
	id := strings.Fields(strings.SplitN(errOut, "model ", 2)[1])[0]
	code, out, errOut = runCLI(t, s.clientEnv(), "models", "--query", "typo in the trainer")
	if code != 0 {
		t.Fatalf("models: exit %d\n%s%s", code, out, errOut)
	}
	mustContain(t, "list of a failed model", out, id, "Failed", "ERROR", "nobody/nothing")

	code, out, errOut = runCLI(t, s.clientEnv(), "models", "rm", id)
	if code != 0 {
		t.Fatalf("models rm: exit %d\n%s%s", code, out, errOut)
	}
	mustContain(t, "models rm", out, "Removed model "+id, "kept with its history")
	if _, out, _ := runCLI(t, s.clientEnv(), "models", "--query", "typo in the trainer"); strings.Contains(out, id) {
		t.Errorf("the removed model is still listed:\n%s", out)
	}
	_, out, _ = runCLI(t, s.clientEnv(), "models", "--archived", "--query", "typo in the trainer")
	mustContain(t, "models --archived", out, id, "(removed)")

	// A running model is refused, with the way out.
	code, out, errOut = runCLI(t, s.clientEnv(), trainArgs("trainhook-sim/retried", "--json", "--name", "retried portrait")...)
	var m training.Model
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, s.clientEnv(), "models", "rm", m.ID)
	if code != 1 {
		t.Fatalf("models rm of a running model: exit %d, want 1\n%s", code, errOut)
	}
	mustContain(t, "models rm of a running model", errOut, "cancel it first")
	if code, out, errOut := runCLI(t, s.clientEnv(), "cancel", m.ID); code != 0 {
		t.Fatalf("cancel: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, s.clientEnv(), "models", "retry", m.ID, "--json")
	var again training.Model
	if code != 0 || json.Unmarshal([]byte(out), &again) != nil {
		t.Fatalf("models retry: exit %d\n%s%s", code, out, errOut)
	}
	if again.RetryOf != m.ID || again.ID == m.ID || again.Destination != m.Destination || again.Name != m.Name {
		t.Fatalf("retried model %+v; want a new model of %s's destination and name, retry_of %s", again, m.ID, m.ID)
	}
	if code, _, errOut := runCLI(t, s.clientEnv(), "models", "retry", "--bogus", m.ID); code != 2 {
		t.Errorf("models retry with an unknown flag: exit %d, want 2\n%s", code, errOut)
	}
}
