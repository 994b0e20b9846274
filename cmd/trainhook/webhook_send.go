package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

func runWebhook(ctx context.Context, args []string, e env) int {
	if len(args) > 0 && args[0] == "send" {
		return runWebhookSend(ctx, args[1:], e)
	}
	fmt.Fprint(e.stderr, `Usage: trainhook webhook send --url URL --training-id ID --status STATUS [flags]

Sends a signed test webhook, built and signed as Replicate does.
Run 'trainhook webhook send --help' for its flags.
`)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintf(e.stderr, "webhook: unknown subcommand %q\n", args[0])
	}
	return exitUsage
}

// sendStatuses are the statuses webhook send can report.
var sendStatuses = []string{
	training.RemoteStarting, training.RemoteProcessing, training.RemoteSucceeded,
	training.RemoteFailed, training.RemoteCanceled, training.RemoteAborted,
}

// staleAge is how old --stale makes the timestamp: past replicate.Tolerance.
const staleAge = 10 * time.Minute

func runWebhookSend(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("webhook send", e)
	target := fs.String("url", strings.TrimSpace(e.getenv(envServerURL)), "where to send: trainhook's base `URL` (the webhook path is appended) or the full webhook URL; a query string is kept (required; "+envServerURL+" sets the default)")
	trainingID := fs.String("training-id", "", "the Replicate training `id` the payload reports (required)")
	status := fs.String("status", "", "the training's `status`: succeeded, failed, canceled or processing (also starting, aborted) (required)")
	secretFlag := fs.String("secret", "", "the signing `key` (whsec_...); default REPLICATE_WEBHOOK_SECRET (its first key)")
	modelID := fs.String("model", "", "send to model `ID`'s own webhook URL (?model=&token=), as Replicate does for trainings trainhook starts; without --token it is fetched through the API (TRAINHOOK_API_TOKEN), and so is --training-id")
	token := fs.String("token", "", "the model's webhook `token`, added as &token= (default: fetched with --model)")
	forge := fs.Bool("forge", false, "sign with a random key instead: the endpoint must refuse it (401)")
	stale := fs.Bool("stale", false, "use a timestamp 10 minutes old: the endpoint must refuse it (401)")
	webhookID := fs.String("webhook-id", "", "the webhook-id `header` (default: a new msg_... id); send one twice to see it deduplicated")
	errMsg := fs.String("error", "", "the `message` of a failed training (default: a CUDA out-of-memory error)")
	dest := fs.String("destination", "trainhook-sim/portrait-lora", "the destination `owner/name` in the output version")
	steps := fs.Int("steps", 1000, "training `steps` in the input and the progress lines")
	logsSize := fs.String("logs-size", "", "pad the logs to about this `size` (such as 5MiB), to test body limits")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on the request after this `duration`")
	asJSON := fs.Bool("json", false, "print the request and the answer as JSON")
	fs.Usage = usageFunc(fs, e, "webhook send [--url URL] --training-id ID --status STATUS [flags]", `
Sends a realistic Replicate training webhook (the training object as
GET /v1/trainings/{id} returns it, with a long LoRA trainer log), signed
exactly as Replicate signs it (webhook-id, webhook-timestamp,
webhook-signature), and prints the answer. Redirects are not followed, as
Replicate does not follow them. --forge and --stale send deliveries the
endpoint must refuse.

Exit status: 0 when the answer is 2xx; 1 otherwise (including the 401 that
--forge and --stale expect); 2 for a usage error.`)
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(e.stderr, "webhook send: "+format+"\n", a...)
		return exitUsage
	}
	if *token != "" && *modelID == "" {
		return usageErr("--token needs --model: trainhook checks the token against the model")
	}
	if *modelID != "" && *token == "" && strings.TrimSpace(*target) != "" {
		// The model's token and training id, through the authenticated API.
		base, err := webhookTarget(*target)
		if err != nil {
			return usageErr("--url: %v", err)
		}
		base.Path, base.RawPath, base.RawQuery = "", "", ""
		c, ok := newClient(e, "webhook send", base.String())
		if !ok {
			return exitUsage
		}
		wh, err := c.Webhook(ctx, *modelID)
		if err != nil {
			fmt.Fprintf(e.stderr, "webhook send: model %s's webhook URL: %s\n", *modelID, explain(err, c, *modelID))
			return exitFailed
		}
		*token = wh.Token
		if *trainingID == "" {
			*trainingID = wh.TrainingID
		}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--url (or " + envServerURL + ")", *target}, {"--training-id", *trainingID}, {"--status", *status}} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return usageErr("missing %s (run 'trainhook webhook send --help')", strings.Join(missing, ", "))
	}
	if !contains(sendStatuses, *status) {
		return usageErr("--status %q: want succeeded, failed, canceled or processing (or starting, aborted)", *status)
	}

	if *steps < 1 || *steps > 100000 {
		return usageErr("--steps must be between 1 and 100000")
	}
	var padTo int64
	if *logsSize != "" {
		n, ok := config.ParseSize(*logsSize)
		if !ok || n > 1<<30 {
			return usageErr("--logs-size %q: want a size such as 5MiB (at most 1GiB)", *logsSize)
		}
		padTo = n
	}
	u, err := webhookTarget(*target)
	if err != nil {
		return usageErr("--url: %v", err)
	}
	if *modelID != "" {
		q := u.Query()
		q.Set("model", *modelID)
		q.Set("token", *token)
		u.RawQuery = q.Encode()
	}

	var key replicate.Key
	keyNote := ""
	if *forge {
		key = randomKey()
		keyNote = "a random key (forged)"
	} else {
		raw := *secretFlag
		from := "--secret"
		if raw == "" {
			raw, from = e.getenv(config.EnvWebhookSecret), config.EnvWebhookSecret
		}
		keys, err := replicate.ParseKeys(raw)
		switch {
		case err != nil:
			return usageErr("%s: %v", from, err)
		case len(keys) == 0:
			return usageErr("no signing key: pass --secret whsec_... or set %s (or use --forge)", config.EnvWebhookSecret)
		}
		key = keys[0]
		keyNote = "key " + key.Fingerprint()
	}

	now := time.Now()
	ts := now
	if *stale {
		ts = now.Add(-staleAge)
	}
	body, err := fakereplicate.TrainingPayload(fakereplicate.PayloadOptions{
		TrainingID: *trainingID, Status: *status, Destination: *dest, Error: *errMsg,
		Steps: *steps, Webhook: u.String(), PadTo: padTo, Now: now,
	})
	if err != nil {
		fmt.Fprintf(e.stderr, "webhook send: %v\n", err)
		return exitFailed
	}
	id := *webhookID
	if id == "" {
		id = newWebhookID()
	}
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := sendDelivery(rctx, noRedirectClient(), u.String(), key, id, ts, body)
	if err != nil {
		fmt.Fprintf(e.stderr, "webhook send: POST %s: %v\n", u.Redacted(), err)
		return exitFailed
	}

	ok := res.code >= 200 && res.code < 300
	if *asJSON {
		writeJSON(e.stdout, sendReport{
			URL: u.String(), WebhookID: id, Timestamp: ts.Unix(), TrainingID: *trainingID, Status: *status,
			BodyBytes: len(body), KeyFingerprint: key.Fingerprint(), Forged: *forge, Stale: *stale,
			StatusCode: res.code, Location: res.location, Response: res.jsonBody(),
		})
	} else {
		tsNote := "now"
		if *stale {
			tsNote = "10 minutes ago (stale)"
		}
		fmt.Fprintf(e.stdout, "POST %s\n  training %s %s, %s, webhook-id %s\n  signed with %s, timestamp %s\n",
			u.Redacted(), *trainingID, *status, byteSize(int64(len(body))), id, keyNote, tsNote)
		fmt.Fprintf(e.stdout, "HTTP %d %s\n", res.code, http.StatusText(res.code))
		if res.location != "" {
			fmt.Fprintf(e.stdout, "Location: %s\n", res.location)
		}
		if b := strings.TrimSpace(string(res.body)); b != "" {
			fmt.Fprintln(e.stdout, clip(b, 2000))
		}
		switch {
		case (*forge || *stale) && res.code == http.StatusUnauthorized:
			fmt.Fprintln(e.stdout, "Refused, as it must be: the endpoint does not accept this delivery.")
		case (*forge || *stale) && ok:
			fmt.Fprintln(e.stdout, "WARNING: the endpoint accepted a delivery it must refuse: it is not verifying signatures or timestamps.")
		case res.code >= 300 && res.code < 400:
			fmt.Fprintln(e.stdout, "Redirected: Replicate does not follow redirects, so its deliveries would be lost. Use the final URL.")
		}
	}
	if !ok {
		return exitFailed
	}
	return exitOK
}

