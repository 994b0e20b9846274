package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/apptest"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
)

// The secrets of TestSecretsNeverShown. Each is distinctive, so finding one
// anywhere can only be a leak.
const (
	secretSigningKey = "whsec_U2VjcmV0U2lnbmluZ0tleUJ5dGVzMDEyMzQ1Njc4OWFiY2Q="
	secretAPIToken   = "th-api-token-5ecret-0b4c2a9e7d1f"
	secretRepToken   = "r8_replicate-token-5ecret-7e3a91c4"
	secretTokenKey   = "trainhook-secret-key-5ecret-2f6d8b0a9c1e4"
	secretDBPassword = "db-password-5ecret-9a8b7c"
	// secretBasePassword is in REPLICATE_BASE_URL's user information, as
	// when the API is reached through an authenticating proxy.
	secretBasePassword = "base-url-password-5ecret-41d7e0"
)

// secretForms lists every form in which a secret could be shown: as
// configured, the signing key without its prefix, its decoded bytes (raw,
// hex, base64 in both alphabets), and an Authorization header.
func secretForms(t *testing.T) map[string]string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secretSigningKey, replicate.SecretPrefix))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"signing key":                      secretSigningKey,
		"signing key, base64":              strings.TrimPrefix(secretSigningKey, replicate.SecretPrefix),
		"signing key, base64 unpadded":     strings.TrimRight(strings.TrimPrefix(secretSigningKey, replicate.SecretPrefix), "="),
		"signing key bytes":                string(raw),
		"signing key bytes, hex":           hex.EncodeToString(raw),
		"signing key bytes, base64url":     base64.RawURLEncoding.EncodeToString(raw),
		"API token":                        secretAPIToken,
		"API token, base64":                base64.StdEncoding.EncodeToString([]byte(secretAPIToken)),
		"Replicate token":                  secretRepToken,
		"Replicate token, Bearer":          "Bearer " + secretRepToken,
		"TRAINHOOK_SECRET_KEY":             secretTokenKey,
		"TRAINHOOK_SECRET_KEY, base64":     base64.StdEncoding.EncodeToString([]byte(secretTokenKey)),
		"database password":                secretDBPassword,
		"database password, URL-escaped":   url.QueryEscape(secretDBPassword),
		"REPLICATE_BASE_URL password":      secretBasePassword,
		"signing key, JSON-escaped base64": strings.ReplaceAll(strings.TrimPrefix(secretSigningKey, replicate.SecretPrefix), "+", `\u002b`),
	}
}

// transcript collects everything trainhook shows: logs, answers, errors.
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *transcript) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *transcript) add(label string, b []byte) {
	fmt.Fprintf(s, "\n--- %s\n%s\n", label, b)
}

func (s *transcript) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// check fails the test for every secret form found in what was shown.
func (s *transcript) check(t *testing.T) {
	t.Helper()
	all := s.String()
	if len(all) < 1000 {
		t.Fatalf("the transcript is suspiciously short (%d bytes): nothing was exercised", len(all))
	}
	for name, v := range secretForms(t) {
		if i := strings.Index(all, v); i >= 0 {
			from, to := max(0, i-300), min(len(all), i+len(v)+100)
			t.Errorf("the %s appears in what trainhook showed:\n…%s…", name, all[from:to])
		}
	}
}

