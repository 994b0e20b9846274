package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/trainhook/trainhook/internal/apptest"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store/postgres"
)

// doctor runs `trainhook doctor` with the server's configuration changed by
// kv (later values win), and returns its exit code and output.
func (s *stack) doctor(t *testing.T, kv ...string) (int, string) {
	t.Helper()
	env := cleanEnv(append(append([]string{}, s.serverEnv...), kv...)...)
	code, out, errOut := runCLI(t, env, "doctor", "--timeout", "3s")
	if errOut != "" {
		t.Errorf("doctor wrote to stderr: %s", errOut)
	}
	return code, out
}

// checkBlock returns the check whose line starts with mark+" "+title, with
// its indented detail and fix lines.
func checkBlock(t *testing.T, out, mark, title string) string {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, mark+" "+title+":") {
			block := []string{l}
			for _, more := range lines[i+1:] {
				if !strings.HasPrefix(more, "    ") {
					break
				}
				block = append(block, more)
			}
			return strings.Join(block, "\n")
		}
	}
	t.Errorf("no line %q in:\n%s", mark+" "+title, out)
	return ""
}

func expectCheck(t *testing.T, out, mark, title string, wants ...string) {
	t.Helper()
	mustContain(t, mark+" "+title, checkBlock(t, out, mark, title), wants...)
}

// The server's own configuration, with webhook mode forced on a loopback
// APP_URL and the simulator on this machine too: everything works end to
// end, a correct local setup. doctor warns that it is plain http, and
// --strict fails on that.
func testDoctorHealthy(t *testing.T, s *stack) {
	code, out := s.doctor(t)
	if code != 0 {
		t.Fatalf("exit %d: a correct local setup passes with warnings\n%s", code, out)
	}
	expectCheck(t, out, "✔", titleConfig, "the environment is a valid configuration")
	expectCheck(t, out, "⚠", titleHTTPS, "is "+s.srv.url+", not https", "fix: serve trainhook over https")
	expectCheck(t, out, "✔", titlePublic, "127.0.0.1 is a local address, and so is Replicate's API at "+s.simURL)
	expectCheck(t, out, "✔", titleWebhookURL, s.srv.url+"/api/webhooks/replicate/completed")
	expectCheck(t, out, "✔", titleToken, "valid for account trainhook-sim", s.simURL)
	expectCheck(t, out, "✔", titleKey, "1 key, fingerprint")
	expectCheck(t, out, "✔", titleAccountKey, "includes the account's key")
	expectCheck(t, out, "✔", titleReachable, "trainhook's webhook endpoint answered")
	expectCheck(t, out, "✔", titleRedirect, "is answered 200 directly")
	expectCheck(t, out, "✔", titleDelivery, `answered {"outcome":"probe"}`, "nothing was stored")
	expectCheck(t, out, "✔", titleLarge, "a 5.0 MiB delivery was accepted")
	expectCheck(t, out, "✔", titleDatabase, s.db, fmt.Sprintf("schema version %d (up to date)", latestSchema(t, "sqlite")))
	expectCheck(t, out, "✔", titleMode, "webhook mode: APP_URL is "+s.srv.url)
	expectCheck(t, out, "–", titleNotify, "TRAINHOOK_NOTIFY_URL is not set")
	mustContain(t, "summary", out, "12 passed, 1 warning, 0 failed, 1 skipped")
	env := cleanEnv(s.serverEnv...)
	if code, out, _ := runCLI(t, env, "doctor", "--strict", "--timeout", "3s"); code != 1 || !strings.Contains(out, "1 warning") {
		t.Errorf("doctor --strict with a warning: exit %d, want 1\n%s", code, out)
	}
	// The probes were answered without being stored.
	for _, tr := range s.sim.Trainings() {
		if strings.HasPrefix(tr.ID, "trainhook-doctor-") {
			t.Fatal("a probe reached the simulator")
		}
	}
}

