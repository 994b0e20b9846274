package app_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/webhook"
)

// doAs sends a request with the Host header set to host ("" keeps the
// server's address) and returns the answer.
func (m *matrixServer) doAs(host, method, path string, body []byte, h http.Header) matrixResponse {
	m.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, m.app.URL+path, rd)
	if err != nil {
		m.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := m.client.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return matrixResponse{resp.StatusCode, resp.Header, b}
}

// The server answers only to its own names: APP_URL's host,
// TRAINHOOK_ALLOWED_HOSTS, loopback names and IP addresses, whatever the
// port. A page that rebinds its own name to this server (DNS rebinding)
// sends that name as Host and is refused, on every route but the probes.
func TestHostMustNameThisServer(t *testing.T) {
	t.Parallel()
	m := startMatrixWith(t, 0, func(v map[string]string) {
		v["APP_URL"] = "https://trainhook.example.com"
		v["TRAINHOOK_ALLOWED_HOSTS"] = "proxy.internal,*.corp.example"
	})
	md := m.register("host-train-a")
	now := time.Now()
	probe := []byte(`{"id":"` + webhook.ProbePrefix + `host","status":"succeeded"}`)
	forA := trainingBody("host-train-a", "succeeded", "")
	auth := api(nil)
	before := m.snapshot()

	for _, host := range []string{"evil.example", "evil.example:8080", "trainhook.example.com.evil.example", "corp.example", "localhost.evil.example", "x"} {
		for _, c := range []struct {
			method, path string
			h            http.Header
			body         []byte
		}{
			{"GET", "/api/models", auth, nil},
			{"POST", "/api/models", auth, []byte(`{"training_id":"host-train-b"}`)},
			{"POST", "/api/models/" + md.ID + "/cancel", auth, nil},
			{"GET", "/", nil, nil},
			{"GET", "/login", nil, nil},
			{"GET", "/metrics", auth, nil},
			{"POST", config.WebhookPath, hook(matrixKey, "msg_host_"+host, now, forA), forA},
		} {
			r := m.doAs(host, c.method, c.path, c.body, c.h)
			if r.code != http.StatusMisdirectedRequest || !strings.Contains(r.message(), `does not answer to the host "`+host+`"`) ||
				!strings.Contains(r.message(), "TRAINHOOK_ALLOWED_HOSTS") {
				t.Errorf("Host %s, %s %s: %d %q, want 421 naming the host and TRAINHOOK_ALLOWED_HOSTS", host, c.method, c.path, r.code, clipText(r.message(), 200))
			}
		}
		// Probes answer whatever the Host: load balancers call them by address.
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := m.doAs(host, "GET", p, nil, nil); r.code != 200 {
				t.Errorf("Host %s, GET %s: %d %s", host, p, r.code, r.body)
			}
		}
	}
	if diff := sameSnapshot(before, m.snapshot()); diff != "" {
		t.Fatalf("a refused request changed the database: %s", diff)
	}

	for _, host := range []string{"", "127.0.0.1", "127.0.0.1:1", "[::1]:8080", "localhost", "LOCALHOST:9", "app.localhost", "10.1.2.3:80",
		"trainhook.example.com", "Trainhook.Example.com:443", "trainhook.example.com.", "proxy.internal", "a.corp.example", "b.a.corp.example"} {
		if r := m.doAs(host, "GET", "/api/models", nil, auth); r.code != 200 {
			t.Errorf("Host %q: %d %s", host, r.code, r.body)
		}
	}
	// Replicate posts to APP_URL: its host is accepted on the webhook route.
	if r := m.doAs("trainhook.example.com", "POST", config.WebhookPath, probe, hook(matrixKey, "msg_host_ok", now, probe)); r.code != 200 || r.message() != "outcome probe" {
		t.Fatalf("webhook to APP_URL's host: %d %s", r.code, r.body)
	}

	// TRAINHOOK_ALLOWED_HOSTS=* answers to any name.
	any := startMatrixWith(t, 0, func(v map[string]string) { v["TRAINHOOK_ALLOWED_HOSTS"] = "*" })
	if r := any.doAs("whatever.example", "GET", "/api/models", nil, auth); r.code != 200 {
		t.Fatalf("TRAINHOOK_ALLOWED_HOSTS=*: %d %s", r.code, r.body)
	}
}

