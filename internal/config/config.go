// Package config reads trainhook's configuration from the environment once,
// at start-up, into an immutable Config: every variable is parsed and checked
// in one place, every problem is reported at once, and a redacted dump of the
// result goes to the start-up log.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trainhook/trainhook/internal/replicate"
)

// WebhookPath is where trainhook receives Replicate's webhooks, under APP_URL.
const WebhookPath = "/api/webhooks/replicate/completed"

// DefaultReplicateBaseURL is Replicate's API.
const DefaultReplicateBaseURL = "https://api.replicate.com/v1"

// Limits on the values Load accepts.
const (
	MinMaxBody        = 64 << 10 // a training webhook carries the whole log so far
	MaxMaxBody        = 1 << 30
	MaxAPIRateLimit   = 3000 // Replicate's limit for everything but creating predictions
	MinPollInterval   = 100 * time.Millisecond
	MinReconcileAfter = time.Second
	MinSecretKeyLen   = 32
	MinHTTPTimeout    = time.Second
	MinRetention      = time.Hour
	MaxRetention      = 100 * 365 * 24 * time.Hour
	MaxRefusedMax     = 1 << 30
)

// Webhook events Replicate can be asked for, in lifecycle order.
var webhookEvents = []string{"start", "output", "logs", "completed"}

// Webhooks settings.
const (
	WebhooksAuto = "auto"
	WebhooksOn   = "on"
	WebhooksOff  = "off"
)