func testDoctorJSON(t *testing.T, s *stack) {
	env := cleanEnv(append(append([]string{}, s.serverEnv...), "APP_URL=http://"+apptest.FreeAddr(t))...)
	code, out, _ := runCLI(t, env, "doctor", "--json", "--timeout", "3s")
	var r doctorReport
	if code != 1 || json.Unmarshal([]byte(out), &r) != nil || r.OK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	got := map[string]string{}
	for _, c := range r.Checks {
		got[c.ID] = c.Status
		if c.Status == checkFail && c.Fix == "" {
			t.Errorf("failing check %s has no fix", c.ID)
		}
	}
	want := map[string]string{
		"config": "pass", "app_url": "warn", "public_host": "pass", "webhook_url": "pass", "replicate_token": "pass",
		"signing_key": "pass", "account_key": "pass", "reachable": "fail", "redirect": "skip", "delivery": "skip",
		"large_delivery": "skip", "database": "pass", "notify": "skip", "mode": "pass",
	}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("check %s is %q, want %q", id, got[id], st)
		}
	}
	if r.Failed != 1 || r.Warnings != 1 || r.Skipped != 4 || r.Passed != 8 {
		t.Errorf("counts passed %d, warnings %d, failed %d, skipped %d", r.Passed, r.Warnings, r.Failed, r.Skipped)
	}
}

// An endpoint that redirects POSTs (here a 308 to the real server, as an
// http-to-https or trailing-slash rule would).
func testDoctorRedirect(t *testing.T, s *stack) {
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, s.srv.url+r.URL.Path, http.StatusPermanentRedirect)
	}))
	defer redirect.Close()
	code, out := s.doctor(t, "APP_URL="+redirect.URL)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✔", titleReachable, "answered 308, a redirect to "+s.srv.url)
	expectCheck(t, out, "✘", titleRedirect, "is answered 308, a redirect to "+s.srv.url+"/api/webhooks/replicate/completed",
		"Replicate does not follow redirects", "fix: set APP_URL to "+s.srv.url+",")
	expectCheck(t, out, "–", titleDelivery, "skipped: POST is redirected")
	expectCheck(t, out, "–", titleLarge, "skipped: POST is redirected")
}

// This environment signs with another key than the server verifies with.
func testDoctorWrongKey(t *testing.T, s *stack) {
	other := "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	otherKey, _ := replicate.ParseKey(other)
	serverKey, _ := replicate.ParseKey(secret)
	// Without a Replicate token the configured key is what doctor signs with.
	code, out := s.doctor(t, "REPLICATE_WEBHOOK_SECRET="+other, "REPLICATE_API_TOKEN=")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✘", titleDelivery, "the server refused the signature (401", "another signing key than this environment's (fingerprint "+otherKey.Fingerprint()+")",
		"the server accepts fingerprint(s) "+serverKey.Fingerprint(), "fix: give serve the same REPLICATE_WEBHOOK_SECRET")
	expectCheck(t, out, "–", titleLarge, "skipped: the signed test delivery was not accepted")

	// With the token, doctor sees that the key is not the account's.
	code, out = s.doctor(t, "REPLICATE_WEBHOOK_SECRET="+other)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✘", titleAccountKey, "does not include this account's key (fingerprint "+serverKey.Fingerprint()+")", "fix: set REPLICATE_WEBHOOK_SECRET")
}

// A proxy in front of trainhook refuses bodies over 1 MiB, as nginx's
// client_max_body_size does.
func testDoctorBodyLimit(t *testing.T, s *stack) {
	target, _ := url.Parse(s.srv.url)
	pass := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 1<<20 {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = io.WriteString(w, "<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>")
			return
		}
		pass.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	code, out := s.doctor(t, "APP_URL="+proxy.URL)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✔", titleDelivery, `answered {"outcome":"probe"}`)
	expectCheck(t, out, "✘", titleLarge, "something in front of trainhook refused it as too large (413", "413 Request Entity Too Large", "fix: raise the limit of the proxy", "client_max_body_size")
}

// A proxy that sends its upstream's name as Host (nginx's default
// proxy_set_header Host $proxy_host): the server does not answer to that
// name, and doctor says where to allow it.
func testDoctorProxyHost(t *testing.T, s *stack) {
	target, _ := url.Parse(s.srv.url)
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = "trainhook-upstream:8080"
	}})
	defer proxy.Close()
	code, out := s.doctor(t, "APP_URL="+proxy.URL)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✘", titleDelivery, "trainhook refused the host name it was reached by (421", `does not answer to the host "trainhook-upstream:8080"`,
		"fix: give serve the same APP_URL as here, or add the name in that message to the server's TRAINHOOK_ALLOWED_HOSTS")
}

