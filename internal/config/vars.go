package config

import (
	"fmt"
	"io"
	"strings"
)

// Var documents one environment variable. The table of them is the single
// source of the defaults Load applies, of the README's configuration table and
// of `serve --help`.
type Var struct {
	Name        string // e.g. "TRAINHOOK_MAX_BODY"
	Default     string // the value used when the variable is unset or blank; "" = none
	Description string // one or two sentences: what it does and what it accepts
	Secret      bool   // never printed: errors and the start-up dump say only "set" or "unset"
}

// Names of the variables Load reads.
const (
	EnvAppURL           = "APP_URL"
	EnvNextPublicAppURL = "NEXT_PUBLIC_APP_URL"
	EnvWebhooks         = "TRAINHOOK_WEBHOOKS"
	EnvWebhookSecret    = "REPLICATE_WEBHOOK_SECRET"
	EnvDatabaseURL      = "DATABASE_URL"
	EnvPort             = "PORT"
	EnvAddr             = "ADDR"
	EnvAPIToken         = "TRAINHOOK_API_TOKEN"
	EnvCORSOrigins      = "CORS_ALLOWED_ORIGINS"
	EnvAllowedHosts     = "TRAINHOOK_ALLOWED_HOSTS"
	EnvInsecureOpenAPI  = "TRAINHOOK_INSECURE_OPEN_API"
	EnvMaxBody          = "TRAINHOOK_MAX_BODY"
	EnvReadTimeout      = "TRAINHOOK_READ_TIMEOUT"
	EnvWriteTimeout     = "TRAINHOOK_WRITE_TIMEOUT"
	EnvReplicateToken   = "REPLICATE_API_TOKEN"
	EnvReplicateBaseURL = "REPLICATE_BASE_URL"
	EnvAPIRateLimit     = "TRAINHOOK_API_RATE_LIMIT"
	EnvPollInterval     = "TRAINHOOK_POLL_INTERVAL"
	EnvReconcileAfter   = "TRAINHOOK_RECONCILE_AFTER"
	EnvWebhookEvents    = "TRAINHOOK_WEBHOOK_EVENTS"
	EnvSecretKey        = "TRAINHOOK_SECRET_KEY"
	EnvLogLevel         = "TRAINHOOK_LOG_LEVEL"
	EnvLogFormat        = "TRAINHOOK_LOG_FORMAT"
	EnvRetention        = "TRAINHOOK_RETENTION"
	EnvRefusedRetention = "TRAINHOOK_REFUSED_RETENTION"
	EnvRefusedMax       = "TRAINHOOK_REFUSED_MAX"

	EnvNotifyURL            = "TRAINHOOK_NOTIFY_URL"
	EnvNotifySecret         = "TRAINHOOK_NOTIFY_SECRET"
	EnvNotifyEvents         = "TRAINHOOK_NOTIFY_EVENTS"
	EnvNotifyRetryFor       = "TRAINHOOK_NOTIFY_RETRY_FOR"
	EnvNotifyAllowedOrigins = "TRAINHOOK_NOTIFY_ALLOWED_ORIGINS"
)

