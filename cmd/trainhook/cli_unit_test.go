package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

func TestTypedValue(t *testing.T) {
	for in, want := range map[string]string{
		"1000":                      `1000`,
		"-1.5e-4":                   `-1.5e-4`,
		"true":                      `true`,
		"false":                     `false`,
		"ZKX":                       `"ZKX"`,
		"007":                       `"007"`, // not a JSON number: kept as written
		`"1000"`:                    `"1000"`,
		"":                          `""`,
		"https://example.com/x.zip": `"https://example.com/x.zip"`,
		"512,768,1024":              `"512,768,1024"`,
		"null":                      `"null"`,
		"[1,2]":                     `"[1,2]"`,
		"1 ":                        `"1 "`,
	} {
		if got := string(typedValue(in)); got != want {
			t.Errorf("typedValue(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestBuildInput(t *testing.T) {
	var flags keyValues
	for _, f := range []string{"steps=300", "trigger_word=ZKX", "steps=500"} {
		if err := flags.Set(f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := buildInput("-", flags, strings.NewReader(`{"steps": 10, "lora_rank": 16}`))
	if err != nil || string(got) != `{"lora_rank":16,"steps":500,"trigger_word":"ZKX"}` {
		t.Fatalf("%s %v", got, err)
	}
	if got, _ := buildInput("", nil, nil); string(got) != "{}" {
		t.Fatalf("no input: %s", got)
	}
	for _, bad := range []string{"steps", "=1", ""} {
		if err := flags.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{
		"":                           "is empty",
		"[1]":                        "is a JSON array: want a JSON object",
		`{"a": 1,}`:                  "invalid JSON at line 1, column 9",
		"{\n\"a\": tru\n}":           "invalid JSON at line 2, column 9",
		"{\"a\": 1} {\"b\": 2}":      "invalid JSON at line 1, column 10: more data after the object",
		"{\n  \"a\": \"unterminated": "it ends early, at line 2",
	} {
		_, err := buildInput("-", nil, strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
	if _, err := buildInput(filepath.Join(t.TempDir(), "none.json"), nil, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseArgsAnywhere(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	j := fs.Bool("json", false, "")
	s := fs.String("server", "", "")
	pos, err := parseArgs(fs, []string{"ID1", "--json", "--server", "http://x", "--", "--not-a-flag"})
	if err != nil || !*j || *s != "http://x" || strings.Join(pos, " ") != "ID1 --not-a-flag" {
		t.Fatalf("%v %v %v %q", pos, err, *j, *s)
	}
}

func TestWebhookTarget(t *testing.T) {
	for in, want := range map[string]string{
		"http://localhost:8080": "http://localhost:8080/api/webhooks/replicate/completed",
		"https://x.io/app/":     "https://x.io/app/api/webhooks/replicate/completed",
		"https://x.io/api/webhooks/replicate/completed?model=m&t=1": "https://x.io/api/webhooks/replicate/completed?model=m&t=1",
		"https://x.io/api/webhooks/replicate/completed/":            "https://x.io/api/webhooks/replicate/completed/",
		"http://127.0.0.1:9/?keep=1":                                "http://127.0.0.1:9/api/webhooks/replicate/completed?keep=1",
	} {
		u, err := webhookTarget(in)
		if err != nil || u.String() != want {
			t.Errorf("webhookTarget(%q) = %v %v, want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"localhost:8080", "ftp://x", "/path"} {
		if _, err := webhookTarget(bad); err == nil {
			t.Errorf("webhookTarget(%q) accepted", bad)
		}
	}
}

func TestProgressLines(t *testing.T) {
	m := training.Model{Status: training.Training, Progress: training.Progress{Percent: 27, Step: 270, Total: 1000}}
	if got := barLine(m, 62*time.Second); got != "Training  [██████▍░░░░░░░░░░░░░░░░░]  27%  270/1000  1m02s" {
		t.Errorf("bar: %q", got)
	}
	if got := plainLine(m, 1500*time.Millisecond); got != "[    1.5s] Training  27% (step 270/1000)" {
		t.Errorf("plain: %q", got)
	}
	// With the trainer's estimate, as of now.
	m.Progress.ETASeconds, m.UpdatedAt = 125, time.Now()
	if got := barLine(m, 62*time.Second); got != "Training  [██████▍░░░░░░░░░░░░░░░░░]  27%  270/1000  1m02s, about 2 min left" {
		t.Errorf("bar with time left: %q", got)
	}
	if got := plainLine(m, 1500*time.Millisecond); got != "[    1.5s] Training  27% (step 270/1000), about 2 min left" {
		t.Errorf("plain with time left: %q", got)
	}
	if got := barLine(training.Model{Status: training.Pending}, 3*time.Second); got != "Pending   waiting for Replicate  3s" {
		t.Errorf("pending: %q", got)
	}
	if got := barLine(training.Model{Status: training.Ready}, time.Minute); !strings.Contains(got, "100%") || strings.Contains(got, "░") {
		t.Errorf("ready: %q", got)
	}

	// On a terminal the line is redrawn in place; piped, one line per change.
	var tty, pipe bytes.Buffer
	tv, pv := newProgressView(&tty, true), newProgressView(&pipe, false)
	for _, pct := range []float64{10, 10.4, 11, 100} {
		m.Progress.Percent = pct
		tv.update(m)
		pv.update(m)
	}
	tv.close()
	pv.close()
	if n := strings.Count(pipe.String(), "\n"); n != 3 {
		t.Errorf("piped: %d lines, want 3 (10.4%% is not a change):\n%s", n, pipe.String())
	}
	if strings.Count(tty.String(), "\r\x1b[K") < 4 || strings.Count(tty.String(), "\n") != 1 {
		t.Errorf("terminal: %q", tty.String())
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "<1ms", 850 * time.Millisecond: "850ms", 12 * time.Second: "12s", 185 * time.Second: "3m05s",
		130 * time.Minute: "2h10m", 76 * time.Hour: "3d4h", -time.Second: "<1ms",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRedirectFix(t *testing.T) {
	from := "http://trainhook.example.com/api/webhooks/replicate/completed"
	if got := redirectFix(from, "https://trainhook.example.com/api/webhooks/replicate/completed", "APP_URL"); !strings.Contains(got, "set APP_URL to https://trainhook.example.com,") {
		t.Errorf("https redirect: %s", got)
	}
	if got := redirectFix(from, "/login?next=/api", "APP_URL"); !strings.Contains(got, "without a redirect") {
		t.Errorf("login redirect: %s", got)
	}
}

// sqlite.Check reads a database without creating or changing it.
func TestSQLiteCheck(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "th.db")

	_, _, err := sqlite.Check(ctx, path)
	if !errors.Is(err, sqlite.ErrNoDatabase) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("Check created the file")
	}

	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	applied, latest, err := sqlite.Check(ctx, path) // while it is open, in WAL mode
	if err != nil || applied != latest || latest < 1 {
		t.Fatalf("open store: %d/%d %v", applied, latest, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	applied, latest, err = sqlite.Check(ctx, path)
	if err != nil || applied != latest {
		t.Fatalf("closed store: %d/%d %v", applied, latest, err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if e.Name() != "th.db.lock" { // the store's own, kept by design
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 {
		t.Fatalf("Check left files behind: %v", names)
	}

	empty := filepath.Join(dir, "empty.db")
	_ = os.WriteFile(empty, nil, 0o644)
	if applied, _, err := sqlite.Check(ctx, empty); err != nil || applied != 0 {
		t.Fatalf("empty file: %d %v", applied, err)
	}
	junk := filepath.Join(dir, "junk.db")
	_ = os.WriteFile(junk, []byte("this is not a database, it is a text file that is long enough"), 0o644)
	if _, _, err := sqlite.Check(ctx, junk); err == nil || !strings.Contains(err.Error(), "not a database") {
		t.Fatalf("junk file: %v", err)
	}
	if _, _, err := sqlite.Check(ctx, dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("directory: %v", err)
	}
}