func testDoctorUnreachable(t *testing.T, s *stack) {
	closed := "http://" + apptest.FreeAddr(t)
	code, out := s.doctor(t, "APP_URL="+closed)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✘", titleReachable, "cannot reach "+closed+"/api/webhooks/replicate/completed from this machine", "connection refused",
		"fix: nothing listens at "+strings.TrimPrefix(closed, "http://")+": is trainhook serve running")
	expectCheck(t, out, "–", titleRedirect, "skipped: the endpoint is not reachable")
	expectCheck(t, out, "–", titleDelivery, "skipped: the endpoint is not reachable")
	expectCheck(t, out, "–", titleLarge, "skipped: the endpoint is not reachable")
}

// Notification URLs: doctor connects to each, sends nothing, and warns of
// one that refuses, saying what happens to its notifications meanwhile.
func testDoctorNotify(t *testing.T, s *stack) {
	const secret = "whsec_dHJhaW5ob29rLWRvY3Rvci1ub3RpZnkyNA=="
	var posts atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { posts.Add(1) }))
	defer app.Close()
	closed := "http://" + apptest.FreeAddr(t) + "/hooks"
	code, out := s.doctor(t, "TRAINHOOK_NOTIFY_URL="+app.URL+"/hooks", "TRAINHOOK_NOTIFY_SECRET="+secret)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✔", titleNotify, "connected to "+app.URL+"/hooks", "events model.ready,model.failed,model.canceled", "fingerprint")
	code, out = s.doctor(t, "TRAINHOOK_NOTIFY_URL="+app.URL+"/hooks,"+closed, "TRAINHOOK_NOTIFY_SECRET="+secret, "TRAINHOOK_NOTIFY_RETRY_FOR=2h")
	if code != 0 {
		t.Fatalf("exit %d: an unreachable notification URL is a warning\n%s", code, out)
	}
	expectCheck(t, out, "⚠", titleNotify, closed+": cannot connect to", "connection refused",
		"fix: start your app or correct TRAINHOOK_NOTIFY_URL", "retried for 2h00m (TRAINHOOK_NOTIFY_RETRY_FOR)")
	if strings.Contains(checkBlock(t, out, "⚠", titleNotify), app.URL+"/hooks:") {
		t.Errorf("the reachable URL is listed among the unreachable:\n%s", out)
	}
	// A URL without its secret is a configuration error, not probed.
	_, out = s.doctor(t, "TRAINHOOK_NOTIFY_URL="+app.URL+"/hooks")
	expectCheck(t, out, "–", titleNotify, "the notification settings are invalid")
	if n := posts.Load(); n != 0 {
		t.Errorf("doctor sent %d requests to the notification URL; it should only connect", n)
	}
}

// The simulator accepts only its own token.
func testDoctorBadToken(t *testing.T, s *stack) {
	code, out := s.doctor(t, "REPLICATE_API_TOKEN=r8_wrong_token")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✘", titleToken, "refused REPLICATE_API_TOKEN", "401", "fix: the token is wrong or revoked", "https://replicate.com/account/api-tokens")
	expectCheck(t, out, "–", titleAccountKey, "skipped: needs a valid REPLICATE_API_TOKEN")
	// The configured key still signs the test delivery.
	expectCheck(t, out, "✔", titleDelivery, `answered {"outcome":"probe"}`)
}

// A password in REPLICATE_BASE_URL (an authenticating proxy) is used, never
// shown: doctor names the server with the password replaced.
func testDoctorBaseURLPassword(t *testing.T, s *stack) {
	const password = "proxy-pass-5ecret-8e1f"
	withPassword := strings.Replace(s.simURL, "://", "://proxy:"+password+"@", 1)
	code, out := s.doctor(t, "REPLICATE_BASE_URL="+withPassword)
	if strings.Contains(out, password) {
		t.Fatalf("doctor showed the password of REPLICATE_BASE_URL (exit %d):\n%s", code, out)
	}
	expectCheck(t, out, "✔", titleToken, "valid for account trainhook-sim", strings.Replace(s.simURL, "://", "://proxy:xxxxx@", 1))
}

