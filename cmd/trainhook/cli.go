package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
)

// What the client commands (train, models, watch, cancel) share: how they
// find the server, how they say what went wrong, and output helpers.

// Client commands find the server by --server, else TRAINHOOK_URL, else
// defaultServer, and send TRAINHOOK_API_TOKEN as a Bearer token.
const (
	envServerURL  = "TRAINHOOK_URL"
	envAPIToken   = "TRAINHOOK_API_TOKEN"
	defaultServer = "http://localhost:8080"
)

// Exit codes. 130 is what shells report for a command ended by Ctrl-C.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// newFlagSet returns a flag set that reports errors to the command's stderr.
func newFlagSet(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// serverFlag adds --server to fs.
func serverFlag(fs *flag.FlagSet, e env) *string {
	def := strings.TrimSpace(e.getenv(envServerURL))
	if def == "" {
		def = defaultServer
	}
	return fs.String("server", def, "trainhook's `URL`; "+envServerURL+" sets the default")
}

// newClient returns a client of server with the token from the environment,
// or prints why it cannot.
func newClient(e env, cmd, server string) (*apiclient.Client, bool) {
	c, err := apiclient.New(server, strings.TrimSpace(e.getenv(envAPIToken)))
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v (set --server or %s)\n", cmd, err, envServerURL)
		return nil, false
	}
	c.UserAgent = "trainhook-cli/" + version
	return c, true
}

// explain turns a client error into one sentence that says what was wrong
// and how to fix it. modelID names the model the request was about, if any.
func explain(err error, c *apiclient.Client, modelID string) string {
	var unreachable *apiclient.UnreachableError
	var refused *apiclient.RefusedError
	switch {
	case errors.As(err, &unreachable):
		return fmt.Sprintf("cannot reach trainhook at %s: is `trainhook serve` running? set --server or %s (%v)", c.BaseURL(), envServerURL, unreachable.Err)
	case apiclient.IsUnauthorized(err) && c.HasToken():
		return "the server refused the API token: set " + envAPIToken + " to the server's value"
	case apiclient.IsUnauthorized(err):
		return "the server requires an API token: set " + envAPIToken + " to the server's value"
	case apiclient.IsNotFound(err) && modelID != "":
		return fmt.Sprintf("no model with id %q on %s: list them with `trainhook models`", modelID, c.BaseURL())
	case errors.As(err, &refused):
		return refused.Message
	}
	var apiErr *apiclient.Error
	if errors.As(err, &apiErr) {
		return apiErr.Message
	}
	return err.Error()
}

// parseArgs parses flags anywhere among the arguments ("show ID --json" as
// well as "show --json ID") and returns the positional ones. Everything
// after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseQuiet(fs, args, env{stderr: fs.Output()}); err != nil {
			return nil, err
		}
		consumed := len(args) - fs.NArg()
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, fs.Args()...), nil
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseFlags parses args and returns the positional arguments, or the exit
// code to return: 0 for --help, 2 for a usage error. want is the number of
// positional arguments expected and what they are ("ID"), for the message.
func parseFlags(fs *flag.FlagSet, args []string, e env, want int, what string) ([]string, int, bool) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK, false
		}
		return nil, exitUsage, false
	}
	if len(pos) != want {
		switch {
		case want == 0:
			fmt.Fprintf(e.stderr, "%s: unexpected argument %q\n", fs.Name(), pos[0])
		case len(pos) < want:
			fmt.Fprintf(e.stderr, "%s: missing %s\n", fs.Name(), what)
		default:
			fmt.Fprintf(e.stderr, "%s: want only %s, got also %q\n", fs.Name(), what, pos[want])
		}
		fmt.Fprintf(e.stderr, "Run 'trainhook %s --help' for usage.\n", fs.Name())
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// usageFunc prints a command's usage: the synopsis, what it does, its flags.
func usageFunc(fs *flag.FlagSet, e env, synopsis, about string) func() {
	return func() {
		fmt.Fprintf(e.stderr, "Usage: trainhook %s\n\n%s\n\nFlags:\n", synopsis, strings.TrimSpace(about))
		fs.PrintDefaults()
	}
}

// isTerminal reports whether w is a terminal, where a progress bar may be
// redrawn in place. TERM=dumb terminals get plain lines.
func isTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok || getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// humanDuration prints d the way people say it: 850ms, 12s, 3m05s, 2h10m, 3d4h.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// clip shortens s to n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// orDash returns s, or "-" when it is empty, for table cells.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
