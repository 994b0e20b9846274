package config

import (
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Test signing keys: the vectors from REPLICATE.md §5 (not real secrets).
const (
	key1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key2 = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

// env returns a getenv that answers from m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func load(t *testing.T, m map[string]string) Config {
	t.Helper()
	c, err := Load(env(m))
	if err != nil {
		t.Fatalf("Load(%v): %v", m, err)
	}
	return c
}

// problems returns the individual errors Load joined.
func problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestDefaults(t *testing.T) {
	c := load(t, nil)
	want := Config{
		Webhooks:         "auto",
		ModeReason:       "APP_URL is not set: Replicate has nowhere to send webhooks, so trainhook will poll for status (set APP_URL to your public https URL to receive webhooks)",
		DatabaseURL:      "trainhook.db",
		DBDriver:         "sqlite",
		DBPath:           "trainhook.db",
		Addr:             ":8080",
		MaxBody:          10 << 20,
		ReadTimeout:      60 * time.Second,
		WriteTimeout:     60 * time.Second,
		ReplicateBaseURL: "https://api.replicate.com/v1",
		APIRateLimit:     1000,
		PollInterval:     5 * time.Second,
		ReconcileAfter:   10 * time.Minute,
		WebhookEvents:    []string{"start", "completed"},
		LogLevel:         slog.LevelInfo,
		LogFormat:        "auto",
		Retention:        30 * 24 * time.Hour,
		RefusedRetention: 7 * 24 * time.Hour,
		RefusedMax:       100000,
		Notify:           Notify{Events: []string{"model.ready", "model.failed", "model.canceled"}, RetryFor: 24 * time.Hour},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %s\nwant %s", c, want)
	}
	// Blank and whitespace-only values mean "unset" too.
	blank := map[string]string{}
	for _, v := range Vars() {
		blank[v.Name] = "  "
	}
	if c2 := load(t, blank); !reflect.DeepEqual(c2, want) {
		t.Errorf("blank values:\n got %s\nwant %s", c2, want)
	}
}

// TestVarsMatchLoad checks that Vars documents exactly the variables Load
// reads, so the README table and --help cannot miss one.
func TestVarsMatchLoad(t *testing.T) {
	read := map[string]bool{}
	record := func(k string) string { read[k] = true; return "" }
	// Webhook mode with all settings reads everything; so does the default.
	Load(record)
	Load(Override(record, map[string]string{EnvAppURL: "https://a.example.com", EnvWebhooks: "on", EnvPort: "1"}))
	var got, want []string
	for k := range read {
		got = append(got, k)
	}
	for _, v := range Vars() {
		want = append(want, v.Name)
		if v.Description == "" {
			t.Errorf("%s has no description", v.Name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("Load reads %v\nVars lists %v", got, want)
	}
	if n := len(Vars()); n != 31 {
		t.Errorf("len(Vars()) = %d, want 31", n)
	}
}

func TestValidValues(t *testing.T) {
	tests := []struct {
		env  map[string]string
		get  func(Config) any
		want any
	}{
		// APP_URL and NEXT_PUBLIC_APP_URL
		{map[string]string{"APP_URL": "https://app.example.com"}, func(c Config) any { return c.AppURL }, "https://app.example.com"},
		{map[string]string{"APP_URL": "  https://app.example.com/  "}, func(c Config) any { return c.AppURL }, "https://app.example.com"},
		{map[string]string{"APP_URL": "HTTPS://App.Example.COM:8443/Base/"}, func(c Config) any { return c.AppURL }, "https://app.example.com:8443/Base"},
		{map[string]string{"APP_URL": "http://localhost:3000"}, func(c Config) any { return c.AppURLSource }, "APP_URL"},
		{map[string]string{"NEXT_PUBLIC_APP_URL": "http://localhost:3000"}, func(c Config) any { return c.AppURL }, "http://localhost:3000"},
		{map[string]string{"NEXT_PUBLIC_APP_URL": "http://localhost:3000"}, func(c Config) any { return c.AppURLSource }, "NEXT_PUBLIC_APP_URL"},
		{map[string]string{"APP_URL": "http://a.localhost", "NEXT_PUBLIC_APP_URL": "http://b.localhost"}, func(c Config) any { return c.AppURL }, "http://a.localhost"},
		{map[string]string{"APP_URL": " ", "NEXT_PUBLIC_APP_URL": "http://b.localhost"}, func(c Config) any { return c.AppURLSource }, "NEXT_PUBLIC_APP_URL"},
		{map[string]string{"APP_URL": "https://[2001:db8::1]:8443"}, func(c Config) any { return c.AppURL }, "https://[2001:db8::1]:8443"},
		{map[string]string{"APP_URL": "https://x.io/a%20b/"}, func(c Config) any { return c.AppURL }, "https://x.io/a%20b"},
		{map[string]string{"APP_URL": "https://x.io"}, func(c Config) any { return c.HSTS }, true},
		{map[string]string{"APP_URL": "http://x.io"}, func(c Config) any { return c.HSTS }, false},
		// TRAINHOOK_WEBHOOKS
		{map[string]string{"TRAINHOOK_WEBHOOKS": "off"}, func(c Config) any { return c.Webhooks }, "off"},
		{map[string]string{"TRAINHOOK_WEBHOOKS": "OFF"}, func(c Config) any { return c.Webhooks }, "off"},
		{map[string]string{"TRAINHOOK_WEBHOOKS": "Auto"}, func(c Config) any { return c.Webhooks }, "auto"},
		{map[string]string{"TRAINHOOK_WEBHOOKS": "on", "APP_URL": "http://localhost", "REPLICATE_API_TOKEN": "r8_x"}, func(c Config) any { return c.Webhooks }, "on"},
		// REPLICATE_WEBHOOK_SECRET
		{map[string]string{"REPLICATE_WEBHOOK_SECRET": key1}, func(c Config) any { return len(c.WebhookKeys) }, 1},
		{map[string]string{"REPLICATE_WEBHOOK_SECRET": key1 + "," + key2}, func(c Config) any { return len(c.WebhookKeys) }, 2},
		{map[string]string{"REPLICATE_WEBHOOK_SECRET": key1 + " " + key2}, func(c Config) any { return len(c.WebhookKeys) }, 2},
		{map[string]string{"REPLICATE_WEBHOOK_SECRET": " " + key1 + " ,\n" + key2 + ", "}, func(c Config) any { return len(c.WebhookKeys) }, 2},
		// DATABASE_URL
		{map[string]string{"DATABASE_URL": "/var/lib/trainhook/th.db"}, func(c Config) any { return c.DBPath }, "/var/lib/trainhook/th.db"},
		{map[string]string{"DATABASE_URL": "data/th.db"}, func(c Config) any { return c.DBPath }, "data/th.db"},
		{map[string]string{"DATABASE_URL": "sqlite:data/th.db"}, func(c Config) any { return c.DBPath }, "data/th.db"},
		{map[string]string{"DATABASE_URL": "sqlite:/tmp/th.db"}, func(c Config) any { return c.DBPath }, "/tmp/th.db"},
		{map[string]string{"DATABASE_URL": "sqlite://th.db"}, func(c Config) any { return c.DBPath }, "th.db"},
		{map[string]string{"DATABASE_URL": "sqlite:///tmp/th.db"}, func(c Config) any { return c.DBPath }, "/tmp/th.db"},
		{map[string]string{"DATABASE_URL": "sqlite3:///tmp/th.db"}, func(c Config) any { return c.DBPath }, "/tmp/th.db"},
		{map[string]string{"DATABASE_URL": "file:./dev.db"}, func(c Config) any { return c.DBPath }, "./dev.db"},
		{map[string]string{"DATABASE_URL": "file:///tmp/th.db"}, func(c Config) any { return c.DBPath }, "/tmp/th.db"},
		{map[string]string{"DATABASE_URL": "C:\\data\\th.db"}, func(c Config) any { return c.DBPath }, "C:\\data\\th.db"},
		{map[string]string{"DATABASE_URL": "sqlite:th.db"}, func(c Config) any { return c.DBDriver }, "sqlite"},
		{map[string]string{"DATABASE_URL": "sqlite:th.db"}, func(c Config) any { return c.DatabaseURL }, "sqlite:th.db"},
		{map[string]string{"DATABASE_URL": "postgres://u:p@db:5432/th?sslmode=disable"}, func(c Config) any { return c.DBDriver }, "postgres"},
		{map[string]string{"DATABASE_URL": "postgresql://db/th"}, func(c Config) any { return c.DBDriver }, "postgres"},
		{map[string]string{"DATABASE_URL": "POSTGRES://db/th"}, func(c Config) any { return c.DBPath }, ""},
		{map[string]string{"DATABASE_URL": "postgres://u:p@db:5432/th"}, func(c Config) any { return c.DatabaseURL }, "postgres://u:p@db:5432/th"},
		// PORT and ADDR
		{map[string]string{"PORT": "3000"}, func(c Config) any { return c.Addr }, ":3000"},
		{map[string]string{"PORT": "3000", "ADDR": "127.0.0.1:9000"}, func(c Config) any { return c.Addr }, ":3000"},
		{map[string]string{"PORT": "0"}, func(c Config) any { return c.Addr }, ":0"},
		{map[string]string{"ADDR": "127.0.0.1:9000"}, func(c Config) any { return c.Addr }, "127.0.0.1:9000"},
		{map[string]string{"ADDR": "[::1]:9000"}, func(c Config) any { return c.Addr }, "[::1]:9000"},
		{map[string]string{"ADDR": ":9000"}, func(c Config) any { return c.Addr }, ":9000"},
		{map[string]string{"ADDR": "localhost:0"}, func(c Config) any { return c.Addr }, "localhost:0"},
		// TRAINHOOK_API_TOKEN
		{map[string]string{"TRAINHOOK_API_TOKEN": "t0ken-with.symbols_~+/=-0123456789"}, func(c Config) any { return c.APIToken }, "t0ken-with.symbols_~+/=-0123456789"},
		// CORS_ALLOWED_ORIGINS
		{map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com"}, func(c Config) any { return c.CORSOrigins }, []string{"https://app.example.com"}},
		{map[string]string{"CORS_ALLOWED_ORIGINS": " https://App.Example.com/ , http://localhost:3000,,https://app.example.com:443"}, func(c Config) any { return c.CORSOrigins }, []string{"https://app.example.com", "http://localhost:3000"}},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "http://[::1]:5173,http://x.io:80"}, func(c Config) any { return c.CORSOrigins }, []string{"http://[::1]:5173", "http://x.io"}},
		// TRAINHOOK_MAX_BODY
		{map[string]string{"TRAINHOOK_MAX_BODY": "10485760"}, func(c Config) any { return c.MaxBody }, int64(10485760)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "65536"}, func(c Config) any { return c.MaxBody }, int64(65536)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "64KiB"}, func(c Config) any { return c.MaxBody }, int64(65536)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "100KB"}, func(c Config) any { return c.MaxBody }, int64(100000)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "32MiB"}, func(c Config) any { return c.MaxBody }, int64(32 << 20)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "32 mb"}, func(c Config) any { return c.MaxBody }, int64(32e6)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "16M"}, func(c Config) any { return c.MaxBody }, int64(16 << 20)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "1GiB"}, func(c Config) any { return c.MaxBody }, int64(1 << 30)},
		{map[string]string{"TRAINHOOK_MAX_BODY": "1GB"}, func(c Config) any { return c.MaxBody }, int64(1e9)},
		// REPLICATE_API_TOKEN and REPLICATE_BASE_URL
		{map[string]string{"REPLICATE_API_TOKEN": "r8_abc"}, func(c Config) any { return c.ReplicateToken }, "r8_abc"},
		{map[string]string{"REPLICATE_BASE_URL": "http://127.0.0.1:8090"}, func(c Config) any { return c.ReplicateBaseURL }, "http://127.0.0.1:8090"},
		{map[string]string{"REPLICATE_BASE_URL": "https://proxy.example.com/replicate/v1/"}, func(c Config) any { return c.ReplicateBaseURL }, "https://proxy.example.com/replicate/v1/"},
		// TRAINHOOK_API_RATE_LIMIT
		{map[string]string{"TRAINHOOK_API_RATE_LIMIT": "1"}, func(c Config) any { return c.APIRateLimit }, 1},
		{map[string]string{"TRAINHOOK_API_RATE_LIMIT": "3000"}, func(c Config) any { return c.APIRateLimit }, 3000},
		// TRAINHOOK_RETENTION, TRAINHOOK_REFUSED_RETENTION, TRAINHOOK_REFUSED_MAX
		{map[string]string{"TRAINHOOK_RETENTION": "90d"}, func(c Config) any { return c.Retention }, 90 * 24 * time.Hour},
		{map[string]string{"TRAINHOOK_RETENTION": " 90D "}, func(c Config) any { return c.Retention }, 90 * 24 * time.Hour},
		{map[string]string{"TRAINHOOK_RETENTION": "72h"}, func(c Config) any { return c.Retention }, 72 * time.Hour},
		{map[string]string{"TRAINHOOK_RETENTION": "1h"}, func(c Config) any { return c.Retention }, time.Hour},
		{map[string]string{"TRAINHOOK_RETENTION": "off"}, func(c Config) any { return c.Retention }, time.Duration(0)},
		{map[string]string{"TRAINHOOK_RETENTION": "OFF"}, func(c Config) any { return c.Retention }, time.Duration(0)},
		{map[string]string{"TRAINHOOK_RETENTION": "0"}, func(c Config) any { return c.Retention }, time.Duration(0)},
		{map[string]string{"TRAINHOOK_RETENTION": "0d"}, func(c Config) any { return c.Retention }, time.Duration(0)},
		{map[string]string{"TRAINHOOK_RETENTION": "36500d"}, func(c Config) any { return c.Retention }, 36500 * 24 * time.Hour},
		{map[string]string{"TRAINHOOK_REFUSED_RETENTION": "1d"}, func(c Config) any { return c.RefusedRetention }, 24 * time.Hour},
		{map[string]string{"TRAINHOOK_REFUSED_RETENTION": "90m"}, func(c Config) any { return c.RefusedRetention }, 90 * time.Minute},
		{map[string]string{"TRAINHOOK_REFUSED_RETENTION": "off"}, func(c Config) any { return c.RefusedRetention }, time.Duration(0)},
		{map[string]string{"TRAINHOOK_REFUSED_MAX": "500"}, func(c Config) any { return c.RefusedMax }, 500},
		{map[string]string{"TRAINHOOK_REFUSED_MAX": "0"}, func(c Config) any { return c.RefusedMax }, 0},
		{map[string]string{"TRAINHOOK_REFUSED_MAX": "Off"}, func(c Config) any { return c.RefusedMax }, 0},
		// TRAINHOOK_POLL_INTERVAL and TRAINHOOK_RECONCILE_AFTER
		{map[string]string{"TRAINHOOK_POLL_INTERVAL": "100ms"}, func(c Config) any { return c.PollInterval }, 100 * time.Millisecond},
		{map[string]string{"TRAINHOOK_POLL_INTERVAL": "1m30s"}, func(c Config) any { return c.PollInterval }, 90 * time.Second},
		{map[string]string{"TRAINHOOK_RECONCILE_AFTER": "1s"}, func(c Config) any { return c.ReconcileAfter }, time.Second},
		{map[string]string{"TRAINHOOK_RECONCILE_AFTER": "2h"}, func(c Config) any { return c.ReconcileAfter }, 2 * time.Hour},
		// TRAINHOOK_READ_TIMEOUT and TRAINHOOK_WRITE_TIMEOUT
		{map[string]string{"TRAINHOOK_READ_TIMEOUT": "1s"}, func(c Config) any { return c.ReadTimeout }, time.Second},
		{map[string]string{"TRAINHOOK_READ_TIMEOUT": "45s"}, func(c Config) any { return c.WriteTimeout }, 60 * time.Second},
		{map[string]string{"TRAINHOOK_WRITE_TIMEOUT": "5m"}, func(c Config) any { return c.WriteTimeout }, 5 * time.Minute},
		{map[string]string{"TRAINHOOK_READ_TIMEOUT": "2m", "TRAINHOOK_WRITE_TIMEOUT": "2m"}, func(c Config) any { return [2]time.Duration{c.ReadTimeout, c.WriteTimeout} }, [2]time.Duration{2 * time.Minute, 2 * time.Minute}},
		// TRAINHOOK_WEBHOOK_EVENTS
		{map[string]string{"TRAINHOOK_WEBHOOK_EVENTS": "completed"}, func(c Config) any { return c.WebhookEvents }, []string{"completed"}},
		{map[string]string{"TRAINHOOK_WEBHOOK_EVENTS": "completed, logs ,START,output,logs"}, func(c Config) any { return c.WebhookEvents }, []string{"start", "output", "logs", "completed"}},
		// TRAINHOOK_SECRET_KEY
		{map[string]string{"TRAINHOOK_SECRET_KEY": strings.Repeat("k", 32)}, func(c Config) any { return c.SecretKey }, strings.Repeat("k", 32)},
		// TRAINHOOK_LOG_LEVEL and TRAINHOOK_LOG_FORMAT
		{map[string]string{"TRAINHOOK_LOG_LEVEL": "debug"}, func(c Config) any { return c.LogLevel }, slog.LevelDebug},
		{map[string]string{"TRAINHOOK_LOG_LEVEL": "WARN"}, func(c Config) any { return c.LogLevel }, slog.LevelWarn},
		{map[string]string{"TRAINHOOK_LOG_LEVEL": "warning"}, func(c Config) any { return c.LogLevel }, slog.LevelWarn},
		{map[string]string{"TRAINHOOK_LOG_LEVEL": "error"}, func(c Config) any { return c.LogLevel }, slog.LevelError},
		{map[string]string{"TRAINHOOK_LOG_FORMAT": "json"}, func(c Config) any { return c.LogFormat }, "json"},
		{map[string]string{"TRAINHOOK_LOG_FORMAT": "Text"}, func(c Config) any { return c.LogFormat }, "text"},
	}
	for _, tt := range tests {
		m := map[string]string{"REPLICATE_WEBHOOK_SECRET": key1} // for APP_URLs that mean webhook mode
		maps.Copy(m, tt.env)
		c := load(t, m)
		if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Load(%v): got %#v, want %#v", tt.env, got, tt.want)
		}
	}
}

