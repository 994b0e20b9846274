package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

func runModels(ctx context.Context, args []string, e env) int {
	if len(args) > 0 {
		switch args[0] {
		case "show":
			return runModelsShow(ctx, args[1:], e)
		case "rm":
			return runModelsRemove(ctx, args[1:], e)
		case "retry":
			return runModelsRetry(ctx, args[1:], e)
		}
	}
	fs := newFlagSet("models", e)
	server := serverFlag(fs, e)
	status := fs.String("status", "", "only models in this `status`: Pending, Training, Ready, Failed or Canceled")
	query := fs.String("query", "", "only models whose name contains `text`")
	limit := fs.Int("limit", service.DefaultPage, fmt.Sprintf("at most `n` models, 1 to %d", service.MaxPage))
	cursor := fs.String("cursor", "", "start after the page that printed this `cursor`")
	asJSON := fs.Bool("json", false, `print the page as JSON: {"models": [...], "next_cursor": "..."}`)
	archived := fs.Bool("archived", false, "list removed models too")
	fs.Usage = usageFunc(fs, e, "models [flags]\n       trainhook models show ID [--json]\n       trainhook models rm ID\n       trainhook models retry ID", `
Lists model records, newest first: id, name, status, progress, age and
Replicate training id (or, for a failed model, its error). 'models show ID'
prints one model and its history; 'models rm ID' removes a finished model
from lists; 'models retry ID' starts a failed or canceled one again.`)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(e.stderr, "models: unexpected argument %q: did you mean 'trainhook models show %s'?\n", args[0], args[0])
		return exitUsage
	}
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	var st training.Status
	if *status != "" {
		var err error
		if st, err = training.ParseStatus(*status); err != nil {
			fmt.Fprintf(e.stderr, "models: --status: %v\n", err)
			return exitUsage
		}
	}
	if *limit < 1 || *limit > service.MaxPage {
		fmt.Fprintf(e.stderr, "models: --limit must be between 1 and %d, got %d\n", service.MaxPage, *limit)
		return exitUsage
	}
	c, ok := newClient(e, "models", *server)
	if !ok {
		return exitUsage
	}
	page, err := c.Models(ctx, apiclient.ListOptions{Status: st, Query: *query, Limit: *limit, Cursor: *cursor, Archived: *archived})
	if err != nil {
		fmt.Fprintf(e.stderr, "models: %s\n", explain(err, c, ""))
		return exitFailed
	}
	if *asJSON {
		writeJSON(e.stdout, page)
		return exitOK
	}
	if len(page.Models) == 0 {
		what := "models"
		if st != "" {
			what = string(st) + " models"
		}
		if *query != "" {
			what += fmt.Sprintf(" named like %q", *query)
		}
		fmt.Fprintf(e.stdout, "No %s.\n", what)
		return exitOK
	}
	printModelTable(e.stdout, page.Models, time.Now())
	if page.NextCursor != "" {
		fmt.Fprintf(e.stdout, "\nMore: %s\n", nextPageCommand(page.NextCursor, st, *query, *limit, *archived))
	}
	return exitOK
}

func printModelTable(w io.Writer, ms []training.Model, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tPROGRESS\tAGE\tTRAINING / ERROR")
	for _, m := range ms {
		st := string(m.Status)
		if m.Flagged {
			st += " (flagged)"
		}
		if m.ArchivedAt != nil {
			st += " (removed)"
		}
		last := orDash(m.TrainingID)
		if note := failedNote(m); note != "" {
			last = note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, clip(oneLine(m.Name), 40), st, progressCell(m),
			humanDuration(now.Sub(m.CreatedAt)), last)
	}
	_ = tw.Flush()
}

func progressCell(m training.Model) string {
	p := m.Progress
	switch {
	case m.Status == training.Ready:
		return "100%"
	case p.Total > 0:
		return fmt.Sprintf("%.0f%% %d/%d", p.Percent, p.Step, p.Total)
	case p.Percent > 0:
		return fmt.Sprintf("%.0f%%", p.Percent)
	}
	return "-"
}