// table is every variable Load reads, in the order the docs list them.
// Load takes its defaults from here, so the docs cannot drift from the code.
var table = []Var{
	{Name: EnvAppURL, Description: "Public base URL of this server, such as https://trainhook.example.com or https://example.com/app. " +
		"Webhooks go to APP_URL + " + WebhookPath + ". Unset, local or plain-http URLs mean polling mode (see TRAINHOOK_WEBHOOKS)."},
	{Name: EnvNextPublicAppURL, Description: "Used as APP_URL when APP_URL is unset (the name the original Next.js setup used)."},
	{Name: EnvWebhooks, Default: "auto", Description: "auto, on or off. auto: webhook mode only when APP_URL is https on a public host " +
		"(not localhost, a loopback, private, CGNAT or link-local address, nor a .local, .internal, .localhost or .home.arpa name); otherwise trainhook polls Replicate. on/off force the mode."},
	{Name: EnvWebhookSecret, Secret: true, Description: "Replicate's webhook signing key (whsec_...), from GET https://api.replicate.com/v1/webhooks/default/secret. " +
		"Several keys separated by spaces or commas are all accepted, for rotation. In webhook mode, needed unless REPLICATE_API_TOKEN is set (trainhook then fetches it)."},
	{Name: EnvDatabaseURL, Default: "trainhook.db", Description: "SQLite file: a path, sqlite:PATH, sqlite://PATH or file:PATH (no ?options; trainhook sets SQLite's own). " +
		"postgres:// or postgresql:// selects PostgreSQL."},
	{Name: EnvPort, Description: "Port to listen on, on all interfaces (the PaaS convention). Wins over ADDR. 0 picks a free port."},
	{Name: EnvAddr, Default: ":8080", Description: "host:port to listen on when PORT is unset, such as 127.0.0.1:8080 or :8080."},
	{Name: EnvAPIToken, Secret: true, Description: "When set, the management API and /metrics require the header Authorization: Bearer <token>, and the dashboard a sign-in with it. " +
		"At least 32 characters; `trainhook token new` prints one. Unset, trainhook starts only on a loopback address (see TRAINHOOK_INSECURE_OPEN_API). " +
		"20 wrong tokens a minute from one address get 429 until the minute is over."},
	{Name: EnvInsecureOpenAPI, Default: "false", Description: "true lets trainhook start without TRAINHOOK_API_TOKEN on an address other machines can reach (such as :8080 or PORT), " +
		"leaving the API and dashboard open to anyone who can reach the port; only when something in front of it already restricts access. It warns at every start."},
	{Name: EnvAllowedHosts, Description: "Comma-separated host names (no scheme or port; *.example.com for subdomains; * for any) trainhook answers to besides APP_URL's host, " +
		"localhost, *.localhost and IP addresses. Requests to other names get 421, which stops DNS rebinding; add the names a reverse proxy or a private network uses."},
	{Name: EnvCORSOrigins, Description: "Comma-separated origins (scheme://host[:port], no path) whose pages may call the API from a browser. " +
		"\"*\" is refused."},
	{Name: EnvMaxBody, Default: "10MiB", Description: "Largest webhook or API request body: bytes, or a number with KiB, MiB, GiB (or K, M, G), KB, MB, GB. " +
		"64KiB to 1GiB; Replicate's training webhooks carry the whole log and can be several MB."},
	{Name: EnvReadTimeout, Default: "60s", Description: "Longest time to read a whole request, headers and body (a Go duration, at least 1s). " +
		"A slow sender is cut off after it; raise it if large deliveries come over a slow link."},
	{Name: EnvWriteTimeout, Default: "60s", Description: "Longest time from the end of a request's headers to the end of its answer (at least TRAINHOOK_READ_TIMEOUT, " +
		"since reading the body counts against it). Live updates (/api/events) are not cut by it."},
	{Name: EnvReplicateToken, Secret: true, Description: "Replicate API token (r8_...), used to poll trainings and to fetch the webhook signing key."},
	{Name: EnvReplicateBaseURL, Default: DefaultReplicateBaseURL, Description: "Replicate API base URL; point it at `trainhook fake-replicate` to work offline. " +
		"Kept as given (the client appends /v1 if missing)."},
	{Name: EnvAPIRateLimit, Default: "1000", Description: "Requests per minute trainhook makes to Replicate's API, 1 to 3000 (Replicate allows 3000)."},
	{Name: EnvPollInterval, Default: "5s", Description: "How often the poller looks for trainings due a status check (a Go duration such as 5s or 1m; at least 100ms)."},
	{Name: EnvReconcileAfter, Default: "10m", Description: "In webhook mode, how long a running training may go without news before trainhook polls it (at least 1s)."},
	{Name: EnvWebhookEvents, Default: "start,completed", Description: "Comma-separated webhook events to ask Replicate for: start, output, logs, completed. Must include completed."},
	{Name: EnvSecretKey, Secret: true, Description: "Key for per-model webhook tokens, at least 32 characters (for example: openssl rand -base64 32). " +
		"Unset: trainhook generates one and keeps it in the database."},
	{Name: EnvRetention, Default: "30d", Description: "How long verified webhook deliveries, payloads included, are kept: days such as 30d, " +
		"a Go duration such as 72h (at least 1h), or off to keep them forever. Delivered and failed notifications to your app, with their attempts, " +
		"go after it too (pending ones stay until they are delivered or fail); so do webhook-id claims (which make a repeated delivery a duplicate) " +
		"and early reports held for unknown training ids, but never within 3 days. Models and their history are never deleted."},
	{Name: EnvRefusedRetention, Default: "7d", Description: "How long refused deliveries (bad or missing signature; at most 4 KiB of body each) " +
		"are kept: days, a Go duration of at least 1h, or off."},
	{Name: EnvRefusedMax, Default: "100000", Description: "Most refused deliveries kept, whatever their age: beyond it the oldest are deleted " +
		"at the next prune (every 10 minutes), so a flood of forged requests cannot fill the disk. 0 or off: no cap."},
	{Name: EnvNotifyURL, Description: "Comma-separated http(s) URLs of your app that get a signed POST (Standard Webhooks) when a model changes status. " +
		"No user:password@ in the URL: the signature authenticates trainhook."},
	{Name: EnvNotifySecret, Secret: true, Description: "Key the notifications are signed with: whsec_ and the base64 of 24 to 64 random bytes " +
		"(trainhook notify new-secret prints one). Required with TRAINHOOK_NOTIFY_URL. Several keys separated by spaces or commas, for rotation: each request carries a signature by every key."},
	{Name: EnvNotifyEvents, Default: DefaultNotifyEvents, Description: "Comma-separated events to notify: model.training, model.ready, model.failed, model.canceled."},
	{Name: EnvNotifyRetryFor, Default: "24h", Description: "How long a notification that is not answered with a 2xx is retried (backoff with jitter, honouring Retry-After) before it is marked failed (a Go duration, at least 1m)."},
	{Name: EnvNotifyAllowedOrigins, Description: "Comma-separated origins (scheme://host[:port]) a model's own notify_url, given in POST /api/models, may point at. " +
		"Unset: per-model notify URLs are refused."},
	{Name: EnvLogLevel, Default: "info", Description: "debug, info, warn or error."},
	{Name: EnvLogFormat, Default: "auto", Description: "auto, json or text. auto: JSON when standard output is not a terminal, text when it is."},
}

