package config

import (
	"os"
	"strings"
	"testing"
)

// The README's configuration table is WriteMarkdown's output; regenerate it
// when a variable changes.
func TestREADMEConfigTableIsCurrent(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), strings.TrimSpace(b.String())) {
		t.Fatalf("README.md's configuration table is out of date; replace it with:\n%s", b.String())
	}
}