// secretsServer runs trainhook in webhook mode against the simulator, which
// signs with secretSigningKey and accepts only secretRepToken, with every log
// line at debug level going to tr.
func secretsServer(t *testing.T, tr *transcript, extra map[string]string) (*app.App, *fakereplicate.Server, func()) {
	t.Helper()
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: secretRepToken, Secret: secretSigningKey, Duration: 700 * time.Millisecond, WebhookRetryWindow: time.Second})
	ln := apptest.Listen(t)
	vars := map[string]string{
		"DATABASE_URL": apptest.Database(t), "ADDR": ln.Addr().String(), "APP_URL": apptest.URL(ln), "TRAINHOOK_WEBHOOKS": "on",
		"REPLICATE_BASE_URL":  strings.Replace(simURL, "://", "://trainhook:"+secretBasePassword+"@", 1),
		"REPLICATE_API_TOKEN": secretRepToken, "REPLICATE_WEBHOOK_SECRET": secretSigningKey,
		"TRAINHOOK_API_TOKEN": secretAPIToken, "TRAINHOOK_SECRET_KEY": secretTokenKey,
		"TRAINHOOK_POLL_INTERVAL": "100ms", "TRAINHOOK_RECONCILE_AFTER": "1s", "TRAINHOOK_LOG_LEVEL": "debug",
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg := apptest.Config(t, vars)
	tr.add("config dump (%v, %+v, %#v)", []byte(fmt.Sprintf("%v\n%+v\n%#v", cfg, cfg, cfg)))
	// The log is buffered: closeLog writes out what is left, after Run.
	log, closeLog := app.NewLogger(cfg, tr)
	srv := apptest.Start(t, apptest.Options{Listener: ln, Env: vars, Log: log})
	return srv.App, sim, func() {
		srv.Stop()
		closeLog()
		sim.Close()
	}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestSecretsNeverShown runs a server with a known signing key, API token,
// Replicate token and token key, uses every surface (deliveries good and
// forged, the API with right and wrong tokens, the dashboard, /metrics,
// /api/status, start-up failures), and finds none of the secrets in
// anything it logged or answered.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	tr := &transcript{}
	a, sim, stop := secretsServer(t, tr, nil)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	defer client.CloseIdleConnections()
	call := func(method, path string, body []byte, h http.Header) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, a.URL+path, bytes.NewReader(body))
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var hdr bytes.Buffer
		_ = resp.Header.Write(&hdr)
		tr.add(fmt.Sprintf("%s %s → %d", method, path, resp.StatusCode), append(hdr.Bytes(), b...))
		return resp.StatusCode, b
	}
	bearer := http.Header{"Authorization": {"Bearer " + secretAPIToken}, "Content-Type": {"application/json"}}

	// Trainings: one succeeds, one fails, one is canceled; the simulator
	// delivers their signed webhooks.
	var ids []string
	for i, dest := range []string{"ok", "fails", "canceled"} {
		code, b := call("POST", "/api/models", []byte(fmt.Sprintf(`{"name":"secret %d","trainer":"%s","destination":"%s/secrets-%s","input":{"steps":10}}`,
			i, fakereplicate.FluxTrainer, fakereplicate.DefaultUsername, dest)), bearer)
		var m struct{ ID, TrainingID string }
		_ = json.Unmarshal(b, &m)
		if code != 201 {
			t.Fatalf("start: %d %s", code, b)
		}
		ids = append(ids, m.ID)
		switch dest {
		case "fails":
			_ = sim.Complete(m.TrainingID, "failed", "CUDA out of memory")
		case "canceled":
			call("POST", "/api/models/"+m.ID+"/cancel", nil, bearer)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			m, err := a.Store.GetModel(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if m.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("model %s is still %s", id, m.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Deliveries: forged, expired, unsigned, malformed, and a good one.
	key, _ := replicate.ParseKey(secretSigningKey)
	other, _ := replicate.ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	body := []byte(`{"id":"secrets-training","status":"succeeded","output":{"version":"a/b:c","weights":"https://x/y.tar"}}`)
	for i, h := range []http.Header{
		hook(key, "msg_s_good", time.Now(), body),
		hook(other, "msg_s_forged", time.Now(), body),
		hook(key, "msg_s_old", time.Now().Add(-time.Hour), body),
		{"Content-Type": {"application/json"}},
		with(hook(key, "msg_s_ct", time.Now(), body), "Content-Type", "text/plain"),
	} {
		call("POST", config.WebhookPath+fmt.Sprintf("?attempt=%d", i), body, h)
	}
	call("POST", config.WebhookPath, []byte("not json"), hook(key, "msg_s_bad", time.Now(), []byte("not json")))
	call("POST", config.WebhookPath+"?model="+ids[0]+"&token=wrong", body, hook(key, "msg_s_tok", time.Now(), body))

	// The API with no token, wrong tokens (one a prefix of the right one),
	// and the right one.
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + secretAPIToken[:10], "Basic " + secretAPIToken[:10]} {
		h := http.Header{}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		call("GET", "/api/models", nil, h)
	}
	for _, path := range []string{"/api/models", "/api/models/" + ids[0], "/api/models/" + ids[1], "/api/status", "/api/deliveries", "/healthz", "/readyz"} {
		call("GET", path, nil, bearer)
	}
	call("POST", "/api/models", []byte(`{"trainer":"nobody/no-such-trainer","destination":"trainhook-sim/x","input":{}}`), bearer)
	call("POST", "/api/models/"+ids[0]+"/cancel", nil, bearer)

	// The dashboard: a wrong sign-in, a right one, then every page.
	_, page := call("GET", "/login", nil, nil)
	csrf := csrfInput.FindSubmatch(page)
	if csrf == nil {
		t.Fatalf("no CSRF field on the sign-in page:\n%s", page)
	}
	form := func(token string) []byte {
		return []byte(url.Values{"token": {token}, "csrf": {string(csrf[1])}, "next": {"/"}}.Encode())
	}
	formH := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	call("POST", "/login", form("not-the-token"), formH)
	if code, b := call("POST", "/login", form(secretAPIToken), formH); code != 200 {
		t.Fatalf("sign in: %d %s", code, b)
	}
	_, list := call("GET", "/deliveries", nil, nil)
	for _, path := range []string{"/", "/models/" + ids[0], "/models/" + ids[1], "/models/new", "/deliveries?verified=false", "/nope"} {
		call("GET", path, nil, nil)
	}
	for _, m := range regexp.MustCompile(`href="(/deliveries/\d+)"`).FindAllSubmatch(list, 5) {
		call("GET", string(m[1]), nil, nil)
	}
	stop()

	// /metrics, on a server without a Replicate token: with one, a scrape
	// deadlocks (TestMetricsScrapeDoesNotHang).
	b, _, stopB := secretsServer(t, tr, map[string]string{"REPLICATE_API_TOKEN": "", "TRAINHOOK_WEBHOOKS": "off"})
	for _, path := range []string{"/metrics", "/api/status"} {
		req, _ := http.NewRequest("GET", b.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+secretAPIToken)
		if resp, err := client.Do(req); err == nil {
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.add("GET "+path+" (no Replicate token)", page)
		}
	}
	stopB()

	tr.check(t)
}

// Start-up failures name the setting at fault, never its secret value.
func TestSecretsNotInStartupErrors(t *testing.T) {
	t.Parallel()
	tr := &transcript{}
	sim, err := fakereplicate.New(fakereplicate.Options{Token: secretRepToken})
	if err != nil {
		t.Fatal(err)
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	base := map[string]string{
		"DATABASE_URL": filepath.Join(t.TempDir(), "secrets.db"), "ADDR": "127.0.0.1:0", "APP_URL": "http://127.0.0.1:9", "TRAINHOOK_WEBHOOKS": "on",
		"REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": secretRepToken, "REPLICATE_WEBHOOK_SECRET": secretSigningKey,
		"TRAINHOOK_API_TOKEN": secretAPIToken, "TRAINHOOK_SECRET_KEY": secretTokenKey, "TRAINHOOK_LOG_LEVEL": "debug",
	}
	for _, c := range []struct {
		name string
		env  map[string]string
	}{
		// The account's key (the simulator's random one) is not the one configured.
		{"signing key not the account's", nil},
		{"Replicate refuses the token", map[string]string{"REPLICATE_API_TOKEN": secretRepToken + "-revoked", "REPLICATE_WEBHOOK_SECRET": ""}},
		{"Replicate unreachable", map[string]string{"REPLICATE_BASE_URL": "http://127.0.0.1:9/v1", "REPLICATE_WEBHOOK_SECRET": ""}},
		{"PostgreSQL unreachable, password in the URL", map[string]string{"DATABASE_URL": "postgres://trainhook:" + secretDBPassword + "@127.0.0.1:9/trainhook?connect_timeout=2", "TRAINHOOK_WEBHOOKS": "off"}},
		{"PostgreSQL password in the options", map[string]string{"DATABASE_URL": "postgres://127.0.0.1:9/trainhook?password=" + secretDBPassword + "&connect_timeout=2", "TRAINHOOK_WEBHOOKS": "off"}},
		{"signing key malformed", map[string]string{"REPLICATE_WEBHOOK_SECRET": secretSigningKey + "!"}},
		{"token key too short", map[string]string{"TRAINHOOK_SECRET_KEY": secretTokenKey[:20]}},
		{"address taken", map[string]string{"ADDR": strings.TrimPrefix(simURL, "http://"), "REPLICATE_WEBHOOK_SECRET": ""}},
	} {
		vars := map[string]string{}
		for k, v := range base {
			vars[k] = v
		}
		for k, v := range c.env {
			vars[k] = v
		}
		cfg, err := config.Load(func(k string) string { return vars[k] })
		if err != nil {
			tr.add(c.name+": config.Load", []byte(err.Error()))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		log, closeLog := app.NewLogger(cfg, tr)
		a, err := app.Start(ctx, cfg, log)
		cancel()
		closeLog()
		if err == nil {
			t.Errorf("%s: started", c.name)
			_ = a.Run(ctx) // ctx is done: Run stops at once and closes everything
			continue
		}
		tr.add(c.name+": app.Start", []byte(err.Error()))
	}
	tr.check(t)
}