// Database drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config is trainhook's configuration. Load builds it; treat it as read-only
// afterwards (its slices are shared by copies). The variable each field comes
// from and its default are next to the field; Vars has the full descriptions.
type Config struct {
	// AppURL is APP_URL, else NEXT_PUBLIC_APP_URL; "" when neither is set.
	// Scheme and host are lower-cased and trailing slashes removed; any path
	// prefix is kept (https://x.io/app/ becomes https://x.io/app).
	AppURL string
	// AppURLSource names the variable AppURL came from: "APP_URL",
	// "NEXT_PUBLIC_APP_URL" or "".
	AppURLSource string
	// WebhookURL is AppURL + WebhookPath, or "" when AppURL is "".
	WebhookURL string
	// Webhooks is TRAINHOOK_WEBHOOKS: "auto" (default), "on" or "off".
	Webhooks string
	// WebhookMode is the decision: true means trainings are created with
	// WebhookURL and polling only reconciles; false means trainhook polls.
	WebhookMode bool
	// ModeReason is one sentence saying which mode and why, for the log.
	ModeReason string
	// WebhookKeys is REPLICATE_WEBHOOK_SECRET: whsec_ keys separated by
	// spaces or commas; several are accepted at once so a key can be rotated.
	// Empty when unset.
	WebhookKeys replicate.Keys
	// DatabaseURL is DATABASE_URL as given (default "trainhook.db").
	DatabaseURL string
	// DBDriver is "sqlite" or "postgres" (postgres:// and postgresql:// URLs).
	DBDriver string
	// DBPath is the SQLite file path: DATABASE_URL without its "sqlite:",
	// "sqlite://" or "file:" prefix ("file:///tmp/x.db" gives "/tmp/x.db").
	// Query options are refused, not stripped. "" for postgres.
	DBPath string
	// Addr is the listen address: ":"+PORT when PORT is set (all
	// interfaces, the PaaS convention), else ADDR (default ":8080").
	Addr string
	// APIToken is TRAINHOOK_API_TOKEN: when set, the management API requires
	// "Authorization: Bearer <token>". Default unset.
	APIToken string
	// AllowedHosts is TRAINHOOK_ALLOWED_HOSTS: host names (lower-case,
	// "*.example.com" patterns, or just "*" for any) the server answers to
	// besides APP_URL's host, IP addresses and loopback names. Default none.
	AllowedHosts []string
	// InsecureOpenAPI is TRAINHOOK_INSECURE_OPEN_API: serve without
	// TRAINHOOK_API_TOKEN on an address other machines can reach.
	InsecureOpenAPI bool
	// CORSOrigins is CORS_ALLOWED_ORIGINS: origins as scheme://host[:port]
	// (lower-cased, default ports dropped, duplicates removed). Default none.
	CORSOrigins []string
	// MaxBody is TRAINHOOK_MAX_BODY in bytes: default 10 MiB, 64 KiB to 1 GiB.
	MaxBody int64
	// ReadTimeout is TRAINHOOK_READ_TIMEOUT, the server's limit on reading a
	// whole request: default 60s, at least 1s.
	ReadTimeout time.Duration
	// WriteTimeout is TRAINHOOK_WRITE_TIMEOUT, the server's limit from the
	// end of a request's headers to the end of its answer: default 60s, at
	// least ReadTimeout (net/http starts it before the body is read).
	WriteTimeout time.Duration
	// ReplicateToken is REPLICATE_API_TOKEN. Default unset.
	ReplicateToken string
	// ReplicateBaseURL is REPLICATE_BASE_URL as given, default
	// https://api.replicate.com/v1 (the client appends /v1 if missing).
	ReplicateBaseURL string
	// APIRateLimit is TRAINHOOK_API_RATE_LIMIT, requests per minute to
	// Replicate: default 1000, 1 to 3000.
	APIRateLimit int
	// PollInterval is TRAINHOOK_POLL_INTERVAL: default 5s, at least 100ms.
	PollInterval time.Duration
	// ReconcileAfter is TRAINHOOK_RECONCILE_AFTER: default 10m, at least 1s.
	ReconcileAfter time.Duration
	// WebhookEvents is TRAINHOOK_WEBHOOK_EVENTS: default start,completed;
	// each of start, output, logs, completed, in that order, always
	// including completed.
	WebhookEvents []string
	// SecretKey is TRAINHOOK_SECRET_KEY, the key for per-model webhook
	// tokens: at least 32 characters; unset means kept in the database.
	SecretKey string
	// LogLevel is TRAINHOOK_LOG_LEVEL: debug, info (default), warn, error.
	LogLevel slog.Level
	// LogFormat is TRAINHOOK_LOG_FORMAT: "auto" (default), "json" or "text".
	// The caller resolves "auto": JSON when stdout is not a terminal.
	LogFormat string
	// HSTS is true when AppURL is https, so responses may carry
	// Strict-Transport-Security.
	HSTS bool
	// Retention is TRAINHOOK_RETENTION, how long verified deliveries are
	// kept (default 30 days, at least 1h); 0 ("off") keeps them forever.
	// Claims and held reports follow it, with a floor (see internal/app).
	Retention time.Duration
	// RefusedRetention is TRAINHOOK_REFUSED_RETENTION, how long refused
	// deliveries are kept (default 7 days, at least 1h); 0 ("off") forever.
	RefusedRetention time.Duration
	// RefusedMax is TRAINHOOK_REFUSED_MAX, the most refused deliveries
	// kept (default 100000); 0 ("off") means no cap.
	RefusedMax int

	// Notify holds the TRAINHOOK_NOTIFY_* settings: where and how trainhook
	// tells the app about model changes (see notify.go).
	Notify Notify
}

// Error is one problem with one variable. Load joins them with errors.Join;
// use errors.As to find which variable was wrong.
type Error struct {
	Var    string // the variable's name
	Value  string // as given; "" when Secret
	Secret bool   // the value is not shown
	Want   string // what was expected, and why when it is not obvious
}

func (e *Error) Error() string {
	if e.Secret {
		return e.Var + " (secret, not shown): want " + e.Want
	}
	return e.Var + "=" + quote(e.Value) + ": want " + e.Want
}

// quote quotes v for an error message, shortened if it is long.
func quote(v string) string {
	const max = 120
	if len(v) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		return strconv.Quote(v[:cut]) + "..."
	}
	return strconv.Quote(v)
}

// ErrNoSigningKey is returned (joined) when webhook mode has no way to get a
// key to verify deliveries with.
var ErrNoSigningKey = errors.New(`webhook mode needs a signing key: set REPLICATE_WEBHOOK_SECRET to the key from GET https://api.replicate.com/v1/webhooks/default/secret (curl -s -H "Authorization: Bearer $REPLICATE_API_TOKEN" https://api.replicate.com/v1/webhooks/default/secret), or set REPLICATE_API_TOKEN and trainhook fetches it at start-up`)

