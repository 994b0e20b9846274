package web_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/trainhook/trainhook/internal/web"
)

const apiToken = "dashboard-token-for-tests-0123456789"

func TestSignInAndOut(t *testing.T) {
	t.Parallel()
	s := start(t, map[string]string{"TRAINHOOK_API_TOKEN": apiToken})
	m := s.register("portrait", "train-auth")

	t.Run("pages ask for the token", func(t *testing.T) {
		for _, path := range []string{"/", "/models/" + m.ID, "/deliveries", "/models/new", "/nowhere"} {
			r := s.do(newClient(), "GET", path, nil, nil)
			if r.code != http.StatusSeeOther || r.header.Get("Location") != "/login?next="+url.QueryEscape(path) {
				t.Errorf("%s: %d %v", path, r.code, r.header.Get("Location"))
			}
			if strings.Contains(r.body, "portrait") {
				t.Errorf("%s leaked a model name before sign-in", path)
			}
		}
	})
	t.Run("API refuses without token or session", func(t *testing.T) {
		for _, h := range []http.Header{nil, {"Authorization": {"Bearer wrong"}}, {"Authorization": {"Basic " + apiToken}}} {
			for _, path := range []string{"/api/deliveries", "/api/events", "/api/deliveries/1"} {
				r := s.do(newClient(), "GET", path, nil, h)
				if r.code != 401 || r.header.Get("WWW-Authenticate") == "" || !strings.Contains(r.body, "TRAINHOOK_API_TOKEN") {
					t.Errorf("%s %v: %d %s", path, h, r.code, r.body)
				}
			}
		}
		r := s.do(newClient(), "POST", "/api/deliveries/1/replay", nil, nil)
		if r.code != 401 {
			t.Errorf("replay without auth: %d", r.code)
		}
	})
	t.Run("API takes the Bearer token", func(t *testing.T) {
		r := s.do(newClient(), "GET", "/api/deliveries", nil, http.Header{"Authorization": {"Bearer " + apiToken}})
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})

	c := newClient()
	var guestCSRF string
	t.Run("login page", func(t *testing.T) {
		r := s.do(c, "GET", "/login?next=/deliveries", nil, nil)
		r.has(t, `<input id="token" name="token" type="password"`, `name="next" value="/deliveries"`)
		r.hasNot(t, "Signing key", "data-events") // no configuration for strangers
		guestCSRF = csrfPattern.FindStringSubmatch(r.body)[1]
	})
	form := func(v url.Values) response {
		return s.do(c, "POST", "/login", strings.NewReader(v.Encode()), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	}
	t.Run("wrong token", func(t *testing.T) {
		r := form(url.Values{"csrf": {guestCSRF}, "token": {"nope"}, "next": {"/deliveries"}})
		if r.code != 401 || !strings.Contains(r.body, "That is not the API token") {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})
	t.Run("login without the form's CSRF token", func(t *testing.T) {
		r := form(url.Values{"token": {apiToken}})
		if r.code != 403 || !strings.Contains(r.body, "CSRF") {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})
	var session *http.Cookie
	t.Run("right token", func(t *testing.T) {
		r := form(url.Values{"csrf": {guestCSRF}, "token": {apiToken}, "next": {"https://evil.example/"}})
		if r.code != http.StatusSeeOther || r.header.Get("Location") != "/" {
			t.Fatalf("%d %v (an off-site next must not be followed)", r.code, r.header)
		}
		resp := http.Response{Header: r.header}
		for _, ck := range resp.Cookies() {
			if ck.Name == "trainhook_session" {
				session = ck
			}
		}
		if session == nil {
			t.Fatal("no session cookie")
		}
		if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure || session.Path != "/" {
			t.Errorf("cookie attributes: %+v", session)
		}
		if strings.Contains(session.Value, apiToken) || strings.Contains(session.Value, strings.ToLower(apiToken)) {
			t.Error("the cookie holds the token")
		}
		r = s.do(c, "GET", "/", nil, nil)
		r.has(t, "portrait", "Sign out", "data-events")
		// The session cookie works for the API too, so the page's script can use it.
		if r := s.do(c, "GET", "/api/deliveries", nil, nil); r.code != 200 {
			t.Errorf("API with the cookie: %d", r.code)
		}
	})
	t.Run("a guest cookie is not a session", func(t *testing.T) {
		other := newClient()
		s.do(other, "GET", "/login", nil, nil)
		if r := s.do(other, "GET", "/", nil, nil); r.code != http.StatusSeeOther {
			t.Fatalf("guest reached the dashboard: %d", r.code)
		}
		if r := s.do(other, "GET", "/api/deliveries", nil, nil); r.code != 401 {
			t.Fatalf("guest reached the API: %d", r.code)
		}
	})
	t.Run("a forged cookie is refused", func(t *testing.T) {
		other := newClient()
		v := []rune(session.Value)
		v[5] ^= 1
		u, _ := url.Parse(s.url)
		other.Jar.SetCookies(u, []*http.Cookie{{Name: "trainhook_session", Value: string(v)}})
		if r := s.do(other, "GET", "/", nil, nil); r.code != http.StatusSeeOther {
			t.Fatalf("forged cookie: %d", r.code)
		}
	})
	t.Run("POST with the cookie needs the CSRF token", func(t *testing.T) {
		r := s.do(c, "POST", "/api/deliveries/1/replay", nil, nil)
		if r.code != 403 || !strings.Contains(r.body, "X-CSRF-Token") {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})
	t.Run("logout", func(t *testing.T) {
		tok := csrfPattern.FindStringSubmatch(s.do(c, "GET", "/", nil, nil).body)[1]
		r := s.do(c, "POST", "/logout", strings.NewReader("csrf="+tok), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
		if r.code != http.StatusSeeOther || r.header.Get("Location") != "/login" {
			t.Fatalf("%d %v", r.code, r.header)
		}
		if r := s.do(c, "GET", "/", nil, nil); r.code != http.StatusSeeOther {
			t.Fatalf("still signed in: %d", r.code)
		}
		// A copy of the cookie taken before signing out no longer works either.
		thief := newClient()
		u, _ := url.Parse(s.url)
		thief.Jar.SetCookies(u, []*http.Cookie{{Name: session.Name, Value: session.Value}})
		if r := s.do(thief, "GET", "/", nil, nil); r.code != http.StatusSeeOther {
			t.Fatalf("revoked cookie still works: %d", r.code)
		}
	})
}

func TestFormsRefuseCrossSiteAndMissingCSRF(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	m := s.register("portrait", "train-csrf")
	tok := s.csrf("/models/" + m.ID)
	path := "/models/" + m.ID + "/cancel"
	body := func(v url.Values) *strings.Reader { return strings.NewReader(v.Encode()) }
	formCT := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	with := func(extra http.Header) http.Header {
		h := formCT.Clone()
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	for _, c := range []struct {
		name string
		c    *http.Client
		form url.Values
		h    http.Header
		msg  string
	}{
		{"no CSRF token", s.client, url.Values{}, formCT, "CSRF"},
		{"wrong CSRF token", s.client, url.Values{"csrf": {"x" + tok}}, formCT, "CSRF"},
		{"another session's token", newClient(), url.Values{"csrf": {tok}}, formCT, "session cookie"},
		{"cross-site (Sec-Fetch-Site)", s.client, url.Values{"csrf": {tok}}, with(http.Header{"Sec-Fetch-Site": {"cross-site"}}), "another site"},
		{"cross-origin (Origin)", s.client, url.Values{"csrf": {tok}}, with(http.Header{"Origin": {"https://evil.example"}}), "another site"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(c.c, "POST", path, body(c.form), c.h)
			if r.code != 403 || !strings.Contains(r.body, c.msg) {
				t.Fatalf("%d %s", r.code, r.body)
			}
		})
	}
	r := s.do(s.client, "POST", "/api/deliveries/1/replay", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if r.code != 403 {
		t.Errorf("cross-site replay through the API: %d %s", r.code, r.body)
	}
	if d, _ := s.app.Service.Model(t.Context(), m.ID); len(d.History) != 1 {
		t.Fatal("a refused form changed the model")
	}
}

// TestSecureCookie mounts the dashboard alone with Secure set, as app does
// when APP_URL is https.
func TestSecureCookie(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	mux := http.NewServeMux()
	web.New(web.Deps{Service: s.app.Service, Store: s.app.Store, Broker: s.app.Broker,
		Replay: nil, Status: func() any { return map[string]any{"mode": "webhook"} }, APIToken: apiToken, Secure: true, Log: slog.New(slog.DiscardHandler)}).Register(mux)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != "__Host-trainhook_session" || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookies %+v", cs)
	}
}