// Without a token (loopback only), a page on another site must not be
// able to drive the API with fetch(..., {mode: 'no-cors'}): browsers mark
// such requests with Sec-Fetch-Site and Origin, and they are refused, as
// is a body that is not JSON. Programs (curl, the CLI) send neither header
// and keep working; so does an origin listed in CORS_ALLOWED_ORIGINS.
func TestCrossOriginRequestsRefused(t *testing.T) {
	t.Parallel()
	m := startMatrixWith(t, 0, func(v map[string]string) {
		v["TRAINHOOK_API_TOKEN"] = ""
		v["CORS_ALLOWED_ORIGINS"] = "https://app.example.com"
	})
	md := m.register("xo-train-a")
	before := m.snapshot()
	start := []byte(`{"trainer":"a/b","destination":"c/d","input":{}}`)
	crossSite := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
	for _, c := range []struct {
		name, path string
		h          http.Header
		body       []byte
		code       int
		msg        string
	}{
		{"no-cors start, text/plain", "/api/models", with(with(crossSite, "Content-Type", "text/plain;charset=UTF-8"), "Sec-Fetch-Mode", "no-cors"), start, 403, "cross-origin request refused"},
		{"cross-site start, JSON", "/api/models", with(crossSite, "Content-Type", "application/json"), start, 403, "cross-origin request refused"},
		{"cross-site cancel, no body", "/api/models/" + md.ID + "/cancel", crossSite, nil, 403, "cross-origin request refused"},
		{"cross-site replay", "/api/deliveries/1/replay", crossSite, nil, 403, "cross-origin request refused"},
		{"Origin only (older browsers)", "/api/models/" + md.ID + "/cancel", http.Header{"Origin": {"https://evil.example"}}, nil, 403, "cross-origin request refused"},
		{"same-site subdomain", "/api/models/" + md.ID + "/cancel", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://x.127.0.0.1.nip.io"}}, nil, 403, "cross-origin request refused"},
		{"same-origin start, text/plain", "/api/models", http.Header{"Sec-Fetch-Site": {"same-origin"}, "Content-Type": {"text/plain"}}, start, 415, "Content-Type must be application/json"},
		{"curl start, form", "/api/models", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, start, 415, "Content-Type must be application/json"},
		{"curl start, no Content-Type", "/api/models", nil, start, 415, "Content-Type must be application/json (got none)"},
	} {
		r := m.do("POST", c.path, bytes.NewReader(c.body), c.h)
		if r.code != c.code || !strings.Contains(r.message(), c.msg) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, r.code, clipText(r.message(), 200), c.code, c.msg)
		}
	}
	if diff := sameSnapshot(before, m.snapshot()); diff != "" {
		t.Fatalf("a refused request changed the database: %s", diff)
	}

	// Trainings another program started on the simulator's account, so that
	// registration's check (made when a request of the budget is free) finds them.
	for _, id := range []string{"xo-train-curl", "xo-train-same", "xo-train-cors"} {
		if err := m.sim.AddTraining(id); err != nil {
			t.Fatal(err)
		}
	}
	// curl with JSON, from this machine, with no token: works.
	if r := m.do("POST", "/api/models", strings.NewReader(`{"training_id":"xo-train-curl"}`), http.Header{"Content-Type": {"application/json"}}); r.code != 201 {
		t.Fatalf("curl with JSON: %d %s", r.code, r.body)
	}
	// The dashboard's own script: same origin.
	if r := m.do("POST", "/api/models", strings.NewReader(`{"training_id":"xo-train-same"}`),
		http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"same-origin"}, "Origin": {m.app.URL}}); r.code != 201 {
		t.Fatalf("same origin: %d %s", r.code, r.body)
	}
	// A web app on an origin in CORS_ALLOWED_ORIGINS.
	r := m.do("POST", "/api/models", strings.NewReader(`{"training_id":"xo-train-cors"}`),
		http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://app.example.com"}})
	if r.code != 201 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("allowed origin: %d %s %v", r.code, r.body, r.header)
	}
	// Reading stays open to cross-site GETs; CORS decides who may read them.
	if r := m.do("GET", "/api/models", nil, crossSite); r.code != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("cross-site GET: %d, Access-Control-Allow-Origin %q", r.code, r.header.Get("Access-Control-Allow-Origin"))
	}
	// The dashboard's forms refuse cross-site posts too.
	if r := m.do("POST", "/models/"+md.ID+"/cancel", strings.NewReader("csrf=x"), with(crossSite, "Content-Type", "application/x-www-form-urlencoded")); r.code != 403 {
		t.Fatalf("cross-site dashboard form: %d %s", r.code, r.body)
	}
}