func TestInvalidValues(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string // the whole message of the one problem
	}{
		{map[string]string{"APP_URL": "app.example.com"}, `APP_URL="app.example.com": want an absolute http(s) URL of this server such as https://trainhook.example.com (with the scheme https://)`},
		{map[string]string{"APP_URL": "localhost:8080"}, `APP_URL="localhost:8080": want an absolute http(s) URL of this server such as https://trainhook.example.com (with the scheme https://)`},
		{map[string]string{"APP_URL": "ftp://x.io"}, `APP_URL="ftp://x.io": want an absolute http(s) URL of this server such as https://trainhook.example.com (http or https, not ftp)`},
		{map[string]string{"APP_URL": "https://"}, `APP_URL="https://": want an absolute http(s) URL of this server such as https://trainhook.example.com (with a host)`},
		{map[string]string{"APP_URL": "https://:443/x"}, `APP_URL="https://:443/x": want an absolute http(s) URL of this server such as https://trainhook.example.com (with a host)`},
		{map[string]string{"APP_URL": "https://x.io/?a=1"}, `APP_URL="https://x.io/?a=1": want an absolute http(s) URL of this server such as https://trainhook.example.com without ?query or #fragment (trainhook appends /api/webhooks/replicate/completed to it)`},
		{map[string]string{"APP_URL": "https://x.io/#top"}, `APP_URL="https://x.io/#top": want an absolute http(s) URL of this server such as https://trainhook.example.com without ?query or #fragment (trainhook appends /api/webhooks/replicate/completed to it)`},
		{map[string]string{"APP_URL": "https://u:p@x.io"}, `APP_URL="https://u:p@x.io": want an absolute http(s) URL of this server such as https://trainhook.example.com without user:password@ (deliveries are authenticated by their signature)`},
		{map[string]string{"APP_URL": "https://x.io:99999"}, `APP_URL="https://x.io:99999": want an absolute http(s) URL of this server such as https://trainhook.example.com (port 1 to 65535)`},
		{map[string]string{"APP_URL": "https://x.io/api/webhooks/replicate/completed"}, `APP_URL="https://x.io/api/webhooks/replicate/completed": want the base URL of this server, without /api/webhooks/replicate/completed (trainhook appends it)`},
		{map[string]string{"APP_URL": "https://x .io"}, `APP_URL="https://x .io": want an absolute http(s) URL of this server such as https://trainhook.example.com`},
		{map[string]string{"APP_URL": "https://bücher.example"}, `APP_URL="https://bücher.example": want an absolute http(s) URL of this server such as https://trainhook.example.com (write an internationalised host name in its xn-- form)`},
		{map[string]string{"NEXT_PUBLIC_APP_URL": "nope"}, `NEXT_PUBLIC_APP_URL="nope": want an absolute http(s) URL of this server such as https://trainhook.example.com (with the scheme https://)`},
		{map[string]string{"TRAINHOOK_WEBHOOKS": "yes"}, `TRAINHOOK_WEBHOOKS="yes": want auto, on or off`},
		{map[string]string{"TRAINHOOK_WEBHOOKS": "on"}, `TRAINHOOK_WEBHOOKS="on": want APP_URL set to this server's public URL as well: webhook mode needs somewhere for Replicate to send webhooks`},
		{map[string]string{"REPLICATE_WEBHOOK_SECRET": "C2FVsBQIhrscChlQIMV+b5sSYspob7oD"}, `REPLICATE_WEBHOOK_SECRET (secret, not shown): want whsec_ keys separated by spaces or commas, as GET https://api.replicate.com/v1/webhooks/default/secret returns them (key 1: a signing key starts with "whsec_"; get yours with GET https://api.replicate.com/v1/webhooks/default/secret)`},
		{map[string]string{"REPLICATE_WEBHOOK_SECRET": key1 + ",whsec_c2hvcnQ="}, `REPLICATE_WEBHOOK_SECRET (secret, not shown): want whsec_ keys separated by spaces or commas, as GET https://api.replicate.com/v1/webhooks/default/secret returns them (key 2: signing key decodes to 5 bytes; Replicate's keys are 24 (Standard Webhooks allows 24 to 64))`},
		{map[string]string{"DATABASE_URL": "mysql://root:hunter2@db/th"}, `DATABASE_URL="mysql://root:xxxxx@db/th": want a SQLite file path (trainhook.db, sqlite:PATH, sqlite://PATH, file:PATH) or a postgres:// or postgresql:// URL`},
		{map[string]string{"DATABASE_URL": "redis:6379"}, `DATABASE_URL="redis:6379": want a SQLite file path (trainhook.db, sqlite:PATH, sqlite://PATH, file:PATH) or a postgres:// or postgresql:// URL`},
		{map[string]string{"DATABASE_URL": "sqlite://"}, `DATABASE_URL="sqlite://": want a SQLite file path (trainhook.db, sqlite:PATH, sqlite://PATH, file:PATH) or a postgres:// or postgresql:// URL (the path is empty)`},
		{map[string]string{"DATABASE_URL": "file:th.db?_journal_mode=WAL"}, `DATABASE_URL="file:th.db?_journal_mode=WAL": want a SQLite file path without ?options: trainhook sets SQLite's options (WAL, busy timeout) itself`},
		{map[string]string{"DATABASE_URL": ":memory:"}, `DATABASE_URL=":memory:": want a SQLite file path: an in-memory database would lose every record at restart`},
		{map[string]string{"DATABASE_URL": "postgres://u:p%zz@db/th"}, `DATABASE_URL="postgres://u:xxxxx@db/th": want a valid postgres:// URL (percent-encode special characters in the password)`},
		{map[string]string{"PORT": "http"}, `PORT="http": want a port number from 0 to 65535, such as 8080`},
		{map[string]string{"PORT": "65536"}, `PORT="65536": want a port number from 0 to 65535, such as 8080`},
		{map[string]string{"PORT": "-1"}, `PORT="-1": want a port number from 0 to 65535, such as 8080`},
		{map[string]string{"ADDR": "8080"}, `ADDR="8080": want host:port such as 127.0.0.1:8080, [::1]:8080 or :8080 (all interfaces)`},
		{map[string]string{"ADDR": "localhost:http"}, `ADDR="localhost:http": want host:port such as 127.0.0.1:8080, [::1]:8080 or :8080 (all interfaces)`},
		{map[string]string{"ADDR": "::1:8080"}, `ADDR="::1:8080": want host:port such as 127.0.0.1:8080, [::1]:8080 or :8080 (all interfaces)`},
		{map[string]string{"ADDR": "127.0.0.1:70000"}, `ADDR="127.0.0.1:70000": want host:port such as 127.0.0.1:8080, [::1]:8080 or :8080 (all interfaces)`},
		{map[string]string{"TRAINHOOK_API_TOKEN": "two words"}, `TRAINHOOK_API_TOKEN (secret, not shown): want a token of printable characters without spaces (it is sent as Authorization: Bearer <token>)`},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "*"}, `CORS_ALLOWED_ORIGINS="*": want comma-separated origins, each scheme://host[:port] with no path, such as https://app.example.com,http://localhost:3000; "*" is refused because it would let any website's scripts use the management API and read model records from a browser`},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "https://a.io, *"}, `CORS_ALLOWED_ORIGINS="https://a.io, *": want comma-separated origins, each scheme://host[:port] with no path, such as https://app.example.com,http://localhost:3000; "*" is refused because it would let any website's scripts use the management API and read model records from a browser`},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "https://a.io/app"}, `CORS_ALLOWED_ORIGINS="https://a.io/app": want comma-separated origins, each scheme://host[:port] with no path, such as https://app.example.com,http://localhost:3000 ("https://a.io/app" is not one)`},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "a.io"}, `CORS_ALLOWED_ORIGINS="a.io": want comma-separated origins, each scheme://host[:port] with no path, such as https://app.example.com,http://localhost:3000 ("a.io" is not one)`},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "null"}, `CORS_ALLOWED_ORIGINS="null": want comma-separated origins, each scheme://host[:port] with no path, such as https://app.example.com,http://localhost:3000 ("null" is not one)`},
		{map[string]string{"CORS_ALLOWED_ORIGINS": "chrome-extension://abc"}, `CORS_ALLOWED_ORIGINS="chrome-extension://abc": want comma-separated origins, each scheme://host[:port] with no path, such as https://app.example.com,http://localhost:3000 ("chrome-extension://abc" is not one)`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "ten"}, `TRAINHOOK_MAX_BODY="ten": want a size in bytes such as 10485760 or 10MiB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "1.5MiB"}, `TRAINHOOK_MAX_BODY="1.5MiB": want a size in bytes such as 10485760 or 10MiB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "-1"}, `TRAINHOOK_MAX_BODY="-1": want a size in bytes such as 10485760 or 10MiB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "10 parsecs"}, `TRAINHOOK_MAX_BODY="10 parsecs": want a size in bytes such as 10485760 or 10MiB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "100KiB!"}, `TRAINHOOK_MAX_BODY="100KiB!": want a size in bytes such as 10485760 or 10MiB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "65535"}, `TRAINHOOK_MAX_BODY="65535": want at least 64KiB (65536 bytes): Replicate's training webhooks carry the whole log and can be several MB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "100"}, `TRAINHOOK_MAX_BODY="100": want at least 64KiB (65536 bytes): Replicate's training webhooks carry the whole log and can be several MB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "0"}, `TRAINHOOK_MAX_BODY="0": want at least 64KiB (65536 bytes): Replicate's training webhooks carry the whole log and can be several MB`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "1025MiB"}, `TRAINHOOK_MAX_BODY="1025MiB": want at most 1GiB (1073741824 bytes)`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "99999999999999999999999"}, `TRAINHOOK_MAX_BODY="99999999999999999999999": want at most 1GiB (1073741824 bytes)`},
		{map[string]string{"TRAINHOOK_MAX_BODY": "9999999999999999GiB"}, `TRAINHOOK_MAX_BODY="9999999999999999GiB": want at most 1GiB (1073741824 bytes)`},
		{map[string]string{"REPLICATE_API_TOKEN": "r8_a r8_b"}, `REPLICATE_API_TOKEN (secret, not shown): want a Replicate API token (r8_...) without spaces`},
		{map[string]string{"REPLICATE_BASE_URL": "api.replicate.com"}, `REPLICATE_BASE_URL="api.replicate.com": want an absolute http(s) URL without query, such as https://api.replicate.com/v1 or http://127.0.0.1:8090/v1 for trainhook fake-replicate`},
		{map[string]string{"REPLICATE_BASE_URL": "https://u:pw@proxy.io/v1"}, ``}, // valid: user info allowed, redacted in the dump
		{map[string]string{"REPLICATE_BASE_URL": "https://proxy.io/v1?x=1"}, `REPLICATE_BASE_URL="https://proxy.io/v1?x=1": want an absolute http(s) URL without query, such as https://api.replicate.com/v1 or http://127.0.0.1:8090/v1 for trainhook fake-replicate`},
		{map[string]string{"TRAINHOOK_API_RATE_LIMIT": "0"}, `TRAINHOOK_API_RATE_LIMIT="0": want a whole number of requests per minute from 1 to 3000`},
		{map[string]string{"TRAINHOOK_API_RATE_LIMIT": "3001"}, `TRAINHOOK_API_RATE_LIMIT="3001": want a whole number of requests per minute from 1 to 3000`},
		{map[string]string{"TRAINHOOK_API_RATE_LIMIT": "50/s"}, `TRAINHOOK_API_RATE_LIMIT="50/s": want a whole number of requests per minute from 1 to 3000`},
		{map[string]string{"TRAINHOOK_POLL_INTERVAL": "5"}, `TRAINHOOK_POLL_INTERVAL="5": want a duration such as 5s, 500ms or 1m (at least 100ms)`},
		{map[string]string{"TRAINHOOK_POLL_INTERVAL": "10ms"}, `TRAINHOOK_POLL_INTERVAL="10ms": want a duration of at least 100ms`},
		{map[string]string{"TRAINHOOK_POLL_INTERVAL": "-5s"}, `TRAINHOOK_POLL_INTERVAL="-5s": want a duration of at least 100ms`},
		{map[string]string{"TRAINHOOK_RECONCILE_AFTER": "500ms"}, `TRAINHOOK_RECONCILE_AFTER="500ms": want a duration of at least 1s`},
		{map[string]string{"TRAINHOOK_RECONCILE_AFTER": "ten minutes"}, `TRAINHOOK_RECONCILE_AFTER="ten minutes": want a duration such as 5s, 500ms or 1m (at least 1s)`},
		{map[string]string{"TRAINHOOK_READ_TIMEOUT": "60"}, `TRAINHOOK_READ_TIMEOUT="60": want a duration such as 5s, 500ms or 1m (at least 1s)`},
		{map[string]string{"TRAINHOOK_READ_TIMEOUT": "500ms"}, `TRAINHOOK_READ_TIMEOUT="500ms": want a duration of at least 1s`},
		{map[string]string{"TRAINHOOK_READ_TIMEOUT": "-1s"}, `TRAINHOOK_READ_TIMEOUT="-1s": want a duration of at least 1s`},
		{map[string]string{"TRAINHOOK_WRITE_TIMEOUT": "forever"}, `TRAINHOOK_WRITE_TIMEOUT="forever": want a duration such as 5s, 500ms or 1m (at least 1s)`},
		{map[string]string{"TRAINHOOK_WRITE_TIMEOUT": "0s"}, `TRAINHOOK_WRITE_TIMEOUT="0s": want a duration of at least 1s`},
		{map[string]string{"TRAINHOOK_WRITE_TIMEOUT": "30s"}, `TRAINHOOK_WRITE_TIMEOUT="30s": want a duration of at least TRAINHOOK_READ_TIMEOUT (1m0s): the time to read a request's body counts against the write timeout too`},
		{map[string]string{"TRAINHOOK_WEBHOOK_EVENTS": "start"}, `TRAINHOOK_WEBHOOK_EVENTS="start": want a comma-separated list of start, output, logs, completed that includes completed (trainhook needs the final status)`},
		{map[string]string{"TRAINHOOK_WEBHOOK_EVENTS": ","}, `TRAINHOOK_WEBHOOK_EVENTS=",": want a comma-separated list of start, output, logs, completed that includes completed (trainhook needs the final status)`},
		{map[string]string{"TRAINHOOK_WEBHOOK_EVENTS": "start,done"}, `TRAINHOOK_WEBHOOK_EVENTS="start,done": want a comma-separated list of start, output, logs, completed that includes completed (trainhook needs the final status) ("done" is not an event)`},
		{map[string]string{"TRAINHOOK_SECRET_KEY": "short"}, `TRAINHOOK_SECRET_KEY (secret, not shown): want at least 32 characters, got 5 (make one with: openssl rand -base64 32), or leave it unset to keep the key in the database`},
		{map[string]string{"TRAINHOOK_LOG_LEVEL": "verbose"}, `TRAINHOOK_LOG_LEVEL="verbose": want debug, info, warn or error`},
		{map[string]string{"TRAINHOOK_LOG_LEVEL": "INFO+2"}, `TRAINHOOK_LOG_LEVEL="INFO+2": want debug, info, warn or error`},
		{map[string]string{"TRAINHOOK_LOG_FORMAT": "logfmt"}, `TRAINHOOK_LOG_FORMAT="logfmt": want auto, json or text`},
		{map[string]string{"TRAINHOOK_RETENTION": "30"}, `TRAINHOOK_RETENTION="30": want a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever`},
		{map[string]string{"TRAINHOOK_RETENTION": "1.5d"}, `TRAINHOOK_RETENTION="1.5d": want a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever`},
		{map[string]string{"TRAINHOOK_RETENTION": "-1d"}, `TRAINHOOK_RETENTION="-1d": want a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever`},
		{map[string]string{"TRAINHOOK_RETENTION": "-1h"}, `TRAINHOOK_RETENTION="-1h": want a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever`},
		{map[string]string{"TRAINHOOK_RETENTION": "never"}, `TRAINHOOK_RETENTION="never": want a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever`},
		{map[string]string{"TRAINHOOK_RETENTION": "30m"}, `TRAINHOOK_RETENTION="30m": want at least 1h, or off (or 0) to keep forever: a shorter retention would delete deliveries before anyone could look at them`},
		{map[string]string{"TRAINHOOK_RETENTION": "36501d"}, `TRAINHOOK_RETENTION="36501d": want at most 36500d (100 years), or off to keep forever`},
		{map[string]string{"TRAINHOOK_RETENTION": "99999999999999999999d"}, `TRAINHOOK_RETENTION="99999999999999999999d": want a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever`},
		{map[string]string{"TRAINHOOK_RETENTION": "9999999999d"}, `TRAINHOOK_RETENTION="9999999999d": want at most 36500d (100 years), or off to keep forever`},
		{map[string]string{"TRAINHOOK_REFUSED_RETENTION": "1s"}, `TRAINHOOK_REFUSED_RETENTION="1s": want at least 1h, or off (or 0) to keep forever: a shorter retention would delete deliveries before anyone could look at them`},
		{map[string]string{"TRAINHOOK_REFUSED_RETENTION": "a week"}, `TRAINHOOK_REFUSED_RETENTION="a week": want a retention such as 30d (days), 72h or 90m (a Go duration, at least 1h), or off (or 0) to keep forever`},
		{map[string]string{"TRAINHOOK_REFUSED_MAX": "-1"}, `TRAINHOOK_REFUSED_MAX="-1": want a whole number of deliveries from 0 to 1073741824 such as 100000, or off (or 0) for no cap`},
		{map[string]string{"TRAINHOOK_REFUSED_MAX": "10k"}, `TRAINHOOK_REFUSED_MAX="10k": want a whole number of deliveries from 0 to 1073741824 such as 100000, or off (or 0) for no cap`},
	}
	for _, tt := range tests {
		_, err := Load(env(tt.env))
		if tt.want == "" {
			if err != nil {
				t.Errorf("Load(%v): %v, want no error", tt.env, err)
			}
			continue
		}
		ps := problems(err)
		if len(ps) != 1 {
			t.Errorf("Load(%v): got %d problems (%v), want 1", tt.env, len(ps), err)
			continue
		}
		if got := ps[0].Error(); got != tt.want {
			t.Errorf("Load(%v):\n got %s\nwant %s", tt.env, got, tt.want)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Load(%v): %T is not a *config.Error", tt.env, ps[0])
			continue
		}
		for name := range tt.env {
			if e.Var != name {
				t.Errorf("Load(%v): error names %s", tt.env, e.Var)
			}
		}
	}
}

