package config

import (
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// redacted replaces passwords in URLs, as url.URL.Redacted does.
const redacted = "xxxxx"

// LogValue is the configuration for the start-up log, with every secret
// replaced: signing keys by their count and fingerprints, tokens and keys by
// "set" or "unset", and the password in DATABASE_URL by xxxxx.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("app_url", c.AppURL),
		slog.String("app_url_source", c.AppURLSource),
		slog.String("webhook_url", c.WebhookURL),
		slog.String("webhooks", c.Webhooks),
		slog.Bool("webhook_mode", c.WebhookMode),
		slog.String("mode_reason", c.ModeReason),
		slog.String("webhook_keys", describeKeys(c)),
		slog.String("database_url", RedactDatabaseURL(c.DatabaseURL)),
		slog.String("db_driver", c.DBDriver),
		slog.String("db_path", c.DBPath),
		slog.String("addr", c.Addr),
		slog.String("api_token", setOrUnset(c.APIToken)),
		slog.Bool("insecure_open_api", c.InsecureOpenAPI),
		slog.String("allowed_hosts", strings.Join(c.AllowedHosts, ",")),
		slog.String("cors_origins", strings.Join(c.CORSOrigins, ",")),
		slog.Int64("max_body", c.MaxBody),
		slog.Duration("read_timeout", c.ReadTimeout),
		slog.Duration("write_timeout", c.WriteTimeout),
		slog.String("replicate_token", setOrUnset(c.ReplicateToken)),
		slog.String("replicate_base_url", redactURL(c.ReplicateBaseURL)),
		slog.Int("api_rate_limit", c.APIRateLimit),
		slog.Duration("poll_interval", c.PollInterval),
		slog.Duration("reconcile_after", c.ReconcileAfter),
		slog.String("webhook_events", strings.Join(c.WebhookEvents, ",")),
		slog.String("secret_key", setOrUnset(c.SecretKey)),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("log_format", c.LogFormat),
		slog.Bool("hsts", c.HSTS),
		slog.String("retention", describeRetention(c.Retention)),
		slog.String("refused_retention", describeRetention(c.RefusedRetention)),
		slog.Int("refused_max", c.RefusedMax),
		slog.Attr{Key: "notify", Value: c.Notify.LogValue()},
	)
}

// describeRetention shows a retention as days when it is whole days.
func describeRetention(d time.Duration) string {
	switch {
	case d == 0:
		return "off"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

func setOrUnset(s string) string {
	if s == "" {
		return "unset"
	}
	return "set"
}

func describeKeys(c Config) string {
	switch n := len(c.WebhookKeys); n {
	case 0:
		if c.ReplicateToken != "" {
			return "unset (fetched with REPLICATE_API_TOKEN at start-up)"
		}
		return "unset"
	case 1:
		return "set (1 key, fingerprint " + c.WebhookKeys[0].Fingerprint() + ")"
	default:
		return "set (" + strconv.Itoa(n) + " keys, fingerprints " + strings.Join(c.WebhookKeys.Fingerprints(), ", ") + ")"
	}
}

// RedactDatabaseURL returns DATABASE_URL fit for a log line: the password of
// a URL, and any password= query option, become xxxxx. A value that does not
// parse as a URL loses everything between "://" and the last "@".
func RedactDatabaseURL(s string) string {
	if !strings.Contains(s, "://") {
		return s // a SQLite path
	}
	return redactURL(s)
}

// RedactURL returns a URL fit to show (REPLICATE_BASE_URL in /api/status,
// the dashboard and doctor): its password and secret-looking query options
// become xxxxx.
func RedactURL(s string) string { return redactURL(s) }

// redactURL replaces the password in a URL's user information and the
// values of query options named like secrets. It works on the text rather
// than a parsed URL, so a password with an unescaped '/', '?', '#' or '@'
// cannot leak through a mis-parse: user information is taken to end at the
// last '@' (at worst that hides more than the password).
func redactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	if j := strings.LastIndexByte(rest, '@'); j >= 0 {
		user := rest[:j]
		if k := strings.IndexByte(user, ':'); k >= 0 {
			user = user[:k+1] + redacted
		}
		rest = user + rest[j:]
	}
	if q := strings.IndexByte(rest, '?'); q >= 0 {
		query, frag, hasFrag := strings.Cut(rest[q+1:], "#")
		vals, err := url.ParseQuery(query)
		changed := false
		for k := range vals {
			if secretOption(k) {
				vals[k] = []string{redacted}
				changed = true
			}
		}
		switch {
		case err != nil:
			query = redacted
		case changed:
			query = vals.Encode()
		}
		rest = rest[:q+1] + query
		if hasFrag {
			rest += "#" + frag
		}
	}
	return s[:i+3] + rest
}

func secretOption(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "pass") || strings.Contains(n, "secret") || strings.Contains(n, "token") || strings.Contains(n, "key")
}

// String is the redacted dump as key=value pairs. It exists so that printing
// a Config with %v or %+v cannot reveal a secret (a signing key's String
// method returns the key itself).
func (c Config) String() string {
	var b strings.Builder
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := a.Value.String()
		if v == "" || strings.ContainsAny(v, " \"=\t\n") {
			v = strconv.Quote(v)
		}
		b.WriteString(a.Key + "=" + v)
	}
	return b.String()
}

// GoString makes %#v print the redacted dump too.
func (c Config) GoString() string { return "config.Config{" + c.String() + "}" }
