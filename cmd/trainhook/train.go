package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/trainhook/trainhook/internal/apiclient"
	"github.com/trainhook/trainhook/internal/training"
)

func runTrain(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("train", e)
	server := serverFlag(fs, e)
	trainer := fs.String("trainer", "", "the trainer, `owner/model[:version]` (latest version when omitted), such as ostris/flux-dev-lora-trainer (required)")
	dest := fs.String("destination", "", "`owner/name` of the model that receives the new version; created if missing (required)")
	var inputs, metadata keyValues
	fs.Var(&inputs, "input", "a trainer input `key=value`, repeatable; numbers and true/false are sent as JSON, anything else as a string (\"quote\" it to force a string)")
	inputFile := fs.String("input-file", "", "a `file` holding a JSON object of trainer inputs ('-' reads standard input); --input flags override its keys")
	name := fs.String("name", "", "the model record's `name` (default: the destination)")
	fs.Var(&metadata, "metadata", "a `key=value` kept with the record for your app, repeatable; typed like --input")
	idemKey := fs.String("idempotency-key", "", "a `key` that makes a repeat of this command return the same model instead of starting a second training")
	wait := fs.Bool("wait", false, "follow the training until it ends, with a progress bar; exit 0 only when it is Ready")
	asJSON := fs.Bool("json", false, "print the server's answer as JSON (with --wait: the model as it ended)")
	fs.Usage = usageFunc(fs, e, "train --trainer owner/model[:version] --destination owner/name [--input key=value ...] [flags]", `
Asks trainhook to start a training on Replicate and track it (POST /api/models).

Exit status: 0 when the training was started (with --wait: when it ended
Ready); 1 when Replicate refused it, the server failed, or (with --wait) it
ended Failed or Canceled; 2 for a usage error; 130 when --wait is
interrupted (Ctrl-C), which stops watching and cancels nothing.

Example:
  trainhook train --trainer ostris/flux-dev-lora-trainer --destination trainhook-sim/portrait-lora \
    --input input_images=https://example.com/zkx.zip --input trigger_word=ZKX --input steps=1000 --wait`)
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	var missing []string
	if strings.TrimSpace(*trainer) == "" {
		missing = append(missing, "--trainer owner/model[:version]")
	}
	if strings.TrimSpace(*dest) == "" {
		missing = append(missing, "--destination owner/name")
	}
	if len(missing) > 0 {
		fmt.Fprintf(e.stderr, "train: missing %s\nRun 'trainhook train --help' for usage.\n", strings.Join(missing, " and "))
		return exitUsage
	}
	input, err := buildInput(*inputFile, inputs, e.stdin)
	if err != nil {
		fmt.Fprintf(e.stderr, "train: %v\n", err)
		return exitUsage
	}
	var md json.RawMessage
	if len(metadata) > 0 {
		md = metadata.object(nil)
	}
	c, ok := newClient(e, "train", *server)
	if !ok {
		return exitUsage
	}

	res, err := c.Start(ctx, apiclient.StartRequest{
		Name: *name, Trainer: strings.TrimSpace(*trainer), Destination: strings.TrimSpace(*dest),
		Input: input, Metadata: md, IdempotencyKey: *idemKey,
	})
	var refused *apiclient.RefusedError
	switch {
	case errors.As(err, &refused):
		if *asJSON {
			writeJSON(e.stdout, map[string]any{"error": refused.Message, "model": refused.Model})
		}
		fmt.Fprintf(e.stderr, "train: %s\n  model %s is Failed; see it with: trainhook models show %s\n", refused.Message, refused.Model.ID, refused.Model.ID)
		return exitFailed
	case err != nil:
		fmt.Fprintf(e.stderr, "train: %s\n", explain(err, c, ""))
		if apiclient.StatusCode(err) == http.StatusBadRequest {
			return exitUsage // the server found the flags' values wrong
		}
		return exitFailed
	}

	m := res.Model
	if *asJSON && !*wait {
		if res.Outcome == apiclient.InDoubt {
			writeJSON(e.stdout, struct {
				training.Model
				Warning string `json:"warning"`
			}{m, res.Warning})
		} else {
			writeJSON(e.stdout, m)
		}
		return exitOK
	}
	if *asJSON && res.Outcome == apiclient.InDoubt {
		fmt.Fprintf(e.stderr, "train: model %s is Pending, the start in doubt (%s); waiting for the server to settle it\n", m.ID, res.Warning)
	}
	if !*asJSON {
		switch res.Outcome {
		case apiclient.Replayed:
			fmt.Fprintf(e.stdout, "Idempotency key %q was used before: this is model %s %q (%s); no second training was started.\n", *idemKey, m.ID, m.Name, m.Status)
		case apiclient.InDoubt:
			fmt.Fprintf(e.stdout, "Model %s %q is Pending: the start is in doubt (%s).\n  trainhook finds out whether Replicate created the training, and creates it if not; it never starts two.\n", m.ID, m.Name, res.Warning)
		default:
			fmt.Fprintf(e.stdout, "Started model %s %q: training %s on Replicate (%s → %s)\n", m.ID, m.Name, orDash(m.TrainingID), orDash(m.Trainer), orDash(m.Destination))
		}
		if !*wait {
			fmt.Fprintf(e.stdout, "  follow it: trainhook watch %s\n", m.ID)
			return exitOK
		}
	}
	return follow(ctx, e, c, m.ID, followOptions{json: *asJSON})
}