// Vars lists every environment variable Load reads, with its default and a
// description, in documentation order. The slice is a copy.
func Vars() []Var {
	return append([]Var(nil), table...)
}

var byName = func() map[string]Var {
	m := make(map[string]Var, len(table))
	for _, v := range table {
		m[v.Name] = v
	}
	return m
}()

// WriteMarkdown writes the variables as a Markdown table, for the README.
func WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| Variable | Default | Description |\n|---|---|---|\n")
	for _, v := range table {
		def := "—"
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		desc := strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(v.Description)
		if v.Secret {
			desc += " (secret: never logged)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, def, desc)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteHelp writes the variables as plain text for `serve --help`: a line
// with the name, default and whether it is secret, then the description
// wrapped and indented.
func WriteHelp(w io.Writer) error {
	var b strings.Builder
	for _, v := range table {
		b.WriteString("  " + v.Name)
		var notes []string
		if v.Default != "" {
			notes = append(notes, "default "+v.Default)
		}
		if v.Secret {
			notes = append(notes, "secret")
		}
		if len(notes) > 0 {
			b.WriteString(" (" + strings.Join(notes, ", ") + ")")
		}
		b.WriteByte('\n')
		for _, line := range wrap(v.Description, 72) {
			b.WriteString("      " + line + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap breaks s into lines of at most width bytes where it can, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