// loader carries the lookup and the problems found so far.
type loader struct {
	getenv func(string) string
	errs   []error
	// badWebhookSecret is set when REPLICATE_WEBHOOK_SECRET was given but could
	// not be parsed, so "needs a signing key" would only repeat that error.
	badWebhookSecret bool
}

// value returns the variable's value with surrounding space removed, or its
// default from the table when that is blank.
func (l *loader) value(name string) string {
	if v := strings.TrimSpace(l.getenv(name)); v != "" {
		return v
	}
	return byName[name].Default
}

// given reports the variable's trimmed value and whether it was set at all.
func (l *loader) given(name string) (string, bool) {
	v := strings.TrimSpace(l.getenv(name))
	return v, v != ""
}

func (l *loader) bad(name, value, want string) {
	l.errs = append(l.errs, &Error{Var: name, Value: value, Want: want})
}

func (l *loader) badSecret(name, want string) {
	l.errs = append(l.errs, &Error{Var: name, Secret: true, Want: want})
}

// Load reads every variable through getenv (os.Getenv, or a wrapper that
// lets command-line flags win; see Override), applies defaults, checks every
// value and decides the webhook mode. It returns all problems at once,
// joined, each naming the variable, the value (unless secret) and what was
// expected. On error the returned Config is incomplete and must not be used.
func Load(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	l := &loader{getenv: getenv}
	var c Config

	appURLOK := l.appURL(&c)
	l.webhooks(&c)
	l.webhookKeys(&c)
	l.database(&c)
	l.listen(&c)
	l.apiToken(&c)
	l.insecureOpenAPI(&c)
	l.allowedHosts(&c)
	l.cors(&c)
	l.maxBody(&c)
	l.timeouts(&c)
	l.replicate(&c)
	c.APIRateLimit = l.intRange(EnvAPIRateLimit, 1, MaxAPIRateLimit, "requests per minute")
	c.PollInterval = l.duration(EnvPollInterval, MinPollInterval)
	c.ReconcileAfter = l.duration(EnvReconcileAfter, MinReconcileAfter)
	l.events(&c)
	l.secretKey(&c)
	l.logging(&c)
	c.Retention = l.retention(EnvRetention)
	c.RefusedRetention = l.retention(EnvRefusedRetention)
	l.refusedMax(&c)
	l.notify(&c)

	if appURLOK {
		l.decideMode(&c)
	}
	return c, errors.Join(l.errs...)
}

// Override returns a getenv that answers from set first (for the names it
// has, even with an empty value) and from getenv otherwise. It is how
// command-line flags take precedence without a second parser.
func Override(getenv func(string) string, set map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := set[name]; ok {
			return v
		}
		if getenv == nil {
			return ""
		}
		return getenv(name)
	}
}

// appURL reads APP_URL, else NEXT_PUBLIC_APP_URL. It reports false when the
// value was given but unusable (the error is recorded).
func (l *loader) appURL(c *Config) bool {
	name := EnvAppURL
	raw, ok := l.given(EnvAppURL)
	if !ok {
		name = EnvNextPublicAppURL
		raw, ok = l.given(EnvNextPublicAppURL)
	}
	if !ok {
		return true
	}
	norm, want := normalizeAppURL(raw)
	if want != "" {
		l.bad(name, raw, want)
		return false
	}
	c.AppURL, c.AppURLSource = norm, name
	c.WebhookURL = norm + WebhookPath
	c.HSTS = strings.HasPrefix(norm, "https://")
	return true
}

const wantAppURL = "an absolute http(s) URL of this server such as https://trainhook.example.com"

