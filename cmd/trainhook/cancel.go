package main

import (
	"context"
	"fmt"

	"github.com/trainhook/trainhook/internal/training"
)

func runCancel(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("cancel", e)
	server := serverFlag(fs, e)
	wait := fs.Bool("wait", false, "wait until the model is final; exit 0 only if it ended Canceled")
	asJSON := fs.Bool("json", false, `print the answer as JSON: {"model": {...}, "confirmed": true|false}, with "error" when the cancel failed`)
	fs.Usage = usageFunc(fs, e, "cancel ID [flags]", `
Cancels a model's training on Replicate (POST /api/models/{id}/cancel).
When Replicate confirms at once the model is Canceled; otherwise it stays
Training until a webhook or a poll brings the final status.

Exit status: 0 when the cancel was sent (with --wait: when the model ended
Canceled); 1 when the model is already final (or ended otherwise than
Canceled), has no training yet, is unknown, or the server or Replicate
failed; 2 for a usage error; 130 when --wait is interrupted.`)
	pos, code, ok := parseFlags(fs, args, e, 1, "the model ID")
	if !ok {
		return code
	}
	id := pos[0]
	c, ok := newClient(e, "cancel", *server)
	if !ok {
		return exitUsage
	}
	res, err := c.Cancel(ctx, id)
	if err != nil {
		msg := explain(err, c, id)
		fmt.Fprintf(e.stderr, "cancel: %s\n", msg)
		if *asJSON {
			// The model as it is, so a script always gets it (none if unknown).
			out := struct {
				Model     *training.Model `json:"model"`
				Confirmed bool            `json:"confirmed"`
				Error     string          `json:"error"`
			}{Error: msg}
			if d, gerr := c.Model(ctx, id); gerr == nil {
				out.Model = &d.Model
			}
			writeJSON(e.stdout, out)
		}
		return exitFailed
	}
	m := res.Model
	if *asJSON {
		if !*wait {
			writeJSON(e.stdout, res)
			return outcomeCode(m.Status)
		}
		return follow(ctx, e, c, id, followOptions{json: true, want: training.Canceled})
	}
	switch {
	case m.Status == training.Canceled:
		fmt.Fprintf(e.stdout, "Canceled model %s %q (training %s).\n", m.ID, m.Name, orDash(m.TrainingID))
	case m.Status == training.Failed && m.Error != "":
		// Replicate had failed it, or has no such training to cancel.
		fmt.Fprintf(e.stdout, "Model %s %q is Failed: %s\n", m.ID, m.Name, m.Error)
	case m.Status.Terminal():
		// Replicate had finished before the cancel reached it.
		fmt.Fprintf(e.stdout, "Model %s %q had already ended %s on Replicate; nothing was canceled.\n", m.ID, m.Name, m.Status)
	default:
		fmt.Fprintf(e.stdout, "Cancel sent for model %s %q (training %s); Replicate has not confirmed yet, so it is still %s.\n", m.ID, m.Name, orDash(m.TrainingID), m.Status)
		if !*wait {
			fmt.Fprintf(e.stdout, "  follow it: trainhook watch %s\n", m.ID)
			return exitOK
		}
		return follow(ctx, e, c, id, followOptions{want: training.Canceled})
	}
	return outcomeCode(m.Status)
}

// outcomeCode is cancel's exit code for the model's status after the
// cancel: 1 when it ended otherwise than Canceled.
func outcomeCode(s training.Status) int {
	if s.Terminal() && s != training.Canceled {
		return exitFailed
	}
	return exitOK
}