// Raising only the read timeout above the default write timeout is refused
// by naming the write timeout, the one to raise with it.
func TestWriteTimeoutCoversReadTimeout(t *testing.T) {
	_, err := Load(env(map[string]string{"TRAINHOOK_READ_TIMEOUT": "2m"}))
	var e *Error
	if ps := problems(err); len(ps) != 1 || !errors.As(err, &e) || e.Var != EnvWriteTimeout ||
		!strings.Contains(e.Error(), `TRAINHOOK_WRITE_TIMEOUT="60s": want a duration of at least TRAINHOOK_READ_TIMEOUT (2m0s)`) {
		t.Fatalf("Load: %v", err)
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	_, err := Load(env(map[string]string{
		"APP_URL":                  "nope",
		"TRAINHOOK_MAX_BODY":       "ten",
		"PORT":                     "x",
		"TRAINHOOK_LOG_LEVEL":      "loud",
		"TRAINHOOK_POLL_INTERVAL":  "1ms",
		"TRAINHOOK_WEBHOOK_EVENTS": "start",
		"REPLICATE_WEBHOOK_SECRET": "nope",
	}))
	ps := problems(err)
	var names []string
	for _, p := range ps {
		var e *Error
		if !errors.As(p, &e) {
			t.Fatalf("%v is not a *config.Error", p)
		}
		names = append(names, e.Var)
	}
	want := []string{"APP_URL", "REPLICATE_WEBHOOK_SECRET", "PORT", "TRAINHOOK_MAX_BODY", "TRAINHOOK_POLL_INTERVAL", "TRAINHOOK_WEBHOOK_EVENTS", "TRAINHOOK_LOG_LEVEL"}
	if !slices.Equal(names, want) {
		t.Errorf("problems name %v, want %v (in documentation order)\n%v", names, want, err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("joined message has %d lines, want one per problem:\n%v", n, err)
	}
}

func TestModeDecision(t *testing.T) {
	tests := []struct {
		url     string
		webhook bool
		reason  string // substring of ModeReason
	}{
		{"https://app.example.com", true, "webhooks go to https://app.example.com/api/webhooks/replicate/completed"},
		{"https://app.example.com/", true, "webhooks go to https://app.example.com/api/webhooks/replicate/completed"},
		{"https://app.example.com:8443", true, "webhooks go to https://app.example.com:8443/api/webhooks/replicate/completed"},
		{"https://x.io/app", true, "webhooks go to https://x.io/app/api/webhooks/replicate/completed"},
		{"https://x.io/app///", true, "webhooks go to https://x.io/app/api/webhooks/replicate/completed"},
		{"https://93.184.216.34", true, "webhooks go to"},
		{"https://[2606:4700::1111]", true, "webhooks go to"},
		{"https://trainhook.example.com.", true, "webhooks go to"},
		{"https://localhost.example.com", true, "webhooks go to"},
		{"https://local.example.com", true, "webhooks go to"},
		{"https://100.63.255.255", true, "webhooks go to"},
		{"https://100.128.0.1", true, "webhooks go to"},
		{"https://172.32.0.1", true, "webhooks go to"},
		{"http://app.example.com", false, "APP_URL is http://app.example.com, not https: trainhook gives Replicate only https webhook URLs, so it will poll for status"},
		{"http://localhost:8080", false, "APP_URL is http://localhost:8080: Replicate cannot reach it, so trainhook will poll for status"},
		{"https://localhost", false, "Replicate cannot reach it, so"},
		{"https://LOCALHOST:3000", false, "Replicate cannot reach it, so"},
		{"https://localhost.", false, "Replicate cannot reach it, so"},
		{"https://127.0.0.1", false, "Replicate cannot reach it, so"},
		{"https://127.1.2.3:8443", false, "Replicate cannot reach it, so"},
		{"https://[::1]:8443", false, "Replicate cannot reach it, so"},
		{"https://[::ffff:127.0.0.1]", false, "Replicate cannot reach it, so"},
		{"https://10.1.2.3", false, "10.1.2.3 is a private address"},
		{"https://192.168.1.20:8080", false, "192.168.1.20 is a private address"},
		{"https://172.16.0.5", false, "172.16.0.5 is a private address"},
		{"https://172.31.255.255", false, "172.31.255.255 is a private address"},
		{"https://[::ffff:10.0.0.1]", false, "10.0.0.1 is a private address"},
		{"https://100.64.0.1", false, "100.64.0.1 is a carrier-grade NAT (100.64.0.0/10) address"},
		{"https://100.127.255.254", false, "carrier-grade NAT"},
		{"https://169.254.169.254", false, "169.254.169.254 is a link-local address"},
		{"https://[fe80::1]", false, "fe80::1 is a link-local address"},
		{"https://[fe80::1%25eth0]", false, "is a link-local address"},
		{"https://[fd00::1]", false, "fd00::1 is a private address"},
		{"https://[fc00::1]", false, "fc00::1 is a private address"},
		{"https://0.0.0.0", false, "0.0.0.0 is the unspecified address"},
		{"https://[::]", false, ":: is the unspecified address"},
		{"https://foo.local", false, "foo.local is a .local name"},
		{"https://foo.internal", false, "foo.internal is an .internal name"},
		{"https://gitlab.corp.internal:8443/th", false, ".internal name"},
		{"https://foo.localhost", false, "Replicate cannot reach it, so"},
		{"https://nas.home.arpa", false, ".home.arpa name"},
		{"https://trainhook", false, "trainhook is a single-label name"},
		{"https://127.1", false, "127.1 is not a public host name"},
		{"https://2130706433", false, "single-label"},
	}
	for _, tt := range tests {
		c := load(t, map[string]string{"APP_URL": tt.url, "REPLICATE_WEBHOOK_SECRET": key1})
		if c.WebhookMode != tt.webhook {
			t.Errorf("APP_URL=%s: WebhookMode = %v, want %v (%s)", tt.url, c.WebhookMode, tt.webhook, c.ModeReason)
		}
		if !strings.Contains(c.ModeReason, tt.reason) {
			t.Errorf("APP_URL=%s: ModeReason = %q, want it to contain %q", tt.url, c.ModeReason, tt.reason)
		}
		if !strings.HasSuffix(c.ModeReason, "polls only to reconcile trainings whose webhook never came") && tt.webhook ||
			!strings.Contains(c.ModeReason, "will poll for status") && !tt.webhook {
			t.Errorf("APP_URL=%s: ModeReason %q does not say the mode", tt.url, c.ModeReason)
		}
	}
}

func TestModeReasonExamples(t *testing.T) {
	tests := []struct {
		env  map[string]string
		mode bool
		want string
	}{
		{map[string]string{"APP_URL": "http://localhost:8080"}, false,
			"APP_URL is http://localhost:8080: Replicate cannot reach it, so trainhook will poll for status"},
		{nil, false,
			"APP_URL is not set: Replicate has nowhere to send webhooks, so trainhook will poll for status (set APP_URL to your public https URL to receive webhooks)"},
		{map[string]string{"APP_URL": "https://app.example.com", "REPLICATE_WEBHOOK_SECRET": key1}, true,
			"APP_URL is https://app.example.com: webhooks go to https://app.example.com/api/webhooks/replicate/completed, and trainhook polls only to reconcile trainings whose webhook never came"},
		{map[string]string{"NEXT_PUBLIC_APP_URL": "https://app.example.com", "REPLICATE_API_TOKEN": "r8_x"}, true,
			"NEXT_PUBLIC_APP_URL is https://app.example.com: webhooks go to https://app.example.com/api/webhooks/replicate/completed, and trainhook polls only to reconcile trainings whose webhook never came"},
		{map[string]string{"APP_URL": "http://localhost:8080", "TRAINHOOK_WEBHOOKS": "on", "REPLICATE_WEBHOOK_SECRET": key1}, true,
			"APP_URL is http://localhost:8080, which Replicate normally cannot reach, but TRAINHOOK_WEBHOOKS=on forces webhook mode: webhooks go to http://localhost:8080/api/webhooks/replicate/completed, and trainhook polls only to reconcile trainings whose webhook never came"},
		{map[string]string{"APP_URL": "https://192.168.0.2", "TRAINHOOK_WEBHOOKS": "on", "REPLICATE_WEBHOOK_SECRET": key1}, true,
			"APP_URL is https://192.168.0.2, which Replicate normally cannot reach (192.168.0.2 is a private address), but TRAINHOOK_WEBHOOKS=on forces webhook mode: webhooks go to https://192.168.0.2/api/webhooks/replicate/completed, and trainhook polls only to reconcile trainings whose webhook never came"},
		{map[string]string{"APP_URL": "http://app.example.com", "TRAINHOOK_WEBHOOKS": "on", "REPLICATE_WEBHOOK_SECRET": key1}, true,
			"APP_URL is http://app.example.com and TRAINHOOK_WEBHOOKS=on: webhooks go to http://app.example.com/api/webhooks/replicate/completed, and trainhook polls only to reconcile trainings whose webhook never came"},
		{map[string]string{"APP_URL": "https://app.example.com", "TRAINHOOK_WEBHOOKS": "off"}, false,
			"TRAINHOOK_WEBHOOKS is off: trainhook will poll for status and give Replicate no webhook URL"},
		{map[string]string{"TRAINHOOK_WEBHOOKS": "off"}, false,
			"TRAINHOOK_WEBHOOKS is off: trainhook will poll for status and give Replicate no webhook URL"},
	}
	for _, tt := range tests {
		c := load(t, tt.env)
		if c.WebhookMode != tt.mode || c.ModeReason != tt.want {
			t.Errorf("Load(%v):\n got %v %q\nwant %v %q", tt.env, c.WebhookMode, c.ModeReason, tt.mode, tt.want)
		}
	}
}

func TestWebhookURL(t *testing.T) {
	tests := []struct{ app, want string }{
		{"", ""},
		{"https://x.io", "https://x.io/api/webhooks/replicate/completed"},
		{"https://x.io/", "https://x.io/api/webhooks/replicate/completed"},
		{"https://x.io//", "https://x.io/api/webhooks/replicate/completed"},
		{"https://x.io/app", "https://x.io/app/api/webhooks/replicate/completed"},
		{"https://x.io/app/", "https://x.io/app/api/webhooks/replicate/completed"},
		{"https://x.io/a/b/c/", "https://x.io/a/b/c/api/webhooks/replicate/completed"},
		{"https://x.io:8443/app", "https://x.io:8443/app/api/webhooks/replicate/completed"},
		{"http://localhost:8080", "http://localhost:8080/api/webhooks/replicate/completed"},
		{"http://[::1]:8080/", "http://[::1]:8080/api/webhooks/replicate/completed"},
		{"https://x.io/api", "https://x.io/api/api/webhooks/replicate/completed"},
	}
	for _, tt := range tests {
		c := load(t, map[string]string{"APP_URL": tt.app, "TRAINHOOK_WEBHOOKS": "off"})
		if c.WebhookURL != tt.want {
			t.Errorf("APP_URL=%q: WebhookURL = %q, want %q", tt.app, c.WebhookURL, tt.want)
		}
		if rest, ok := strings.CutPrefix(c.WebhookURL, "https://"); ok && strings.Contains(rest, "//") {
			t.Errorf("APP_URL=%q: WebhookURL %q has a double slash", tt.app, c.WebhookURL)
		}
	}
}

func TestSigningKeyNeeded(t *testing.T) {
	public := "https://app.example.com"
	tests := []struct {
		env  map[string]string
		want bool // ErrNoSigningKey among the problems
	}{
		{map[string]string{"APP_URL": public}, true},
		{map[string]string{"APP_URL": "http://localhost", "TRAINHOOK_WEBHOOKS": "on"}, true},
		{map[string]string{"APP_URL": public, "REPLICATE_WEBHOOK_SECRET": key1}, false},
		{map[string]string{"APP_URL": public, "REPLICATE_API_TOKEN": "r8_x"}, false},
		{map[string]string{"APP_URL": public, "TRAINHOOK_WEBHOOKS": "off"}, false},
		{map[string]string{"APP_URL": "http://localhost"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		_, err := Load(env(tt.env))
		if got := errors.Is(err, ErrNoSigningKey); got != tt.want {
			t.Errorf("Load(%v): needs key = %v, want %v (%v)", tt.env, got, tt.want, err)
		}
	}
	// A key that was given but is wrong is reported once, as itself.
	_, err := Load(env(map[string]string{"APP_URL": public, "REPLICATE_WEBHOOK_SECRET": "whsec_bad"}))
	if ps := problems(err); len(ps) != 1 || errors.Is(err, ErrNoSigningKey) {
		t.Errorf("bad key in webhook mode: %v", err)
	}
	const want = `webhook mode needs a signing key: set REPLICATE_WEBHOOK_SECRET to the key from GET https://api.replicate.com/v1/webhooks/default/secret (curl -s -H "Authorization: Bearer $REPLICATE_API_TOKEN" https://api.replicate.com/v1/webhooks/default/secret), or set REPLICATE_API_TOKEN and trainhook fetches it at start-up`
	if ErrNoSigningKey.Error() != want {
		t.Errorf("ErrNoSigningKey = %q", ErrNoSigningKey)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"1B", 1, true},
		{"2 KiB", 2048, true},
		{"2kib", 2048, true},
		{"2k", 2048, true},
		{"2KB", 2000, true},
		{"3MiB", 3 << 20, true},
		{"3M", 3 << 20, true},
		{"3MB", 3e6, true},
		{"1GiB", 1 << 30, true},
		{"1G", 1 << 30, true},
		{"1GB", 1e9, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"1.5MiB", 0, false},
		{"+5", 0, false},
		{"5 5", 0, false},
		{"5TiB", 0, false},
		{"99999999999999999999", 1<<63 - 1, true},
		{"9223372036854775807GiB", 1<<63 - 1, true},
	}
	for _, tt := range tests {
		got, ok := ParseSize(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLocalHost(t *testing.T) {
	tests := []struct {
		host  string
		local bool
	}{
		{"app.example.com", false},
		{"8.8.8.8", false},
		{"2606:4700::1111", false},
		{"[2606:4700::1111]", false},
		{"localhost", true},
		{"LocalHost", true},
		{"api.localhost", true},
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"::1", true},
		{"[::1]", true},
		{"10.0.0.1", true},
		{"172.16.0.1", true},
		{"172.15.255.255", false},
		{"192.168.0.1", true},
		{"192.169.0.1", false},
		{"100.64.0.0", true},
		{"169.254.1.1", true},
		{"fd12:3456::1", true},
		{"fe80::1", true},
		{"0.0.0.0", true},
		{"::", true},
		{"224.0.0.1", true},
		{"printer.local", true},
		{"db.internal", true},
		{"router.home.arpa", true},
		{"intranet", true},
		{"", true},
		{"example.local.com", false},
	}
	for _, tt := range tests {
		if _, got := LocalHost(tt.host); got != tt.local {
			t.Errorf("LocalHost(%q) = %v, want %v", tt.host, got, tt.local)
		}
	}
}

func TestOverride(t *testing.T) {
	base := env(map[string]string{"ADDR": "127.0.0.1:1", "PORT": "2"})
	get := Override(base, map[string]string{"PORT": "", "TRAINHOOK_LOG_LEVEL": "debug"})
	c := load(t, map[string]string{"ADDR": get("ADDR"), "PORT": get("PORT"), "TRAINHOOK_LOG_LEVEL": get("TRAINHOOK_LOG_LEVEL")})
	if c.Addr != "127.0.0.1:1" || c.LogLevel != slog.LevelDebug {
		t.Errorf("Override: Addr %q LogLevel %v", c.Addr, c.LogLevel)
	}
	if Override(nil, nil)("X") != "" {
		t.Error("Override(nil, nil) answered")
	}
	if _, err := Load(nil); err != nil {
		t.Errorf("Load(nil): %v", err)
	}
}

func TestDocs(t *testing.T) {
	var md, help strings.Builder
	if err := WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := WriteHelp(&help); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(md.String(), "| Variable | Default | Description |\n|---|---|---|\n") {
		t.Errorf("markdown header:\n%s", md.String())
	}
	for _, v := range Vars() {
		if !strings.Contains(md.String(), "| `"+v.Name+"` |") {
			t.Errorf("markdown lacks %s", v.Name)
		}
		if !strings.Contains(help.String(), "\n  "+v.Name) && !strings.HasPrefix(help.String(), "  "+v.Name) {
			t.Errorf("help lacks %s", v.Name)
		}
	}
	if lines := strings.Count(md.String(), "\n"); lines != 2+len(Vars()) {
		t.Errorf("markdown has %d lines, want one row per variable", lines)
	}
	for _, line := range strings.Split(help.String(), "\n") {
		if len(line) > 80 {
			t.Errorf("help line longer than 80 columns: %q", line)
		}
	}
	// Vars returns a copy.
	v := Vars()
	v[0].Name = "CHANGED"
	if Vars()[0].Name == "CHANGED" {
		t.Error("Vars shares its table")
	}
}