// normalizeAppURL checks an APP_URL value and returns it with scheme and host
// lower-cased and trailing slashes removed, or what was wanted instead.
func normalizeAppURL(raw string) (string, string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "", wantAppURL
	case u.Scheme == "" || u.Opaque != "" && u.Host == "":
		return "", wantAppURL + " (with the scheme https://)"
	case u.Scheme != "http" && u.Scheme != "https":
		return "", wantAppURL + " (http or https, not " + u.Scheme + ")"
	case u.Hostname() == "":
		return "", wantAppURL + " (with a host)"
	case !ascii(u.Host):
		return "", wantAppURL + " (write an internationalised host name in its xn-- form)"
	case u.User != nil:
		return "", wantAppURL + " without user:password@ (deliveries are authenticated by their signature)"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return "", wantAppURL + " without ?query or #fragment (trainhook appends " + WebhookPath + " to it)"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", wantAppURL + " (port 1 to 65535)"
		}
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	if strings.HasSuffix(path, WebhookPath) {
		return "", "the base URL of this server, without " + WebhookPath + " (trainhook appends it)"
	}
	// An IPv6 zone ("[fe80::1%eth0]") comes back unescaped; escape it again.
	host := strings.ReplaceAll(strings.ToLower(u.Host), "%", "%25")
	return strings.ToLower(u.Scheme) + "://" + host + path, ""
}

func (l *loader) webhooks(c *Config) {
	v := strings.ToLower(l.value(EnvWebhooks))
	switch v {
	case WebhooksAuto, WebhooksOn, WebhooksOff:
		c.Webhooks = v
	default:
		l.bad(EnvWebhooks, l.value(EnvWebhooks), "auto, on or off")
		c.Webhooks = WebhooksAuto
	}
}

// decideMode sets WebhookMode and ModeReason from Webhooks and AppURL, and
// checks that webhook mode can verify what it receives.
func (l *loader) decideMode(c *Config) {
	src := c.AppURLSource
	switch c.Webhooks {
	case WebhooksOff:
		c.WebhookMode = false
		c.ModeReason = "TRAINHOOK_WEBHOOKS is off: trainhook will poll for status and give Replicate no webhook URL"
	case WebhooksOn:
		if c.AppURL == "" {
			l.errs = append(l.errs, &Error{Var: EnvWebhooks, Value: c.Webhooks,
				Want: "APP_URL set to this server's public URL as well: webhook mode needs somewhere for Replicate to send webhooks"})
			return
		}
		c.WebhookMode = true
		if why, local := LocalHost(hostOf(c.AppURL)); local {
			c.ModeReason = fmt.Sprintf("%s is %s, which Replicate normally cannot reach%s, but TRAINHOOK_WEBHOOKS=on forces webhook mode: webhooks go to %s, and trainhook polls only to reconcile trainings whose webhook never came",
				src, c.AppURL, paren(why), c.WebhookURL)
		} else {
			c.ModeReason = fmt.Sprintf("%s is %s and TRAINHOOK_WEBHOOKS=on: webhooks go to %s, and trainhook polls only to reconcile trainings whose webhook never came",
				src, c.AppURL, c.WebhookURL)
		}
	default: // auto
		if c.AppURL == "" {
			c.ModeReason = "APP_URL is not set: Replicate has nowhere to send webhooks, so trainhook will poll for status (set APP_URL to your public https URL to receive webhooks)"
			return
		}
		if why, local := LocalHost(hostOf(c.AppURL)); local {
			c.ModeReason = fmt.Sprintf("%s is %s: Replicate cannot reach it%s, so trainhook will poll for status", src, c.AppURL, paren(why))
			return
		}
		if !strings.HasPrefix(c.AppURL, "https://") {
			c.ModeReason = fmt.Sprintf("%s is %s, not https: trainhook gives Replicate only https webhook URLs, so it will poll for status (use https, or set TRAINHOOK_WEBHOOKS=on to force webhooks)", src, c.AppURL)
			return
		}
		c.WebhookMode = true
		c.ModeReason = fmt.Sprintf("%s is %s: webhooks go to %s, and trainhook polls only to reconcile trainings whose webhook never came", src, c.AppURL, c.WebhookURL)
	}
	if c.WebhookMode && len(c.WebhookKeys) == 0 && c.ReplicateToken == "" && !l.badWebhookSecret {
		l.errs = append(l.errs, ErrNoSigningKey)
	}
}

