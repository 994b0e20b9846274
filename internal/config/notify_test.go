package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNotifyValid(t *testing.T) {
	c := load(t, map[string]string{
		EnvNotifyURL:            " http://127.0.0.1:3000/api/trainhook , https://app.example.com/hook,http://127.0.0.1:3000/api/trainhook",
		EnvNotifySecret:         key1 + " " + key2,
		EnvNotifyEvents:         "model.canceled, MODEL.TRAINING,model.ready",
		EnvNotifyRetryFor:       "90m",
		EnvNotifyAllowedOrigins: "https://App.Example.com:443,http://localhost:3000",
	})
	n := c.Notify
	if want := []string{"http://127.0.0.1:3000/api/trainhook", "https://app.example.com/hook"}; !reflect.DeepEqual(n.URLs, want) {
		t.Errorf("URLs = %q, want %q", n.URLs, want)
	}
	if len(n.Keys) != 2 {
		t.Errorf("%d keys, want 2", len(n.Keys))
	}
	if want := []string{"model.training", "model.ready", "model.canceled"}; !reflect.DeepEqual(n.Events, want) {
		t.Errorf("Events = %q, want %q (lifecycle order)", n.Events, want)
	}
	if n.RetryFor != 90*time.Minute {
		t.Errorf("RetryFor = %s", n.RetryFor)
	}
	if want := []string{"https://app.example.com", "http://localhost:3000"}; !reflect.DeepEqual(n.AllowedOrigins, want) {
		t.Errorf("AllowedOrigins = %q, want %q", n.AllowedOrigins, want)
	}
	if !n.Wants("model.training") || n.Wants("model.failed") {
		t.Errorf("Wants disagrees with Events %q", n.Events)
	}
	for raw, want := range map[string]bool{
		"https://app.example.com/api/x":      true,
		"https://APP.example.com:443/x?y=1":  true,
		"http://localhost:3000/hook":         true,
		"http://localhost:3001/hook":         false,
		"http://app.example.com/x":           false, // scheme is part of the origin
		"https://u:p@app.example.com/x":      false,
		"https://app.example.com.evil.com/x": false,
		"http://169.254.169.254/latest/meta": false,
		"not a url":                          false,
	} {
		if got := n.OriginAllowed(raw); got != want {
			t.Errorf("OriginAllowed(%q) = %v, want %v", raw, got, want)
		}
	}
	// The secret never reaches the start-up log, only its fingerprint.
	dump := c.LogValue().String()
	if strings.Contains(dump, strings.TrimPrefix(key1, "whsec_")) || !strings.Contains(dump, n.Keys[0].Fingerprint()) {
		t.Errorf("log dump shows the key or misses its fingerprint: %s", dump)
	}
}

func TestNotifyInvalid(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		varName string
		want    string
		hidden  string // must not appear in the error
	}{
		{"ftp url", map[string]string{EnvNotifyURL: "ftp://app.example.com/x", EnvNotifySecret: key1}, EnvNotifyURL, "http:// or https://", ""},
		{"no host", map[string]string{EnvNotifyURL: "https:///x", EnvNotifySecret: key1}, EnvNotifyURL, "with a host", ""},
		{"credentials", map[string]string{EnvNotifyURL: "https://bob:hunter2@app.example.com/x", EnvNotifySecret: key1}, EnvNotifyURL, "without user:password@", "hunter2"},
		{"url without secret", map[string]string{EnvNotifyURL: "https://app.example.com/x"}, EnvNotifySecret, "trainhook notify new-secret", ""},
		{"origins without secret", map[string]string{EnvNotifyAllowedOrigins: "https://app.example.com"}, EnvNotifySecret, "TRAINHOOK_NOTIFY_ALLOWED_ORIGINS", ""},
		{"bad secret", map[string]string{EnvNotifyURL: "https://app.example.com/x", EnvNotifySecret: "whsec_c2hvcnQ="}, EnvNotifySecret, "24 to 64", "c2hvcnQ"},
		{"no prefix", map[string]string{EnvNotifyURL: "https://app.example.com/x", EnvNotifySecret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, EnvNotifySecret, "whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		{"unknown event", map[string]string{EnvNotifyEvents: "model.ready,model.done"}, EnvNotifyEvents, `"model.done" is not one`, ""},
		{"no events", map[string]string{EnvNotifyEvents: ",,"}, EnvNotifyEvents, "at least one", ""},
		{"short retry", map[string]string{EnvNotifyRetryFor: "10s"}, EnvNotifyRetryFor, "at least 1m", ""},
		{"retry not a duration", map[string]string{EnvNotifyRetryFor: "1 day"}, EnvNotifyRetryFor, "a duration", ""},
		{"star origin", map[string]string{EnvNotifyAllowedOrigins: "*", EnvNotifySecret: key1}, EnvNotifyAllowedOrigins, "is not one", ""},
		{"origin with path", map[string]string{EnvNotifyAllowedOrigins: "https://a.example.com/x", EnvNotifySecret: key1}, EnvNotifyAllowedOrigins, "is not one", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env))
			if err == nil {
				t.Fatal("Load accepted it")
			}
			var ce *Error
			found := false
			for _, p := range problems(err) {
				if errors.As(p, &ce) && ce.Var == tc.varName {
					found = true
				}
			}
			if !found || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q: want one about %s saying %q", err, tc.varName, tc.want)
			}
			if tc.hidden != "" && strings.Contains(err.Error(), tc.hidden) {
				t.Errorf("error shows a secret: %q", err)
			}
		})
	}
}
