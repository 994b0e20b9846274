package config

import (
	"strconv"
	"strings"
)

// MinAPITokenLen is the shortest TRAINHOOK_API_TOKEN accepted: long enough
// that guessing it, even at the rate a server answers, is hopeless.
const MinAPITokenLen = 32

// GenerateTokenHint says how to get a token of the right length.
const GenerateTokenHint = "generate one with: trainhook token new (or: openssl rand -base64 32)"

// allowedHosts reads TRAINHOOK_ALLOWED_HOSTS: host names (no scheme, no
// port), "*.example.com" for every name under example.com, or "*" alone
// for any host.
func (l *loader) allowedHosts(c *Config) {
	raw, ok := l.given(EnvAllowedHosts)
	if !ok {
		return
	}
	const want = "comma-separated host names without scheme or port, such as trainhook.example.com,*.internal.example.com, or * for any"
	seen := map[string]bool{}
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "*" {
			c.AllowedHosts = []string{"*"}
			return
		}
		h := strings.ToLower(strings.TrimSuffix(item, "."))
		if h == "" {
			continue
		}
		if !validHostPattern(h) {
			l.bad(EnvAllowedHosts, raw, want+" ("+quote(strings.TrimSpace(item))+" is not one; the port never matters)")
			return
		}
		if !seen[h] {
			seen[h] = true
			c.AllowedHosts = append(c.AllowedHosts, h)
		}
	}
}

// validHostPattern accepts a DNS name, optionally starting with "*.".
func validHostPattern(h string) bool {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return false
			}
		}
	}
	return true
}

// insecureOpenAPI reads TRAINHOOK_INSECURE_OPEN_API.
func (l *loader) insecureOpenAPI(c *Config) {
	raw, ok := l.given(EnvInsecureOpenAPI)
	if !ok {
		return
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		l.bad(EnvInsecureOpenAPI, raw, "true or false")
		return
	}
	c.InsecureOpenAPI = v
}

// Hosts is every host name the server answers to besides IP addresses and
// loopback names: APP_URL's host and TRAINHOOK_ALLOWED_HOSTS.
func (c Config) Hosts() []string {
	var hs []string
	if h := strings.ToLower(hostOf(c.AppURL)); h != "" {
		hs = append(hs, h)
	}
	return append(hs, c.AllowedHosts...)
}
