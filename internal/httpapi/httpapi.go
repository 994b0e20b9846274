// Package httpapi is trainhook's HTTP surface: every route in one function,
// middleware as func(http.Handler) http.Handler, and errors mapped to status
// codes in one place.
package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/authlimit"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/openapi"
	"github.com/trainhook/trainhook/internal/service"
)

// Config is what the HTTP layer needs from the server's configuration.
type Config struct {
	APIToken    string   // when set, the management API requires it as a Bearer token
	CORSOrigins []string // origins allowed to call the management API from a browser
	HSTS        bool     // send Strict-Transport-Security (APP_URL is https)
	// Hosts are the host names the server answers to besides IP addresses
	// and loopback names: APP_URL's host and TRAINHOOK_ALLOWED_HOSTS.
	Hosts []string
	// AuthFailures limits wrong API tokens per client address; nil: no limit.
	AuthFailures *authlimit.Limiter
	// Status reports the running configuration (mode, webhook URL, key
	// fingerprints, API budget) for GET /api/status; never secrets.
	Status func() any
	// Dashboard serves the HTML pages and the JSON routes that share their
	// sign-in; nil: no dashboard and no /api/events or /api/deliveries.
	Dashboard Dashboard
}

// Dashboard is what the HTML dashboard (package web) serves. Its JSON
// routes accept the API token or the dashboard's session cookie, so their
// handlers are the dashboard's; they are registered with every other JSON
// route in Handler.
type Dashboard interface {
	// Register adds the HTML pages, their assets, and the fallback for
	// paths outside /api/.
	Register(mux *http.ServeMux)
	// Events serves the Server-Sent Events stream of model and delivery
	// changes.
	Events() http.Handler
	// Deliveries lists stored webhook deliveries.
	Deliveries() http.Handler
	// Delivery serves one stored delivery by {id}.
	Delivery() http.Handler
	// Replay runs stored delivery {id} through the webhook handler again.
	Replay() http.Handler
}

// maxAPIBody caps management API request bodies.
const maxAPIBody = 1 << 20

// API serves the management API and operations endpoints.
type API struct {
	cfg      Config
	svc      *service.Service
	log      *slog.Logger
	tokenH   [32]byte
	metrics  *metrics.Registry
	webhookH http.Handler
}

// New returns the whole HTTP handler: webhook route, API, operations.
func New(cfg Config, svc *service.Service, wh http.Handler, reg *metrics.Registry, log *slog.Logger) *API {
	return &API{cfg: cfg, svc: svc, log: log, tokenH: sha256.Sum256([]byte(cfg.APIToken)), metrics: reg, webhookH: wh}
}