func testDoctorInvalidConfig(t *testing.T, s *stack) {
	missing := filepath.Join(t.TempDir(), "not-yet.db")
	code, out := s.doctor(t, "TRAINHOOK_MAX_BODY=ten", "REPLICATE_WEBHOOK_SECRET=whsec_short", "DATABASE_URL="+missing)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "✘", titleConfig, "serve would refuse to start", `TRAINHOOK_MAX_BODY="ten"`, "REPLICATE_WEBHOOK_SECRET (secret, not shown)")
	expectCheck(t, out, "✘", titleKey, "REPLICATE_WEBHOOK_SECRET (secret, not shown)", "fix: set REPLICATE_WEBHOOK_SECRET")
	expectCheck(t, out, "✘", titleDatabase, "there is no database at "+missing, "never creates it", "fix: serve creates it on its first start")
	if strings.Contains(out, "whsec_short") {
		t.Error("doctor printed the signing key")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("doctor created the database file (%v)", err)
	}
}

func testDoctorPollingPostgres(t *testing.T, s *stack) {
	// Nothing listens on port 1: the database check fails and says how to fix it.
	code, out := s.doctor(t, "APP_URL=", "TRAINHOOK_WEBHOOKS=", "DATABASE_URL=postgres://trainhook:s3cretpw@127.0.0.1:1/trainhook")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	expectCheck(t, out, "⚠", titleHTTPS, "APP_URL is not set", "fix: set APP_URL to this server's public https URL")
	expectCheck(t, out, "–", titleReachable, "skipped: APP_URL is not set")
	expectCheck(t, out, "✘", titleDatabase, "connect to PostgreSQL database trainhook@127.0.0.1:1/trainhook", "fix: check DATABASE_URL")
	expectCheck(t, out, "✔", titleMode, "polling mode: APP_URL is not set")
	if strings.Contains(out, "s3cretpw") {
		t.Fatal("doctor printed the database password")
	}
	// A reachable, migrated database passes.
	if url := os.Getenv(pgtest.EnvURL); url != "" {
		db := pgtest.URL(t)
		st, err := postgres.Open(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		_, out = s.doctor(t, "APP_URL=", "TRAINHOOK_WEBHOOKS=", "DATABASE_URL="+db)
		expectCheck(t, out, "✔", titleDatabase, fmt.Sprintf("PostgreSQL, schema version %d (up to date)", latestSchema(t, "postgres")))
	}
}

// A correct polling setup for local development (no APP_URL) passes with a
// warning, and --strict fails it.
func testDoctorPollingLocal(t *testing.T, s *stack) {
	code, out := s.doctor(t, "APP_URL=", "TRAINHOOK_WEBHOOKS=")
	if code != 0 || strings.Contains(out, "✘") {
		t.Fatalf("exit %d, want 0 with no failed check:\n%s", code, out)
	}
	expectCheck(t, out, "⚠", titleHTTPS, "APP_URL is not set", "polls for status")
	expectCheck(t, out, "✔", titleMode, "polling mode")
	env := cleanEnv(append(append([]string{}, s.serverEnv...), "APP_URL=", "TRAINHOOK_WEBHOOKS=")...)
	if code, out, _ := runCLI(t, env, "doctor", "--strict"); code != 1 {
		t.Errorf("--strict: exit %d, want 1\n%s", code, out)
	}
}

// A local APP_URL is a warning in polling mode, fine when Replicate's API
// is on this machine too (the simulator), and a failure when webhook mode
// is forced on against the real Replicate, which cannot reach it.
func TestDoctorLocalAddressSeverity(t *testing.T) {
	for _, c := range []struct {
		base    string
		webhook bool
		want    string
	}{
		{"http://127.0.0.1:9999/v1", true, checkPass},
		{"https://api.replicate.com/v1", false, checkWarn},
		{"https://api.replicate.com/v1", true, checkFail},
	} {
		d := newDoctor(func(string) string { return "" }, time.Second)
		d.cfg.ReplicateBaseURL, d.cfg.WebhookMode = c.base, c.webhook
		d.localHost("public_host", "127.0.0.1 is a local address", "consequence", "fix")
		if got := d.checks[0].Status; got != c.want {
			t.Errorf("Replicate at %s, webhook mode %v: %s, want %s", c.base, c.webhook, got, c.want)
		}
	}
}

// latestSchema is the newest migration of a store, counted from its files,
// so this test follows new migrations without being edited.
func latestSchema(t *testing.T, store string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "internal", "store", store, "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations of %s found: %v", store, err)
	}
	return len(files)
}
