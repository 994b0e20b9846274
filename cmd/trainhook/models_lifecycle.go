package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/training"
)

// runModelsRemove is 'models rm ID': DELETE /api/models/{id}.
func runModelsRemove(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("models rm", e)
	server := serverFlag(fs, e)
	asJSON := fs.Bool("json", false, "print the removed model as JSON")
	fs.Usage = usageFunc(fs, e, "models rm ID [flags]", `
Removes a finished (Ready, Failed or Canceled) model from lists. Its record
and history are kept: 'trainhook models show ID' still prints it, and
'trainhook models --archived' lists it. A model still running is refused:
cancel it first (trainhook cancel ID).

Exit status: 0 when removed; 1 when the model is running or unknown, or the
server failed; 2 for a usage error.`)
	pos, code, ok := parseFlags(fs, args, e, 1, "the model ID")
	if !ok {
		return code
	}
	c, ok := newClient(e, "models rm", *server)
	if !ok {
		return exitUsage
	}
	m, err := c.Remove(ctx, pos[0])
	if err != nil {
		fmt.Fprintf(e.stderr, "models rm: %s\n", explain(err, c, pos[0]))
		return exitFailed
	}
	if *asJSON {
		writeJSON(e.stdout, m)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "Removed model %s %q (%s) from lists; it is kept with its history: trainhook models show %s\n", m.ID, m.Name, m.Status, m.ID)
	return exitOK
}

// runModelsRetry is 'models retry ID': POST /api/models/{id}/retry.
func runModelsRetry(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("models retry", e)
	server := serverFlag(fs, e)
	asJSON := fs.Bool("json", false, "print the new model as JSON")
	idemKey := fs.String("idempotency-key", "", "a `key` that makes a repeat of this command return the same new model instead of starting another training")
	fs.Usage = usageFunc(fs, e, "models retry ID [flags]", `
Starts a new training with the trainer, destination and input of a Failed
or Canceled model, as a new model linked to it (its retry_of). The old model
is left as it is. Only models trainhook started can be retried.

Exit status: 0 when the new training started (or its start is in doubt and
the server finishes it); 1 when Replicate refused it, the model cannot be
retried or is unknown, or the server failed; 2 for a usage error.`)
	pos, code, ok := parseFlags(fs, args, e, 1, "the model ID")
	if !ok {
		return code
	}
	c, ok := newClient(e, "models retry", *server)
	if !ok {
		return exitUsage
	}
	res, err := c.Retry(ctx, pos[0], *idemKey)
	var refused *apiclient.RefusedError
	switch {
	case errors.As(err, &refused):
		if *asJSON {
			writeJSON(e.stdout, map[string]any{"error": refused.Message, "model": refused.Model})
		}
		fmt.Fprintf(e.stderr, "models retry: %s\n  model %s is Failed; see it with: trainhook models show %s\n", refused.Message, refused.Model.ID, refused.Model.ID)
		return exitFailed
	case err != nil:
		fmt.Fprintf(e.stderr, "models retry: %s\n", explain(err, c, pos[0]))
		return exitFailed
	}
	m := res.Model
	if *asJSON {
		writeJSON(e.stdout, m)
		return exitOK
	}
	switch res.Outcome {
	case apiclient.Replayed:
		fmt.Fprintf(e.stdout, "Idempotency key %q was used before: this is model %s %q (%s); no second training was started.\n", *idemKey, m.ID, m.Name, m.Status)
	case apiclient.InDoubt:
		fmt.Fprintf(e.stdout, "Model %s %q (retry of %s) is Pending: the start is in doubt (%s).\n", m.ID, m.Name, pos[0], res.Warning)
	default:
		fmt.Fprintf(e.stdout, "Started model %s %q, a retry of %s: training %s on Replicate (%s → %s)\n", m.ID, m.Name, pos[0], orDash(m.TrainingID), orDash(m.Trainer), orDash(m.Destination))
	}
	fmt.Fprintf(e.stdout, "  follow it: trainhook watch %s\n", m.ID)
	return exitOK
}

// failedNote is how a list row says why a model failed, shortened.
func failedNote(m training.Model) string {
	if m.Status != training.Failed || m.Error == "" {
		return ""
	}
	return clip(oneLine(m.Error), 60)
}