// Handler builds every route: the webhook, the operations endpoints, every
// JSON route under /api/ (the dashboard's included) and, through
// Config.Dashboard, the HTML pages.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()

	// Replicate → trainhook. A trailing slash is served too, never
	// redirected: Replicate does not follow redirects.
	mux.Handle(config.WebhookPath, a.webhookH)
	mux.Handle(config.WebhookPath+"/{$}", a.webhookH)

	// Operations.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	// Metrics name models' outcomes and the server's load: with a token
	// set they need it too (Prometheus sends it with authorization:
	// credentials). Probes stay open for load balancers and orchestrators.
	mux.Handle("GET /metrics", a.auth(a.metrics.Handler()))
	mux.Handle("GET "+openapi.Path, openapi.Handler())

	// Management API: CORS for allowed origins, then the token.
	protect := func(h http.Handler) http.Handler { return a.cors(a.auth(h)) }
	mux.Handle("POST /api/models", protect(http.HandlerFunc(a.createModel)))
	mux.Handle("GET /api/models", protect(http.HandlerFunc(a.listModels)))
	mux.Handle("GET /api/models/{id}", protect(http.HandlerFunc(a.getModel)))
	mux.Handle("POST /api/models/{id}/cancel", protect(http.HandlerFunc(a.cancelModel)))
	mux.Handle("DELETE /api/models/{id}", protect(http.HandlerFunc(a.archiveModel)))
	mux.Handle("POST /api/models/{id}/retry", protect(http.HandlerFunc(a.retryModel)))
	mux.Handle("GET /api/models/{id}/webhook", protect(http.HandlerFunc(a.modelWebhook)))
	mux.Handle("GET /api/status", protect(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var st any = struct{}{}
		if a.cfg.Status != nil {
			st = a.cfg.Status()
		}
		writeJSON(w, http.StatusOK, st)
	})))
	a.notificationRoutes(mux, protect)
	// The dashboard's JSON: a Bearer token or the dashboard's session
	// (the dashboard checks which), with CORS like the rest of the API.
	if d := a.cfg.Dashboard; d != nil {
		mux.Handle("GET /api/events", a.cors(d.Events()))
		mux.Handle("GET /api/deliveries", a.cors(d.Deliveries()))
		mux.Handle("GET /api/deliveries/{id}", a.cors(d.Delivery()))
		mux.Handle("POST /api/deliveries/{id}/replay", a.cors(d.Replay()))
		d.Register(mux)
	}
	// Everything else under /api/: preflights (CORS answers allowed ones
	// before this), wrong methods and unknown paths.
	mux.Handle("/api/", a.cors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			writeError(w, r, a.log, &service.Error{Kind: service.Forbidden, Msg: "CORS preflight refused: the Origin is not in CORS_ALLOWED_ORIGINS"})
			return
		}
		if _, pattern := mux.Handler(&http.Request{Method: http.MethodGet, URL: r.URL, Host: r.Host}); pattern != "/api/" && pattern != "" {
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
			return
		}
		writeJSON(w, http.StatusNotFound, errorBody{"no such API endpoint: " + r.URL.Path + " (see the README's API section)"})
	})))
	return a.securityHeaders(a.recoverer(a.logRequests(a.guard(mux))))
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.Ready(r.Context()); err != nil {
		a.log.Error("readiness check: database unreachable", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "database unreachable; see the server log"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// securityHeaders sets headers every response carries. The CSP is the
// strictest one; HTML pages set their own.
func (a *API) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if a.cfg.HSTS {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// auth requires the API token when one is configured. The comparison is on
// hashes so it takes the same time whatever the token's length.
func (a *API) auth(next http.Handler) http.Handler {
	if a.cfg.APIToken == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// A client that has sent too many wrong tokens is refused even
		// with the right one: otherwise a guess would still be answered.
		if ok && authLimited(w, r, a.cfg.AuthFailures) {
			return
		}
		gotH := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(gotH[:], a.tokenH[:]) != 1 {
			if ok && a.cfg.AuthFailures != nil {
				a.cfg.AuthFailures.Failed(r)
				a.log.Warn("API request refused: wrong token", "remote_addr", r.RemoteAddr, "path", r.URL.Path)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="trainhook"`)
			msg := "missing API token: send Authorization: Bearer <TRAINHOOK_API_TOKEN>"
			if ok {
				msg = "wrong API token: send the value of TRAINHOOK_API_TOKEN as Authorization: Bearer <token>"
			}
			writeJSON(w, http.StatusUnauthorized, errorBody{msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cors lets allowed browser origins call the management API. Preflights from
// other origins are refused; the webhook route never gets CORS headers.
func (a *API) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && slices.Contains(a.cfg.CORSOrigins, origin)
		w.Header().Add("Vary", "Origin")
		if allowed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", "Idempotent-Replayed")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key, Last-Event-ID")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, errorBody{"internal error; see the server log"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logRequests logs management API requests; the webhook handler logs its
// own deliveries with more detail, and health probes are not worth a line.
func (a *API) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, config.WebhookPath) || p == "/healthz" || p == "/readyz" || p == "/metrics" {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		a.log.Info("http request", "method", r.Method, "path", p, "code", sw.code, "latency_ms", float64(time.Since(start).Microseconds())/1000)
	})
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// WriteError maps err to a status code and writes it.
func (a *API) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, r, a.log, err)
}
