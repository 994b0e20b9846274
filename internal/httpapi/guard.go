package httpapi

import (
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/trainhook/trainhook/internal/authlimit"
	"github.com/trainhook/trainhook/internal/config"
)

// hostAllowed reports whether a request's Host names this server: an IP
// address, localhost or a name under .localhost, or one of names (APP_URL's
// host and TRAINHOOK_ALLOWED_HOSTS; "*" is any, "*.example.com" any name
// under example.com). The port never matters. Refusing other names is what
// stops DNS rebinding: a page on evil.example whose name is made to resolve
// to this server still sends Host: evil.example. An IP address needs no
// name to be rebound, so it is always accepted; a page that calls one is
// cross-origin, which crossOrigin refuses.
func hostAllowed(host string, names []string) bool {
	h := host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		h = hp
	}
	h = strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), "."))
	if h == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	for _, n := range names {
		if n == "*" || n == h || strings.HasPrefix(n, "*.") && strings.HasSuffix(h, n[1:]) {
			return true
		}
	}
	return false
}

// guard is the first check of every request after logging:
//
//   - the Host must name this server (hostAllowed), except for the probes,
//     which load balancers call by whatever address they know;
//   - on the management API, a state-changing request from a browser must
//     come from this origin or one in CORS_ALLOWED_ORIGINS (Go's
//     CrossOriginProtection reads Sec-Fetch-Site and Origin; curl and other
//     programs send neither and pass);
//   - a body sent to the management API must be JSON, so that a page cannot
//     post one as a "simple" text/plain or form request.
//
// The webhook route takes server-to-server POSTs from Replicate, which are
// signed: only the Host check applies to it.
func (a *API) guard(next http.Handler) http.Handler {
	origins := http.NewCrossOriginProtection()
	for _, o := range a.cfg.CORSOrigins {
		if err := origins.AddTrustedOrigin(o); err != nil {
			a.log.Warn("CORS origin not trusted for the API's POSTs", "origin", o, "err", err)
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p != "/healthz" && p != "/readyz" && !hostAllowed(r.Host, a.cfg.Hosts) {
			writeJSON(w, http.StatusMisdirectedRequest, errorBody{"this server does not answer to the host " + strconv.Quote(clipQuery(r.Host)) +
				": if that is its name, add the name to TRAINHOOK_ALLOWED_HOSTS (comma-separated, without port) or set APP_URL to the URL clients use. " +
				"Requests to other names are refused so that no web page can reach this server by DNS rebinding"})
			return
		}
		if !strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, config.WebhookPath) {
			next.ServeHTTP(w, r)
			return
		}
		if err := origins.Check(r); err != nil {
			writeJSON(w, http.StatusForbidden, errorBody{"cross-origin request refused: a page on another site may not change anything here. " +
				"To call the API from a web app, add its origin to CORS_ALLOWED_ORIGINS and send the API token"})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions && r.ContentLength != 0 && !isJSON(r.Header.Get("Content-Type")) {
			writeJSON(w, http.StatusUnsupportedMediaType, errorBody{contentTypeMsg(r.Header.Get("Content-Type"))})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

func contentTypeMsg(ct string) string {
	got := "none"
	if ct != "" {
		got = strconv.Quote(clipQuery(ct))
	}
	return "Content-Type must be application/json (got " + got + "): send the body as JSON with the header Content-Type: application/json"
}

// authLimited answers 429 when the client has sent too many wrong tokens,
// and reports whether it did.
func authLimited(w http.ResponseWriter, r *http.Request, l *authlimit.Limiter) bool {
	if l == nil {
		return false
	}
	d, blocked := l.Blocked(r)
	if !blocked {
		return false
	}
	w.Header().Set("Retry-After", authlimit.RetryAfter(d))
	writeJSON(w, http.StatusTooManyRequests, errorBody{authlimit.Message(d)})
	return true
}
