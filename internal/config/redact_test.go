package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// secrets of the redaction tests: each must never appear in any output.
var secretEnv = map[string]string{
	"APP_URL":                  "https://app.example.com",
	"REPLICATE_WEBHOOK_SECRET": key1 + "," + key2,
	"DATABASE_URL":             "postgres://trainhook:pg-pass-Zq81@db.internal:5432/th?sslmode=require&password=query-pass-77",
	"TRAINHOOK_API_TOKEN":      "api-token-Hx93kPq-0123456789abcdefgh",
	"REPLICATE_API_TOKEN":      "r8_replicate-token-Lm42",
	"REPLICATE_BASE_URL":       "https://proxyuser:proxy-pass-Vb7@proxy.example.com/v1",
	"TRAINHOOK_SECRET_KEY":     "secret-key-0123456789abcdefghijklmnopq",
}

// secretTexts are the values, and key bodies, that must not leak.
var secretTexts = []string{
	key1, key2, strings.TrimPrefix(key1, "whsec_"), strings.TrimPrefix(key2, "whsec_"),
	"pg-pass-Zq81", "query-pass-77", "api-token-Hx93kPq-0123456789abcdefgh", "r8_replicate-token-Lm42",
	"proxy-pass-Vb7", "secret-key-0123456789abcdefghijklmnopq",
}

func TestRedactedDump(t *testing.T) {
	c := load(t, secretEnv)

	var jsonOut, textOut bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonOut, nil)).Info("config", "config", c)
	slog.New(slog.NewTextHandler(&textOut, nil)).Info("config", "config", c)
	outputs := map[string]string{
		"json handler": jsonOut.String(),
		"text handler": textOut.String(),
		"LogValue":     c.LogValue().String(),
		"%v":           fmt.Sprintf("%v", c),
		"%+v":          fmt.Sprintf("%+v", c),
		"%#v":          fmt.Sprintf("%#v", c),
		"Sprint":       fmt.Sprint(c),
		"%v pointer":   fmt.Sprintf("%v", &c),
		"String":       c.String(),
	}
	for name, out := range outputs {
		for _, s := range secretTexts {
			if strings.Contains(out, s) {
				t.Errorf("%s output contains secret %q:\n%s", name, s, out)
			}
		}
	}
	dump := jsonOut.String()
	for _, want := range []string{
		`"webhook_keys":"set (2 keys, fingerprints ` + c.WebhookKeys[0].Fingerprint() + ", " + c.WebhookKeys[1].Fingerprint() + `)"`,
		`"database_url":"postgres://trainhook:xxxxx@db.internal:5432/th?password=xxxxx&sslmode=require"`,
		`"api_token":"set"`,
		`"replicate_token":"set"`,
		`"secret_key":"set"`,
		`"replicate_base_url":"https://proxyuser:xxxxx@proxy.example.com/v1"`,
		`"webhook_mode":true`,
		`"max_body":10485760`,
		`"app_url":"https://app.example.com"`,
		`"db_driver":"postgres"`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump lacks %s:\n%s", want, dump)
		}
	}

	c = load(t, nil)
	dump = c.LogValue().String()
	for _, want := range []string{"webhook_keys=unset", "api_token=unset", "replicate_token=unset", "secret_key=unset", "database_url=trainhook.db"} {
		if !strings.Contains(dump, want) {
			t.Errorf("default dump lacks %s: %s", want, dump)
		}
	}
	c = load(t, map[string]string{"REPLICATE_WEBHOOK_SECRET": key1})
	if got, want := describeKeys(c), "set (1 key, fingerprint "+c.WebhookKeys[0].Fingerprint()+")"; got != want {
		t.Errorf("one key: %q, want %q", got, want)
	}
}

// TestErrorsHideSecrets gives each secret variable a bad value that is still
// recognisable and checks that no error message repeats it.
func TestErrorsHideSecrets(t *testing.T) {
	bad := map[string]string{
		"REPLICATE_WEBHOOK_SECRET": "whsec_not-base64-LEAK1!",
		"TRAINHOOK_API_TOKEN":      "LEAK2 with space",
		"REPLICATE_API_TOKEN":      "r8_LEAK3 with space",
		"TRAINHOOK_SECRET_KEY":     "LEAK4-too-short",
		"DATABASE_URL":             "mysql://user:LEAK5@db/x",
		"REPLICATE_BASE_URL":       "ftp://u:LEAK6@x.io/",
	}
	_, err := Load(env(bad))
	if err == nil {
		t.Fatal("no error")
	}
	if n := len(problems(err)); n != len(bad) {
		t.Errorf("%d problems, want %d: %v", n, len(bad), err)
	}
	for i := 1; i <= 6; i++ {
		if leak := fmt.Sprintf("LEAK%d", i); strings.Contains(err.Error(), leak) {
			t.Errorf("error shows %s:\n%v", leak, err)
		}
	}
}

func TestRedactDatabaseURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"trainhook.db", "trainhook.db"},
		{"sqlite:/tmp/x.db", "sqlite:/tmp/x.db"},
		{"postgres://db/th", "postgres://db/th"},
		{"postgres://u@db/th", "postgres://u@db/th"},
		{"postgres://u:p@db/th", "postgres://u:xxxxx@db/th"},
		{"postgres://u:p@ss@db/th", "postgres://u:xxxxx@db/th"},
		{"postgres://u:p/s?s#x@db/th", "postgres://u:xxxxx@db/th"},
		{"postgres://u:p%zz@db/th", "postgres://u:xxxxx@db/th"},
		{"postgres://db/th?sslmode=disable&password=pw", "postgres://db/th?password=xxxxx&sslmode=disable"},
		{"postgres://db/th?sslmode=disable", "postgres://db/th?sslmode=disable"},
		{"postgres://db/th?password=%zz", "postgres://db/th?xxxxx"},
		{"postgresql://u:p@db/th?sslpassword=k#frag", "postgresql://u:xxxxx@db/th?sslpassword=xxxxx#frag"},
	}
	for _, tt := range tests {
		if got := RedactDatabaseURL(tt.in); got != tt.want {
			t.Errorf("RedactDatabaseURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