// sendReport is webhook send's --json output.
type sendReport struct {
	URL            string `json:"url"`
	WebhookID      string `json:"webhook_id"`
	Timestamp      int64  `json:"timestamp"`
	TrainingID     string `json:"training_id"`
	Status         string `json:"status"`
	BodyBytes      int    `json:"body_bytes"`
	KeyFingerprint string `json:"key_fingerprint"`
	Forged         bool   `json:"forged"`
	Stale          bool   `json:"stale"`
	StatusCode     int    `json:"status_code"`
	Location       string `json:"location,omitempty"`
	Response       any    `json:"response"` // JSON as answered, or the text
}

// webhookTarget accepts trainhook's base URL or the full webhook URL.
func webhookTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL such as http://localhost:8080", raw)
	}
	u.Fragment = ""
	path := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(path, config.WebhookPath) {
		u.Path = path + config.WebhookPath
		u.RawPath = ""
	}
	return u, nil
}

// delivery is an endpoint's answer to one signed POST.
type delivery struct {
	code     int
	body     []byte
	location string
	elapsed  time.Duration
	size     int // bytes sent
}

// jsonBody returns the answer as JSON when it is JSON, else as a string.
func (d delivery) jsonBody() any {
	if json.Valid(d.body) {
		return json.RawMessage(d.body)
	}
	return string(d.body)
}

// outcome is the "outcome" of trainhook's JSON answer ("applied", "probe"...).
func (d delivery) outcome() string {
	var v struct {
		Outcome string `json:"outcome"`
	}
	_ = json.Unmarshal(d.body, &v)
	return v.Outcome
}

// errorText is the "error" of a JSON answer, else a short form of the body.
func (d delivery) errorText() string {
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(d.body, &v) == nil && v.Error != "" {
		return v.Error
	}
	return clip(strings.Join(strings.Fields(string(d.body)), " "), 120)
}

// sendDelivery POSTs body signed with key, as Replicate does, and reads up to
// 64 KiB of the answer.
func sendDelivery(ctx context.Context, hc *http.Client, target string, key replicate.Key, id string, ts time.Time, body []byte) (delivery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return delivery{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "trainhook-webhook-send/"+version)
	key.SignRequest(req.Header, id, ts, body)
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return delivery{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return delivery{code: resp.StatusCode, body: b, location: resp.Header.Get("Location"), elapsed: time.Since(start)}, nil
}

// noRedirectClient never follows redirects, as Replicate's sender does not.
func noRedirectClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func randomKey() replicate.Key {
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	return replicate.NewKey(raw)
}

func newWebhookID() string {
	return "msg_" + randomID(27)
}

// randomID returns n random lower-case letters and digits.
func randomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
