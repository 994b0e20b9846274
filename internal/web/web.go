// Package web is trainhook's dashboard: server-rendered pages of models,
// deliveries and configuration, live through Server-Sent Events. Pages are
// html/template with embedded assets and work under a strict CSP (no inline
// script or style); the small script in static/ only listens to
// /api/events and swaps in fragments the server renders.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/trainhook/trainhook/internal/authlimit"
	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
	"github.com/trainhook/trainhook/internal/webhook"
)

// Deps is what the dashboard uses of the running server.
type Deps struct {
	Service *service.Service
	Store   store.Store // reads only: deliveries, counts
	Broker  *events.Broker
	// Replay runs a stored delivery through the webhook handler as it is
	// configured now.
	Replay func(ctx context.Context, d training.Delivery) webhook.Replayed
	// Status is the running configuration for the banner (app.Status).
	Status   func() any
	APIToken string // when set, the dashboard asks for it once
	Secure   bool   // APP_URL is https: cookies are Secure
	Log      *slog.Logger
	// CORSOrigins are trusted for POSTs to the JSON routes; empty: same
	// origin only. (httpapi adds the CORS headers.)
	CORSOrigins []string
	// AuthFailures limits wrong tokens per client address, shared with the
	// management API so that guesses count wherever they are sent; nil: no
	// limit beyond the sign-in form's own.
	AuthFailures *authlimit.Limiter
}

// csp is the policy of every HTML page: scripts, styles and fetches from
// this origin only, nothing inline.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// server holds the dashboard's state; its fields are fixed after Register
// except those with their own locks.
type server struct {
	d        Deps
	log      *slog.Logger
	now      func() time.Time
	pages    *pages
	sessions *sessions
	origins  *http.CrossOriginProtection
	assets   *assets
	streams  *streams
	// instance names this server's event stream: event IDs start again at
	// 1 in every process, so an ID means something only with its instance.
	instance string
}

// Dashboard is the dashboard: its HTML pages (Register) and the JSON
// routes that share its sign-in, which httpapi registers with the rest of
// the JSON API.
type Dashboard struct{ s *server }

// New returns the dashboard for d.
func New(d Deps) *Dashboard { return &Dashboard{s: newServer(d)} }

// Register adds the dashboard's HTML pages and assets to mux. Every page
// route is listed here; the JSON routes are in httpapi.
func (dash *Dashboard) Register(mux *http.ServeMux) {
	s := dash.s

	// Pages. page requires a session (and the token when one is set);
	// form also checks the origin and the form's CSRF token.
	mux.Handle("GET /{$}", s.page(s.modelsPage))
	mux.Handle("GET /models/new", s.page(s.startPage))
	mux.Handle("POST /models/new", s.form(s.startSubmit))
	mux.Handle("GET /models/{id}", s.page(s.modelPage))
	mux.Handle("POST /models/{id}/cancel", s.form(s.cancelSubmit))
	mux.Handle("POST /models/{id}/remove", s.form(s.removeSubmit))
	mux.Handle("POST /models/{id}/retry", s.form(s.retrySubmit))
	mux.Handle("GET /deliveries", s.page(s.deliveriesPage))
	mux.Handle("GET /deliveries/{id}", s.page(s.deliveryPage))
	mux.Handle("POST /deliveries/{id}/replay", s.form(s.replaySubmit))
	mux.Handle("GET /notifications", s.page(s.notificationsPage))
	mux.Handle("POST /notifications/{id}/resend", s.form(s.resendSubmit))

	// Signing in and out.
	mux.Handle("GET /login", s.guest(s.loginPage))
	mux.Handle("POST /login", s.guestForm(s.loginSubmit))
	mux.Handle("POST /logout", s.form(s.logoutSubmit))

	// Assets, public: they hold nothing secret.
	mux.HandleFunc("GET /static/{file}", s.assets.serve)

	// Anything else outside /api/ is a dashboard page that does not exist,
	// or a method a page does not take.
	mux.Handle("/", s.page(func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if _, p := mux.Handler(&http.Request{Method: http.MethodGet, URL: r.URL, Host: r.Host}); p != "/" && p != "" {
				w.Header().Set("Allow", "GET, HEAD")
				return httpErrorf(http.StatusMethodNotAllowed, "%s is not allowed on %s.", r.Method, clip(r.URL.Path, 80))
			}
		}
		return s.notFoundPage(w, r)
	}))
}

// The JSON routes, for the pages' script and for API clients: a Bearer
// token or the session cookie (see api).

// Events serves GET /api/events, the Server-Sent Events stream.
func (dash *Dashboard) Events() http.Handler { return dash.s.api(dash.s.events) }

// Deliveries serves GET /api/deliveries, a page of stored deliveries.
func (dash *Dashboard) Deliveries() http.Handler { return dash.s.api(dash.s.apiDeliveries) }

// Delivery serves GET /api/deliveries/{id}.
func (dash *Dashboard) Delivery() http.Handler { return dash.s.api(dash.s.apiDelivery) }

// Replay serves POST /api/deliveries/{id}/replay.
func (dash *Dashboard) Replay() http.Handler { return dash.s.api(dash.s.apiReplay) }

func newServer(d Deps) *server {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	s := &server{
		d:        d,
		log:      d.Log,
		now:      time.Now,
		sessions: newSessions(d.APIToken, d.Secure),
		origins:  http.NewCrossOriginProtection(),
		assets:   loadAssets(),
		streams:  newStreams(),
		instance: newInstance(),
	}
	for _, o := range d.CORSOrigins {
		// Config validated them as scheme://host[:port]; a browser on one
		// may POST (with the token or the session's CSRF header).
		if err := s.origins.AddTrustedOrigin(o); err != nil {
			s.log.Warn("CORS origin not trusted for the dashboard API's POSTs", "origin", o, "err", err)
		}
	}
	s.pages = parsePages(s.assets)
	return s
}
