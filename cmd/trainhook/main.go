// Command trainhook keeps model records true to the outcome of their
// Replicate trainings. See the README for the commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// env is what a command may touch of the process; tests supply their own.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	summary string
	run     func(ctx context.Context, args []string, e env) int
}

// commands lists every subcommand. Each lives in its own file.
var commands = map[string]command{
	"demo":           {"run a demo: server, SQLite, Replicate simulator and a sample training", runDemo},
	"serve":          {"run the webhook receiver, API and poller", runServe},
	"version":        {"print the version", runVersion},
	"fake-replicate": {"run a local simulator of Replicate's API", runFakeReplicate},
	"train":          {"start a training on Replicate and track it (--wait follows it)", runTrain},
	"models":         {"list model records, or show one with its history (models show ID)", runModels},
	"watch":          {"follow a model until its training ends", runWatch},
	"cancel":         {"cancel a model's training on Replicate", runCancel},
	"webhook":        {"send a signed test webhook, as Replicate does (webhook send)", runWebhook},
	"doctor":         {"check the configuration end to end and say how to fix it", runDoctor},
	"token":          {"print a new random API token for TRAINHOOK_API_TOKEN (token new)", runToken},
	"healthcheck":    {"ask a running server's /readyz; exit 0 when ready (for containers)", runHealthcheck},
	"backup":         {"copy the SQLite database while the server runs (backup PATH)", runBackup},
	"notifications":  {"list the notifications sent to your app; show or resend one", runNotifications},
	"notify":         {"notify new-secret prints a signing key; notify listen runs a local receiver", runNotify},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the exit code: 0 success, 1 a
// failed outcome or check, 2 a usage error.
func run(ctx context.Context, args []string, e env) int {
	switch {
	case len(args) == 0:
		usage(e.stderr)
		return 2
	case args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help":
		// Asked for: the answer, on stdout.
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return c.run(ctx, []string{"--help"}, e)
			}
		}
		usage(e.stdout)
		return 0
	case args[0] == "--version" || args[0] == "-version" || args[0] == "-v":
		return runVersion(ctx, args[1:], e)
	}
	c, ok := commands[args[0]]
	if !ok {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		hint := ""
		if s := closest(strings.TrimLeft(args[0], "-"), names); s != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		}
		fmt.Fprintf(e.stderr, "trainhook: unknown command %q%s\nRun 'trainhook help' for the list of commands.\n", args[0], hint)
		return 2
	}
	return c.run(ctx, args[1:], e)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: trainhook <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'trainhook <command> --help' for a command's flags.")
}
