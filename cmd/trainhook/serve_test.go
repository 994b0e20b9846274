package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runServeIn(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"serve"}, args...), env{
		getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
	})
	return code, errb.String()
}

// serve's --help says what --database-url takes, PostgreSQL included, and
// serve parses its flags as the other commands do.
func TestServeFlags(t *testing.T) {
	t.Parallel()
	code, help := runServeIn(t, "--help")
	if code != 0 {
		t.Fatalf("serve --help: exit %d\n%s", code, help)
	}
	var dbLine string
	lines := strings.Split(help, "\n")
	for i, l := range lines {
		if strings.Contains(l, "-database-url") && i+1 < len(lines) {
			dbLine = l + lines[i+1]
		}
	}
	if !strings.Contains(dbLine, "SQLite") || !strings.Contains(dbLine, "postgres://") {
		t.Errorf("--database-url help does not name both databases: %q", dbLine)
	}
	for _, want := range []string{"Usage: trainhook serve [flags]", "Environment:", "DATABASE_URL"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help lacks %q:\n%s", want, help)
		}
	}

	code, errOut := runServeIn(t, "now")
	if code != 2 || !strings.Contains(errOut, `serve: unexpected argument "now"`) || !strings.Contains(errOut, "Run 'trainhook serve --help' for usage.") {
		t.Errorf("serve now: exit %d, want 2 with the usual usage hint:\n%s", code, errOut)
	}
}
