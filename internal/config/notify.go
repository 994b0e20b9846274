package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

// NotifyEvents are the event types trainhook can send to the app, in
// lifecycle order.
var NotifyEvents = []string{"model.training", "model.ready", "model.failed", "model.canceled"}

// DefaultNotifyEvents are the final outcomes: what an app waiting for a model
// needs. model.training is opt-in.
const DefaultNotifyEvents = "model.ready,model.failed,model.canceled"

// MinNotifyRetryFor is the shortest TRAINHOOK_NOTIFY_RETRY_FOR: less would
// give up on a receiver during an ordinary restart.
const MinNotifyRetryFor = time.Minute

// Notify is the TRAINHOOK_NOTIFY_* configuration.
type Notify struct {
	// URLs is TRAINHOOK_NOTIFY_URL: http(s) URLs, no credentials,
	// duplicates removed. Empty: no notifications to configured URLs.
	URLs []string
	// Keys is TRAINHOOK_NOTIFY_SECRET: whsec_ keys; required with URLs or
	// AllowedOrigins. Every key signs each request.
	Keys replicate.Keys
	// Events is TRAINHOOK_NOTIFY_EVENTS, in NotifyEvents order (default
	// model.ready, model.failed, model.canceled).
	Events []string
	// RetryFor is TRAINHOOK_NOTIFY_RETRY_FOR: default 24h, at least 1m.
	RetryFor time.Duration
	// AllowedOrigins is TRAINHOOK_NOTIFY_ALLOWED_ORIGINS: origins a
	// per-model notify_url may point at. Default none.
	AllowedOrigins []string
}

// Enabled reports whether anything may be notified.
func (n Notify) Enabled() bool { return len(n.URLs) > 0 || len(n.AllowedOrigins) > 0 }

// Wants reports whether the event type is to be sent.
func (n Notify) Wants(typ string) bool {
	for _, e := range n.Events {
		if e == typ {
			return true
		}
	}
	return false
}

// OriginAllowed reports whether a per-model notify URL may be used: an
// http(s) URL without credentials whose origin is in AllowedOrigins.
func (n Notify) OriginAllowed(raw string) bool {
	if CheckNotifyURL(raw) != "" {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" {
		return false
	}
	o, ok := normalizeOrigin(u.Scheme + "://" + u.Host)
	if !ok {
		return false
	}
	for _, a := range n.AllowedOrigins {
		if a == o {
			return true
		}
	}
	return false
}

// LogValue shows the settings with the keys replaced by their fingerprints.
func (n Notify) LogValue() slog.Value {
	keys := "unset"
	if len(n.Keys) > 0 {
		keys = fmt.Sprintf("set (%d, fingerprints %s)", len(n.Keys), strings.Join(n.Keys.Fingerprints(), ", "))
	}
	return slog.GroupValue(
		slog.String("urls", strings.Join(n.URLs, ",")),
		slog.String("secret", keys),
		slog.String("events", strings.Join(n.Events, ",")),
		slog.Duration("retry_for", n.RetryFor),
		slog.String("allowed_origins", strings.Join(n.AllowedOrigins, ",")),
	)
}

// CheckNotifyURL says what is wrong with a notification URL, or "" if it
// can be used: absolute http or https with a host, no user:password@ (which
// would end up in logs and the dashboard; the signature is what
// authenticates trainhook) and no fragment.
func CheckNotifyURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "a URL (" + err.Error() + ")"
	case u.Scheme != "http" && u.Scheme != "https":
		return "an http:// or https:// URL"
	case u.Host == "" || u.Hostname() == "":
		return "a URL with a host, such as https://app.example.com/api/trainhook"
	case u.User != nil:
		return "a URL without user:password@ (the request is signed with TRAINHOOK_NOTIFY_SECRET; remove the credentials)"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "a URL without a #fragment"
	}
	return ""
}

func (l *loader) notify(c *Config) {
	n := &c.Notify
	if raw, ok := l.given(EnvNotifyURL); ok {
		seen := map[string]bool{}
		for _, item := range strings.Split(raw, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if why := CheckNotifyURL(item); why != "" {
				// A URL with credentials is not echoed: they would reach the log.
				shown := item
				if u, err := url.Parse(item); err == nil && u.User != nil {
					shown = u.Redacted()
				}
				l.bad(EnvNotifyURL, shown, "comma-separated URLs, each "+why)
				continue
			}
			if !seen[item] {
				seen[item] = true
				n.URLs = append(n.URLs, item)
			}
		}
	}
	if raw, ok := l.given(EnvNotifySecret); ok {
		keys, err := replicate.ParseKeys(raw)
		if err != nil {
			l.badSecret(EnvNotifySecret, "whsec_ keys separated by spaces or commas, each whsec_ and the base64 of 24 to 64 random bytes; make one with: trainhook notify new-secret ("+err.Error()+")")
		} else {
			n.Keys = keys
		}
	} else if _, origins := l.given(EnvNotifyAllowedOrigins); len(n.URLs) > 0 || origins {
		l.badSecret(EnvNotifySecret, "a whsec_ key to sign notifications with, since TRAINHOOK_NOTIFY_URL or TRAINHOOK_NOTIFY_ALLOWED_ORIGINS is set; make one with: trainhook notify new-secret")
	}
	raw := l.value(EnvNotifyEvents)
	asked, unknown := eventSet(raw, NotifyEvents)
	if unknown != "" {
		l.bad(EnvNotifyEvents, raw, "a comma-separated list of "+strings.Join(NotifyEvents, ", ")+" ("+quote(unknown)+" is not one)")
		return
	}
	if len(asked) == 0 {
		l.bad(EnvNotifyEvents, raw, "at least one of "+strings.Join(NotifyEvents, ", "))
	}
	for _, k := range NotifyEvents {
		if asked[k] {
			n.Events = append(n.Events, k)
		}
	}
	n.RetryFor = l.duration(EnvNotifyRetryFor, MinNotifyRetryFor)
	if raw, ok := l.given(EnvNotifyAllowedOrigins); ok {
		seen := map[string]bool{}
		for _, item := range strings.Split(raw, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			o, ok := normalizeOrigin(item)
			if !ok || item == "*" {
				l.bad(EnvNotifyAllowedOrigins, raw, wantOrigins+" ("+quote(item)+" is not one)")
				return
			}
			if !seen[o] {
				seen[o] = true
				n.AllowedOrigins = append(n.AllowedOrigins, o)
			}
		}
	}
}