func (l *loader) webhookKeys(c *Config) {
	raw, ok := l.given(EnvWebhookSecret)
	if !ok {
		return
	}
	keys, err := replicate.ParseKeys(raw)
	if err != nil {
		// ParseKeys' messages say which key and what is wrong, never the key.
		l.badSecret(EnvWebhookSecret, "whsec_ keys separated by spaces or commas, as GET https://api.replicate.com/v1/webhooks/default/secret returns them ("+err.Error()+")")
		l.badWebhookSecret = true
		return
	}
	c.WebhookKeys = keys
}

func (l *loader) database(c *Config) {
	raw := l.value(EnvDatabaseURL)
	c.DatabaseURL = raw
	driver, path, want := parseDatabaseURL(raw)
	if want != "" {
		// The value is shown with any password replaced.
		l.bad(EnvDatabaseURL, RedactDatabaseURL(raw), want)
		return
	}
	c.DBDriver, c.DBPath = driver, path
}

const wantDatabase = "a SQLite file path (trainhook.db, sqlite:PATH, sqlite://PATH, file:PATH) or a postgres:// or postgresql:// URL"

// parseDatabaseURL returns the driver and, for SQLite, the file path.
func parseDatabaseURL(raw string) (driver, path, want string) {
	lower := strings.ToLower(raw)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		if _, err := url.Parse(raw); err != nil {
			return "", "", "a valid postgres:// URL (percent-encode special characters in the password)"
		}
		return DriverPostgres, "", ""
	}
	path = raw
	prefixed := false
	for _, p := range []string{"sqlite3://", "sqlite://", "sqlite3:", "sqlite:", "file://", "file:"} {
		if strings.HasPrefix(lower, p) {
			path, prefixed = raw[len(p):], true
			break
		}
	}
	if !prefixed && looksLikeURL(raw) {
		return "", "", wantDatabase
	}
	switch {
	case path == "":
		return "", "", wantDatabase + " (the path is empty)"
	case strings.ContainsAny(path, "?"):
		return "", "", "a SQLite file path without ?options: trainhook sets SQLite's options (WAL, busy timeout) itself"
	case strings.Contains(path, ":memory:") || strings.HasPrefix(path, "file::memory:"):
		return "", "", "a SQLite file path: an in-memory database would lose every record at restart"
	case strings.ContainsRune(path, 0):
		return "", "", wantDatabase
	}
	return DriverSQLite, path, ""
}

// looksLikeURL reports whether s starts with a URL scheme of two or more
// characters ("mysql://", "redis:"), so "C:\x.db" is still a path.
func looksLikeURL(s string) bool {
	i := strings.IndexByte(s, ':')
	if i < 2 {
		return false
	}
	for j := 0; j < i; j++ {
		b := s[j]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z':
		case j > 0 && ('0' <= b && b <= '9' || b == '+' || b == '-' || b == '.'):
		default:
			return false
		}
	}
	return true
}

func (l *loader) listen(c *Config) {
	port, portSet := l.given(EnvPort)
	if portSet {
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 {
			l.bad(EnvPort, port, "a port number from 0 to 65535, such as 8080")
		} else {
			c.Addr = ":" + strconv.Itoa(n)
		}
	}
	addr := l.value(EnvAddr)
	host, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil || n < 0 || n > 65535 || strings.ContainsAny(host, " /") {
		l.bad(EnvAddr, addr, "host:port such as 127.0.0.1:8080, [::1]:8080 or :8080 (all interfaces)")
		return
	}
	if !portSet {
		c.Addr = addr
	}
}