// keyValues collects repeated key=value flags, in order.
type keyValues []keyValue

type keyValue struct {
	key   string
	value json.RawMessage
}

func (kv *keyValues) String() string { return "" }

func (kv *keyValues) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	*kv = append(*kv, keyValue{key: strings.TrimSpace(k), value: typedValue(v)})
	return nil
}

// object returns base (a JSON object's members) with the flags set over
// it, a later flag winning over an earlier one, as a JSON object.
func (kv keyValues) object(base map[string]json.RawMessage) json.RawMessage {
	if base == nil {
		base = map[string]json.RawMessage{}
	}
	for _, x := range kv {
		base[x.key] = x.value
	}
	b, _ := json.Marshal(base) // sorted keys, so the request is stable
	return b
}

// typedValue reads a flag value the way people mean it: steps=1000 is the
// number 1000, autocaption=false the boolean, trigger_word=ZKX the string
// "ZKX". A JSON string in quotes stays a string (steps="1000"), and anything
// that is not valid JSON, such as 007, is a string as well.
func typedValue(s string) json.RawMessage {
	switch {
	case s == "true" || s == "false":
		return json.RawMessage(s)
	case s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && strings.TrimSpace(s) == s && json.Valid([]byte(s)):
		return json.RawMessage(s)
	case len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && json.Valid([]byte(s)):
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

// buildInput merges --input flags over the object in --input-file.
func buildInput(file string, flags keyValues, stdin io.Reader) (json.RawMessage, error) {
	var base map[string]json.RawMessage
	if file != "" {
		var data []byte
		var err error
		if file == "-" {
			if stdin == nil {
				return nil, errors.New("--input-file -: no standard input")
			}
			data, err = io.ReadAll(stdin)
			file = "standard input"
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, fmt.Errorf("--input-file: %w", err)
		}
		if base, err = parseJSONObject(data); err != nil {
			return nil, fmt.Errorf("--input-file %s: %w", file, err)
		}
	}
	if base == nil && len(flags) == 0 {
		return json.RawMessage("{}"), nil
	}
	return flags.object(base), nil
}

// parseJSONObject decodes a JSON object, saying where the JSON is wrong.
func parseJSONObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		var syntax *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return nil, errors.New("is empty: want a JSON object such as {\"steps\": 1000}")
		case errors.As(err, &syntax):
			line, col := position(data, syntax.Offset)
			return nil, fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(syntax.Error(), "json: "))
		case errors.Is(err, io.ErrUnexpectedEOF):
			line, col := position(data, int64(len(data)))
			return nil, fmt.Errorf("invalid JSON: it ends early, at line %d, column %d (a missing } or \"?)", line, col)
		}
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("is a JSON %s: want a JSON object of trainer inputs such as {\"steps\": 1000}", jsonKind(v))
	}
	if rest := data[dec.InputOffset():]; len(bytes.TrimSpace(rest)) > 0 {
		next := int64(len(data) - len(bytes.TrimLeft(rest, " \t\r\n")))
		line, col := position(data, next+1)
		return nil, fmt.Errorf("invalid JSON at line %d, column %d: more data after the object", line, col)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return obj, nil
}

// position returns the 1-based line and column of the byte at off-1: a
// json.SyntaxError's Offset counts the bytes read up to and including the
// one that was wrong.
func position(data []byte, off int64) (line, col int) {
	if len(data) == 0 {
		return 1, 1
	}
	off = min(max(off, 1), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before[:len(before)-1], []byte{'\n'}) + 1
	col = len(before) - (bytes.LastIndexByte(before[:len(before)-1], '\n') + 1)
	return line, col
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "value"
}
