package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAPITokenLength(t *testing.T) {
	for _, c := range []struct {
		token string
		ok    bool
	}{
		{strings.Repeat("a", 31), false},
		{"s3cret", false},
		{strings.Repeat("a", 32), true},
		{strings.Repeat("Zz9-", 16), true},
	} {
		cfg, err := Load(env(map[string]string{"TRAINHOOK_API_TOKEN": c.token}))
		if c.ok {
			if err != nil || cfg.APIToken != c.token {
				t.Errorf("%d characters: %v", len(c.token), err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("%d characters: accepted", len(c.token))
		}
		msg := err.Error()
		for _, want := range []string{"TRAINHOOK_API_TOKEN (secret, not shown)", "at least 32 characters", "trainhook token new"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%d characters: %q does not say %q", len(c.token), msg, want)
			}
		}
		if strings.Contains(msg, c.token) {
			t.Errorf("the error shows the token: %s", msg)
		}
	}
}

func TestAllowedHosts(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want []string
	}{
		{"", nil},
		{"Trainhook.Example.com", []string{"trainhook.example.com"}},
		{" a.example.com , *.corp.example.com,a.example.com,, b.", []string{"a.example.com", "*.corp.example.com", "b"}},
		{"a.example.com,*", []string{"*"}},
		{"trainhook_web", []string{"trainhook_web"}},
	} {
		cfg, err := Load(env(map[string]string{"TRAINHOOK_ALLOWED_HOSTS": c.raw}))
		if err != nil || !slices.Equal(cfg.AllowedHosts, c.want) {
			t.Errorf("%q: %v %v, want %v", c.raw, cfg.AllowedHosts, err, c.want)
		}
	}
	for _, bad := range []string{"https://a.example.com", "a.example.com:8080", "a.example.com/x", "*.", "a..b", "-a.com", "a b", "[::1]", "*a.com"} {
		_, err := Load(env(map[string]string{"TRAINHOOK_ALLOWED_HOSTS": bad}))
		if err == nil || !strings.Contains(err.Error(), "TRAINHOOK_ALLOWED_HOSTS=") || !strings.Contains(err.Error(), "the port never matters") {
			t.Errorf("%q: %v, want an error naming the variable", bad, err)
		}
	}
	cfg, err := Load(env(map[string]string{"APP_URL": "https://Th.Example.com:8443/app", "TRAINHOOK_WEBHOOKS": "off", "TRAINHOOK_ALLOWED_HOSTS": "proxy.internal"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Hosts(); !slices.Equal(got, []string{"th.example.com", "proxy.internal"}) {
		t.Errorf("Hosts() = %v", got)
	}
}

func TestInsecureOpenAPI(t *testing.T) {
	for raw, want := range map[string]bool{"": false, "true": true, "1": true, "false": false, "FALSE": false} {
		cfg, err := Load(env(map[string]string{"TRAINHOOK_INSECURE_OPEN_API": raw}))
		if err != nil || cfg.InsecureOpenAPI != want {
			t.Errorf("%q: %v %v, want %v", raw, cfg.InsecureOpenAPI, err, want)
		}
	}
	if _, err := Load(env(map[string]string{"TRAINHOOK_INSECURE_OPEN_API": "yes please"})); err == nil || !strings.Contains(err.Error(), `TRAINHOOK_INSECURE_OPEN_API="yes please": want true or false`) {
		t.Errorf("yes please: %v", err)
	}
}