func (l *loader) apiToken(c *Config) {
	v, ok := l.given(EnvAPIToken)
	if !ok {
		return
	}
	if !headerSafe(v) {
		l.badSecret(EnvAPIToken, "a token of printable characters without spaces (it is sent as Authorization: Bearer <token>)")
		return
	}
	if len(v) < MinAPITokenLen {
		l.badSecret(EnvAPIToken, "a random token of at least "+strconv.Itoa(MinAPITokenLen)+" characters, not "+strconv.Itoa(len(v))+"; "+GenerateTokenHint)
		return
	}
	c.APIToken = v
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// headerSafe reports whether s can be sent after "Bearer " in a header.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

const wantOrigins = "comma-separated origins, each scheme://host[:port] with no path, such as https://app.example.com,http://localhost:3000"

func (l *loader) cors(c *Config) {
	raw, ok := l.given(EnvCORSOrigins)
	if !ok {
		return
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item == "*" {
			l.bad(EnvCORSOrigins, raw, wantOrigins+`; "*" is refused because it would let any website's scripts use the management API and read model records from a browser`)
			return
		}
		o, ok := normalizeOrigin(item)
		if !ok {
			l.bad(EnvCORSOrigins, raw, wantOrigins+" ("+quote(item)+" is not one)")
			return
		}
		if !seen[o] {
			seen[o] = true
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
}

// normalizeOrigin returns an origin as browsers send it in the Origin header:
// lower-case scheme and host, no default port, no trailing slash.
func normalizeOrigin(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.User != nil ||
		u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", false
		}
		if !(u.Scheme == "https" && n == 443 || u.Scheme == "http" && n == 80) {
			host += ":" + strconv.Itoa(n)
		}
	}
	return u.Scheme + "://" + host, true
}

func (l *loader) maxBody(c *Config) {
	raw := l.value(EnvMaxBody)
	n, ok := ParseSize(raw)
	switch {
	case !ok:
		l.bad(EnvMaxBody, raw, "a size in bytes such as 10485760 or 10MiB")
	case n < MinMaxBody:
		l.bad(EnvMaxBody, raw, "at least 64KiB (65536 bytes): Replicate's training webhooks carry the whole log and can be several MB")
	case n > MaxMaxBody:
		l.bad(EnvMaxBody, raw, "at most 1GiB (1073741824 bytes)")
	default:
		c.MaxBody = n
	}
}

// ParseSize reads a byte count: digits, optionally followed (with or without
// a space) by a unit: B; KiB, MiB, GiB or K, M, G (powers of 1024); KB, MB,
// GB (powers of 1000). Units ignore case. A count too large for an int64
// returns the int64 maximum, so range checks still fail it.
func ParseSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, false
	}
	var unit int64
	switch strings.ToLower(strings.TrimSpace(s[i:])) {
	case "", "b":
		unit = 1
	case "k", "kib":
		unit = 1 << 10
	case "m", "mib":
		unit = 1 << 20
	case "g", "gib":
		unit = 1 << 30
	case "kb":
		unit = 1e3
	case "mb":
		unit = 1e6
	case "gb":
		unit = 1e9
	default:
		return 0, false
	}
	const maxInt64 = 1<<63 - 1
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > maxInt64/unit {
		return maxInt64, true
	}
	return n * unit, true
}

func (l *loader) replicate(c *Config) {
	if v, ok := l.given(EnvReplicateToken); ok {
		if !headerSafe(v) {
			l.badSecret(EnvReplicateToken, "a Replicate API token (r8_...) without spaces")
		} else {
			c.ReplicateToken = v
		}
	}
	raw := l.value(EnvReplicateBaseURL)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
		l.bad(EnvReplicateBaseURL, redactURL(raw), "an absolute http(s) URL without query, such as "+DefaultReplicateBaseURL+" or http://127.0.0.1:8090/v1 for trainhook fake-replicate")
		return
	}
	c.ReplicateBaseURL = raw
}

func (l *loader) intRange(name string, min, max int, what string) int {
	raw := l.value(name)
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		l.bad(name, raw, fmt.Sprintf("a whole number of %s from %d to %d", what, min, max))
		return 0
	}
	return n
}

func (l *loader) duration(name string, min time.Duration) time.Duration {
	raw := l.value(name)
	d, err := time.ParseDuration(raw)
	if err != nil {
		l.bad(name, raw, fmt.Sprintf("a duration such as 5s, 500ms or 1m (at least %s)", min))
		return 0
	}
	if d < min {
		l.bad(name, raw, fmt.Sprintf("a duration of at least %s", min))
		return 0
	}
	return d
}