// oneLine keeps a table row on one line whatever a name holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func runModelsShow(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("models show", e)
	server := serverFlag(fs, e)
	asJSON := fs.Bool("json", false, "print the model and its history as JSON, as GET /api/models/{id} returns them")
	logLines := fs.Int("log-lines", 10, "show the last `n` lines of the training's log (0: none)")
	fs.Usage = usageFunc(fs, e, "models show ID [flags]", `
Prints one model record: its status, training, output or error, and the
history of its transitions with where each came from (webhook, poll, api).`)
	pos, code, ok := parseFlags(fs, args, e, 1, "the model ID")
	if !ok {
		return code
	}
	c, ok := newClient(e, "models show", *server)
	if !ok {
		return exitUsage
	}
	d, err := c.Model(ctx, pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "models show: %s\n", explain(err, c, pos[0]))
		return exitFailed
	}
	if *asJSON {
		writeJSON(e.stdout, d)
		return exitOK
	}
	printModelDetail(e.stdout, d, *logLines, time.Now())
	return exitOK
}

func printModelDetail(w io.Writer, d apiclient.ModelDetail, logLines int, now time.Time) {
	m := d.Model
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("Model", m.ID)
	row("Name", oneLine(m.Name))
	st := string(m.Status)
	if m.RemoteStatus != "" {
		st += " (Replicate: " + m.RemoteStatus + ")"
	}
	row("Status", st)
	if m.Flagged {
		row("Flagged", "Replicate reported two different final outcomes; the first is kept (see the history)")
	}
	row("Training", m.TrainingID)
	row("Trainer", m.Trainer)
	row("Destination", m.Destination)
	if m.Status == training.Training || m.Progress.Total > 0 {
		row("Progress", progressCell(m))
	}
	var out struct{ Version, Weights string }
	if json.Unmarshal(m.Output, &out) == nil && (out.Version != "" || out.Weights != "") {
		row("Version", out.Version)
		row("Weights", out.Weights)
	} else if len(m.Output) > 0 && string(m.Output) != "null" {
		row("Output", string(m.Output))
	}
	row("Error", m.Error)
	row("Created", when(m.CreatedAt, now))
	if m.StartedAt != nil {
		row("Started", when(*m.StartedAt, now))
	}
	if m.CompletedAt != nil {
		row("Completed", when(*m.CompletedAt, now))
	}
	row("Updated", when(m.UpdatedAt, now))
	if len(m.Input) > 0 {
		row("Input", clip(string(m.Input), 200))
	}
	if len(m.Metadata) > 0 {
		row("Metadata", clip(string(m.Metadata), 200))
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "\nHistory")
	if len(d.History) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  AT\tFROM\tTO\tREPLICATE\tSOURCE\tDECISION\tNOTE")
		for _, h := range d.History {
			src := string(h.Source)
			if h.SourceRef != "" {
				src += " " + clip(h.SourceRef, 28)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.At.UTC().Format("2006-01-02 15:04:05.000"),
				orDash(string(h.From)), h.To, orDash(h.RemoteStatus), src, h.Decision, oneLine(h.Note))
		}
		_ = tw.Flush()
	}

	if logLines > 0 && strings.TrimSpace(m.LogTail) != "" {
		lines := strings.Split(strings.TrimRight(m.LogTail, "\n"), "\n")
		if len(lines) > logLines {
			lines = lines[len(lines)-logLines:]
		}
		fmt.Fprintf(w, "\nLog (last %d lines)\n", len(lines))
		for _, l := range lines {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
}

func when(t time.Time, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format("2006-01-02 15:04:05 UTC"), humanDuration(now.Sub(t)))
}

// nextPageCommand is the command that prints the next page: the same
// filters and page size, and the cursor.
func nextPageCommand(cursor string, st training.Status, query string, limit int, archived bool) string {
	args := []string{"trainhook", "models"}
	if st != "" {
		args = append(args, "--status", string(st))
	}
	if query != "" {
		args = append(args, "--query", shellQuote(query))
	}
	if limit != service.DefaultPage {
		args = append(args, "--limit", strconv.Itoa(limit))
	}
	if archived {
		args = append(args, "--archived")
	}
	return strings.Join(append(args, "--cursor", cursor), " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