// Wrong Bearer tokens are answered 401 twenty times a minute per client
// address, then 429 with Retry-After, wherever they are sent: the API,
// /metrics, the dashboard's JSON routes and its sign-in form. Requests
// without a token, and requests with the right one, are never counted.
func TestWrongTokensRateLimited(t *testing.T) {
	t.Parallel()
	m := startMatrix(t, 0)
	right := http.Header{"Authorization": {"Bearer " + matrixAPIToken}}
	wrong := func(i int) http.Header {
		return http.Header{"Authorization": {"Bearer guess-" + strconv.Itoa(i) + strings.Repeat("x", 30)}}
	}
	for range 50 {
		if r := m.do("GET", "/api/models", nil, nil); r.code != 401 {
			t.Fatalf("no token: %d %s", r.code, r.body)
		}
		if r := m.do("GET", "/api/models", nil, right); r.code != 200 {
			t.Fatalf("right token: %d %s", r.code, r.body)
		}
	}
	for i := range 20 {
		path := []string{"/api/models", "/metrics", "/api/deliveries", "/api/status"}[i%4]
		if r := m.do("GET", path, nil, wrong(i)); r.code != 401 || !strings.Contains(r.message(), "wrong API token") {
			t.Fatalf("wrong token %d on %s: %d %s", i+1, path, r.code, r.body)
		}
		if r := m.do("GET", "/api/models", nil, right); i < 19 && r.code != 200 {
			t.Fatalf("right token after %d wrong ones: %d %s", i+1, r.code, r.body)
		}
	}
	for _, path := range []string{"/api/models", "/metrics", "/api/deliveries", "/api/events"} {
		r := m.do("GET", path, nil, wrong(99))
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if r.code != 429 || err != nil || ra < 1 || ra > 60 || !strings.Contains(r.message(), "too many wrong API tokens from this address") {
			t.Fatalf("21st wrong token on %s: %d Retry-After %q %s", path, r.code, r.header.Get("Retry-After"), r.body)
		}
	}
	// Once blocked, even the right token waits: else the 401s and 200s
	// would still tell guesses apart.
	if r := m.do("GET", "/api/models", nil, right); r.code != 429 {
		t.Fatalf("right token while blocked: %d %s", r.code, r.body)
	}
	// The sign-in form counts the same failures.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := browser.Get(m.app.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := csrfInput.FindSubmatch(page)
	if csrf == nil {
		t.Fatalf("no CSRF field on the sign-in page:\n%s", page)
	}
	resp, err = browser.PostForm(m.app.URL+"/login", url.Values{"token": {matrixAPIToken}, "csrf": {string(csrf[1])}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !bytes.Contains(page, []byte("Too many wrong tokens from this address")) {
		t.Fatalf("sign-in while blocked: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// No token at all is not a guess: still a plain 401.
	if r := m.do("GET", "/api/models", nil, nil); r.code != 401 {
		t.Fatalf("no token while blocked: %d %s", r.code, r.body)
	}
}