// timeouts reads the HTTP server's read and write timeouts. The write
// timeout runs from the end of the headers, so it covers reading the body
// too: one shorter than the read timeout would cut off the answer to a body
// that was read in time.
func (l *loader) timeouts(c *Config) {
	c.ReadTimeout = l.duration(EnvReadTimeout, MinHTTPTimeout)
	c.WriteTimeout = l.duration(EnvWriteTimeout, MinHTTPTimeout)
	if c.ReadTimeout > 0 && c.WriteTimeout > 0 && c.WriteTimeout < c.ReadTimeout {
		l.bad(EnvWriteTimeout, l.value(EnvWriteTimeout), fmt.Sprintf("a duration of at least TRAINHOOK_READ_TIMEOUT (%s): the time to read a request's body counts against the write timeout too", c.ReadTimeout))
	}
}

// eventSet reads a comma-separated list of event names, case-insensitive,
// and returns the set of those given, or the first that is not in known.
func eventSet(raw string, known []string) (asked map[string]bool, unknown string) {
	asked = map[string]bool{}
	for _, e := range strings.Split(raw, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if !slices.Contains(known, e) {
			return nil, e
		}
		asked[e] = true
	}
	return asked, ""
}

func (l *loader) events(c *Config) {
	raw := l.value(EnvWebhookEvents)
	want := "a comma-separated list of start, output, logs, completed that includes completed (trainhook needs the final status)"
	asked, unknown := eventSet(raw, webhookEvents)
	if unknown != "" {
		l.bad(EnvWebhookEvents, raw, want+" ("+quote(unknown)+" is not an event)")
		return
	}
	if !asked["completed"] {
		l.bad(EnvWebhookEvents, raw, want)
		return
	}
	for _, k := range webhookEvents {
		if asked[k] {
			c.WebhookEvents = append(c.WebhookEvents, k)
		}
	}
}

func (l *loader) secretKey(c *Config) {
	v, ok := l.given(EnvSecretKey)
	if !ok {
		return
	}
	if len(v) < MinSecretKeyLen {
		l.badSecret(EnvSecretKey, fmt.Sprintf("at least %d characters, got %d (make one with: openssl rand -base64 32), or leave it unset to keep the key in the database", MinSecretKeyLen, len(v)))
		return
	}
	c.SecretKey = v
}

func (l *loader) logging(c *Config) {
	raw := l.value(EnvLogLevel)
	switch strings.ToLower(raw) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		l.bad(EnvLogLevel, raw, "debug, info, warn or error")
	}
	raw = l.value(EnvLogFormat)
	switch f := strings.ToLower(raw); f {
	case "auto", "json", "text":
		c.LogFormat = f
	default:
		l.bad(EnvLogFormat, raw, "auto, json or text")
	}
}

const wantRetention = "a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever"

// retention reads a retention period: 0 means keep forever.
func (l *loader) retention(name string) time.Duration {
	raw := l.value(name)
	d, ok := ParseRetention(raw)
	switch {
	case !ok:
		l.bad(name, raw, wantRetention)
		return 0
	case d != 0 && d < MinRetention:
		l.bad(name, raw, "at least 1h, or off (or 0) to keep forever: a shorter retention would delete deliveries before anyone could look at them")
		return 0
	case d > MaxRetention:
		l.bad(name, raw, "at most 36500d (100 years), or off to keep forever")
		return 0
	}
	return d
}

// ParseRetention reads a retention period: "off" or a zero ("0", "0d",
// "0s") is 0, keep forever; a whole number of days with d ("30d"); or a Go
// duration ("72h", "90m"). Negative values are refused. A count of days
// too large for a Duration returns the largest Duration.
func ParseRetention(s string) (time.Duration, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "off" || s == "0" {
		return 0, true
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 64)
		if err != nil {
			return 0, false
		}
		const maxDays = uint64(1<<63-1) / uint64(24*time.Hour)
		if n > maxDays {
			return 1<<63 - 1, true
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

func (l *loader) refusedMax(c *Config) {
	raw := l.value(EnvRefusedMax)
	if strings.EqualFold(raw, "off") {
		return
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 || n > MaxRefusedMax {
		l.bad(EnvRefusedMax, raw, fmt.Sprintf("a whole number of deliveries from 0 to %d such as 100000, or off (or 0) for no cap", MaxRefusedMax))
		return
	}
	c.RefusedMax = n
}
