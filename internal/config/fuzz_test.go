package config

import (
	"strings"
	"testing"
)

// FuzzLoad feeds Load an environment written as NAME=value lines and checks
// that it never panics and that what it accepts holds together.
//
//	go test -run '^$' -fuzz FuzzLoad ./internal/config
func FuzzLoad(f *testing.F) {
	f.Add("APP_URL=https://app.example.com/\nREPLICATE_WEBHOOK_SECRET=" + key1)
	f.Add("APP_URL=http://localhost:8080\nTRAINHOOK_MAX_BODY=10MiB\nPORT=3000")
	f.Add("NEXT_PUBLIC_APP_URL=https://[fd00::1]:8443/app\nTRAINHOOK_WEBHOOKS=on\nREPLICATE_API_TOKEN=r8_x")
	f.Add("DATABASE_URL=postgres://u:p@db/th?sslmode=disable\nCORS_ALLOWED_ORIGINS=https://a.io,http://localhost:3000")
	f.Add("TRAINHOOK_WEBHOOK_EVENTS=start,logs,completed\nTRAINHOOK_POLL_INTERVAL=250ms\nTRAINHOOK_LOG_LEVEL=debug")
	f.Fuzz(func(t *testing.T, text string) {
		m := map[string]string{}
		for _, line := range strings.Split(text, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				m[k] = v
			}
		}
		c, err := Load(env(m))
		_ = c.LogValue().String() // must not panic either
		_ = c.String()
		for _, name := range []string{EnvWebhookSecret, EnvAPIToken, EnvReplicateToken, EnvSecretKey} {
			v := strings.TrimSpace(m[name])
			if len(v) < 8 || coincidence(m, name, v) {
				continue
			}
			if err != nil && strings.Contains(err.Error(), v) {
				t.Fatalf("error shows %s: %v", name, err)
			}
			if strings.Contains(c.String(), v) {
				t.Fatalf("dump shows %s: %s", name, c)
			}
		}
		if err != nil {
			return
		}
		if c.MaxBody < MinMaxBody || c.MaxBody > MaxMaxBody {
			t.Fatalf("MaxBody %d out of range", c.MaxBody)
		}
		if c.DBDriver != DriverSQLite && c.DBDriver != DriverPostgres || (c.DBDriver == DriverSQLite) == (c.DBPath == "") {
			t.Fatalf("DBDriver %q DBPath %q", c.DBDriver, c.DBPath)
		}
		if c.Addr == "" || c.ModeReason == "" || c.LogFormat == "" {
			t.Fatalf("empty Addr %q, ModeReason %q or LogFormat %q", c.Addr, c.ModeReason, c.LogFormat)
		}
		if c.WebhookMode && (c.WebhookURL == "" || len(c.WebhookKeys) == 0 && c.ReplicateToken == "") {
			t.Fatalf("webhook mode without URL or key: %s", c)
		}
		if (c.AppURL == "") != (c.WebhookURL == "") || c.WebhookURL != "" && c.WebhookURL != c.AppURL+WebhookPath {
			t.Fatalf("AppURL %q WebhookURL %q", c.AppURL, c.WebhookURL)
		}
		if strings.HasSuffix(c.AppURL, "/") {
			t.Fatalf("AppURL %q ends with a slash", c.AppURL)
		}
		if len(c.WebhookEvents) == 0 || c.WebhookEvents[len(c.WebhookEvents)-1] != "completed" {
			t.Fatalf("WebhookEvents %v", c.WebhookEvents)
		}
		for _, o := range c.CORSOrigins {
			if o == "*" || strings.Count(o, "/") != 2 {
				t.Fatalf("CORS origin %q", o)
			}
		}
		again, err := Load(env(m))
		if err != nil || again.String() != c.String() {
			t.Fatalf("Load is not deterministic: %v", err)
		}
	})
}

// coincidence reports whether v, the value of the secret variable name,
// would show up in Load's output even if that variable held something else:
// because another variable holds it, or because a message's own words
// contain it ("CATE_WEBHOOK_SEC"). Then seeing it is not a leak.
func coincidence(m map[string]string, name, v string) bool {
	for k, x := range m {
		if k != name && strings.Contains(x, v) {
			return true
		}
	}
	for _, alt := range []string{"", "\x00"} {
		m2 := map[string]string{}
		for k, x := range m {
			m2[k] = x
		}
		m2[name] = alt
		c, err := Load(env(m2))
		if err != nil && strings.Contains(err.Error(), v) || strings.Contains(c.String(), v) {
			return true
		}
	}
	return false
}
