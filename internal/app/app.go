// Package app wires trainhook together: configuration → store → service →
// webhook handler and API → HTTP server, and takes it apart again in order.
// The serve and demo commands and the end-to-end tests all start it here.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/trainhook/trainhook/internal/authlimit"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/events/pgnotify"
	"github.com/trainhook/trainhook/internal/httpapi"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/notify"
	"github.com/trainhook/trainhook/internal/poller"
	"github.com/trainhook/trainhook/internal/ratelimit"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/postgres"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/web"
	"github.com/trainhook/trainhook/internal/webhook"
)

// App is a running trainhook server.
type App struct {
	Config  config.Config
	Log     *slog.Logger
	Store   store.Store
	Service *service.Service
	Broker  *events.Broker
	Metrics *metrics.Registry
	Keys    replicate.Keys
	// Client is the Replicate API client; nil without REPLICATE_API_TOKEN.
	Client *replicate.Client
	Poller *poller.Poller
	// Notifier sends the notifications outbox; nil without
	// TRAINHOOK_NOTIFY_SECRET.
	Notifier *notify.Sender
	// URL is the base URL the server listens on, e.g. http://127.0.0.1:8080.
	URL string

	ln       net.Listener
	http     *http.Server
	apiCalls *metrics.Counter
	bridge   *pgnotify.Bridge // PostgreSQL only

	// Retention: what prunes deleted, and when Run prunes (tests shorten it).
	pruneMetrics           *pruneMetrics
	pruneFirst, pruneEvery time.Duration
}

// NewLogger returns the logger the configuration asks for: JSON when out is
// not a terminal (or TRAINHOOK_LOG_FORMAT=json), text otherwise. Output is
// buffered (see logSink); call the returned function before exiting.
func NewLogger(cfg config.Config, out io.Writer) (*slog.Logger, func()) {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	format := cfg.LogFormat
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := out.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	sink := newLogSink(out)
	var h slog.Handler = slog.NewJSONHandler(sink, opts)
	if format == "text" {
		h = slog.NewTextHandler(sink, opts)
	}
	return slog.New(flushOnWarn{h, sink}), sink.Close
}

// Start opens the database, resolves the signing keys, and listens on
// cfg.Addr. It listens before serving so a busy port fails the start instead
// of leaving a process that serves nothing. Call Run to serve.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	return StartOn(ctx, cfg, log, nil)
}

// StartOn is Start on a listener the caller opened; nil listens on
// cfg.Addr as Start does. The App owns ln from here: Run closes it when it
// stops, and StartOn closes it when the start fails. Tests hand in a
// loopback listener so that the port the configuration names (APP_URL) is
// never free for another process to take between choosing it and serving.
func StartOn(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener) (_ *App, err error) {
	defer func() {
		if err != nil && ln != nil {
			ln.Close()
		}
	}()
	a := &App{Config: cfg, Log: log, Metrics: metrics.New(), pruneFirst: pruneFirst, pruneEvery: pruneEvery}
	a.pruneMetrics = newPruneMetrics(a.Metrics)
	a.registerModelGauges()
	defer func() {
		if err != nil {
			a.closeStore()
		}
	}()
	log.Info("trainhook starting", "config", cfg)
	log.Info(cfg.ModeReason, "mode", mode(cfg))

	// The database first: with PostgreSQL the API budget is shared through it.
	var pg *postgres.Store
	switch cfg.DBDriver {
	case config.DriverSQLite:
		s, err := sqlite.Open(ctx, cfg.DBPath)
		if err != nil {
			return nil, err
		}
		a.Store = s
		log.Info("database ready", "driver", "sqlite", "path", cfg.DBPath)
		releaseLeases(ctx, s, log)
	case config.DriverPostgres:
		if pg, err = postgres.Open(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
		a.Store = pg
		log.Info("database ready", "driver", "postgres", "url", config.RedactDatabaseURL(cfg.DatabaseURL))
	default:
		return nil, fmt.Errorf("DATABASE_URL selects %s, which trainhook cannot use; use a SQLite file path or a postgres:// URL", cfg.DBDriver)
	}

	if cfg.ReplicateToken != "" {
		// Several instances on one PostgreSQL share one budget, not one each.
		var limiter replicate.Limiter
		if pg != nil {
			shared, err := ratelimit.New(ctx, pg.Pool(), ratelimit.Options{PerWindow: cfg.APIRateLimit})
			if err != nil {
				return nil, fmt.Errorf("shared API rate limit: %w", err)
			}
			limiter = shared
		}
		a.apiCalls = a.Metrics.NewCounter("trainhook_replicate_api_calls_total", "Calls to Replicate's API, by endpoint and outcome.", "endpoint", "outcome")
		a.Client, err = replicate.NewClient(replicate.ClientOptions{
			BaseURL: cfg.ReplicateBaseURL, Token: cfg.ReplicateToken, RateLimit: cfg.APIRateLimit, Limiter: limiter, Logger: log,
			OnCall: func(endpoint, outcome string, _ time.Duration) { a.apiCalls.Inc(endpoint, outcome) },
		})
		if err != nil {
			return nil, fmt.Errorf("create the Replicate client: %w", err)
		}
	} else {
		log.Warn("REPLICATE_API_TOKEN is not set: trainhook cannot start, cancel or poll trainings; it only applies signed webhooks for trainings registered with their id")
	}
	if a.Keys, err = resolveKeys(ctx, cfg, a.Client, log); err != nil {
		return nil, err
	}

	policy := poller.Policy{Webhook: cfg.WebhookMode, Interval: cfg.PollInterval, ReconcileAfter: cfg.ReconcileAfter, Cap: 60 * time.Second, Jitter: poller.RandomJitter}
	opts := service.Options{Store: a.Store, Metrics: a.Metrics, Logger: log, NextCheck: policy.Next, WebhookEvents: cfg.WebhookEvents,
		RecoverAfter: min(max(2*cfg.PollInterval, time.Second), 30*time.Second), NotFoundGrace: notFoundGrace}
	a.Broker = events.NewBroker(4096, log)
	opts.Broker = a.Broker
	if pg != nil {
		// Live updates reach clients of every instance: NOTIFY after commit.
		a.bridge = pgnotify.New(pg.Pool(), a.Broker, pgnotify.Options{Log: log, Load: pg.GetModel})
		opts.Broker = a.bridge
	}
	if a.Client != nil {
		opts.Replicate = a.Client
	}
	if cfg.WebhookMode {
		opts.WebhookURL = cfg.WebhookURL
	}
	if len(cfg.Notify.Keys) > 0 {
		a.Notifier = notify.New(notify.Options{Store: a.Store, Keys: cfg.Notify.Keys, RetryFor: cfg.Notify.RetryFor, Logger: log, Metrics: a.Metrics,
			Publish: opts.Broker.Publish, Busy: func() bool { return a.Service.Saturated() }})
		opts.Notify = service.Notify{URLs: cfg.Notify.URLs, Events: cfg.Notify.Events, Kick: a.Notifier.Kick}
		if len(cfg.Notify.AllowedOrigins) > 0 {
			opts.Notify.AllowURL = cfg.Notify.OriginAllowed
		}
		log.Info("notifications on", "urls", cfg.Notify.URLs, "events", cfg.Notify.Events, "fingerprints", cfg.Notify.Keys.Fingerprints())
		for u, err := range notify.Probe(ctx, cfg.Notify.URLs, 2*time.Second) {
			log.Warn("TRAINHOOK_NOTIFY_URL cannot be reached now: notifications to it are kept and retried for TRAINHOOK_NOTIFY_RETRY_FOR; check the URL and that the app is running",
				"url", u, "err", err, "retry_for", cfg.Notify.RetryFor)
		}
	}
	a.Service = service.New(opts)
	if err := a.Service.LoadTokenKey(ctx, cfg.SecretKey); err != nil {
		a.Service.Close()
		return nil, err
	}
	if a.Client != nil {
		a.Metrics.GaugeFunc("trainhook_replicate_api_calls_per_completed_training", "Calls to Replicate's API divided by the trainings this process saw complete.", func() float64 {
			return float64(a.apiCalls.Total()) / float64(max(a.Service.Completed(), 1))
		})
		a.Poller = poller.New(poller.Options{API: a.Client, Service: a.Service, Policy: policy, Log: log, Budget: cfg.APIRateLimit, Tick: min(cfg.PollInterval, time.Second)})
	}
	wh := webhook.NewHandler(webhook.Handler{Keys: a.Keys, Service: a.Service, MaxBody: cfg.MaxBody, Log: log, CheckToken: a.Service.CheckToken}, a.Metrics)
	// Wrong tokens count per client address wherever they are sent: the
	// API, /metrics, the dashboard's JSON routes and its sign-in form.
	authFailures := authlimit.New(authlimit.DefaultMax, authlimit.DefaultWindow)
	dash := web.New(web.Deps{
		Service: a.Service, Store: a.Store, Broker: a.Broker, Replay: wh.Replay, Status: a.status,
		APIToken: cfg.APIToken, Secure: cfg.HSTS, Log: log, CORSOrigins: cfg.CORSOrigins,
		AuthFailures: authFailures,
	})
	api := httpapi.New(httpapi.Config{APIToken: cfg.APIToken, CORSOrigins: cfg.CORSOrigins, HSTS: cfg.HSTS, Status: a.status,
		Hosts: cfg.Hosts(), AuthFailures: authFailures, Dashboard: dash}, a.Service, wh, a.Metrics, log)

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			a.Service.Close()
			return nil, fmt.Errorf("listen on %s (set ADDR or PORT to a free address): %w", cfg.Addr, err)
		}
	}
	a.ln = ln
	a.URL = "http://" + dialable(a.ln.Addr())
	if msg, open := openToOthers(cfg, a.ln.Addr()); open {
		if !cfg.InsecureOpenAPI {
			a.Service.Close()
			return nil, errors.New(msg)
		}
		log.Warn(msg+". TRAINHOOK_INSECURE_OPEN_API=true: starting anyway", "addr", a.ln.Addr().String())
	}
	a.http = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// TRAINHOOK_READ_TIMEOUT and TRAINHOOK_WRITE_TIMEOUT (60 s each by
		// default): a multi-megabyte training payload over a slow link
		// still fits; a slow-loris body does not.
		ReadTimeout:    cfg.ReadTimeout,
		WriteTimeout:   cfg.WriteTimeout,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return a, nil
}

// Run serves until ctx ends or serving fails, then shuts down in order:
// stop accepting and finish in-flight requests, stop the writer after it
// has committed what it holds, close the database last.
func (a *App) Run(ctx context.Context) error {
	bctx, stopBridge := context.WithCancel(context.Background())
	bridged := make(chan struct{})
	go func() {
		defer close(bridged)
		if a.bridge != nil {
			a.bridge.Run(bctx)
		}
	}()
	if a.bridge != nil {
		// Serve once the bridge listens, so that a change another instance
		// commits after this one answers is seen here too.
		select {
		case <-a.bridge.Listening():
		case <-time.After(10 * time.Second):
			a.Log.Warn("pgnotify: not yet listening for other instances' events after 10s; serving anyway, they will reach this instance once it does")
		case <-ctx.Done():
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- a.http.Serve(a.ln) }()
	pctx, stopPoller := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		if a.Poller != nil {
			a.Poller.Run(pctx)
		}
	}()
	rctx, stopPruner := context.WithCancel(context.Background())
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		a.runPruner(rctx, a.pruneFirst, a.pruneEvery)
	}()
	// The sender has its own goroutines and limits: a slow or dead
	// receiver never holds up intake or polling, which only write rows.
	nctx, stopNotifier := context.WithCancel(context.Background())
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		if a.Notifier != nil {
			a.Notifier.Run(nctx)
		}
	}()
	a.Log.Info("listening", "url", a.URL, "webhook_path", config.WebhookPath, "webhook_url", a.Config.WebhookURL)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.Log.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.http.Shutdown(sctx); err != nil {
		a.Log.Warn("in-flight requests did not finish in time", "err", err)
	}
	// A check cut short leaves its lease; the model is due again after it.
	stopPoller()
	stopPruner() // a prune stops after its current batch
	<-polled
	<-pruned
	a.Service.Close()
	// After the service: every committed event is in the outbox. A
	// request cut short here is recorded as interrupted and sent again at
	// the next start.
	stopNotifier()
	<-notified
	stopBridge() // it sends what is queued before it returns
	<-bridged
	if a.Client != nil {
		a.Client.CloseIdleConnections()
	}
	a.closeStore()
	a.Log.Info("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP: %w", serveErr)
	}
	return nil
}

func (a *App) closeStore() {
	if a.Store != nil {
		if err := a.Store.Close(); err != nil {
			a.Log.Error("close database", "err", err)
		}
		a.Store = nil
	}
}

func mode(cfg config.Config) string {
	if cfg.WebhookMode {
		return "webhook"
	}
	return "polling"
}

// dialable turns a listen address into one a client can dial: ":8080" and
// "0.0.0.0:8080" become "127.0.0.1:8080".
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// openToOthers reports whether the API and dashboard would be open to
// anyone who can reach the listener (no TRAINHOOK_API_TOKEN, and not
// loopback only), with what to say and how to fix it. Like Redis's
// protected mode, Start then refuses unless TRAINHOOK_INSECURE_OPEN_API is
// set. The address is the one actually listened on, so ":8080", PORT and a
// host name that resolves to a public address are all caught.
func openToOthers(cfg config.Config, addr net.Addr) (string, bool) {
	if cfg.APIToken != "" {
		return "", false
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return "", false
	}
	return "TRAINHOOK_API_TOKEN is not set and trainhook would listen on " + cfg.Addr + ", not on loopback only: " +
		"anyone who can reach this port could start trainings (spending money), cancel them, replay deliveries and use the dashboard. " +
		"Set TRAINHOOK_API_TOKEN to a random token of at least 32 characters (" + config.GenerateTokenHint + "), " +
		"or listen on loopback only with ADDR=127.0.0.1:<port> and PORT unset, " +
		"or, only if something in front of trainhook already restricts who can reach it, set TRAINHOOK_INSECURE_OPEN_API=true", true
}

// resolveKeys returns the signing keys the webhook endpoint accepts. In
// webhook mode with an API token it fetches the account's key: with no key
// configured it uses that one; with keys that do not include it, it refuses
// to start, since every webhook would then be refused as forged.
func resolveKeys(ctx context.Context, cfg config.Config, client *replicate.Client, log *slog.Logger) (replicate.Keys, error) {
	keys := cfg.WebhookKeys
	if cfg.WebhookMode && client != nil {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		account, err := client.WebhookSecret(fctx)
		cancel()
		switch {
		case err != nil && len(keys) == 0:
			return nil, fmt.Errorf("webhook mode needs the signing key, and fetching it from Replicate failed: %w (set REPLICATE_WEBHOOK_SECRET to the key from GET /v1/webhooks/default/secret)", err)
		case err != nil:
			log.Warn("could not fetch the account's signing key to check REPLICATE_WEBHOOK_SECRET; using the configured keys", "err", err)
		case len(keys) == 0:
			keys = replicate.Keys{account}
			log.Info("using the account's webhook signing key fetched from Replicate", "fingerprint", account.Fingerprint())
		case !keys.Contains(account):
			return nil, fmt.Errorf("REPLICATE_WEBHOOK_SECRET (fingerprints %v) does not include this account's signing key (fingerprint %s): every webhook would be refused as forged. Set it to the key from GET /v1/webhooks/default/secret, or unset it to use the account's key", keys.Fingerprints(), account.Fingerprint())
		default:
			log.Info("REPLICATE_WEBHOOK_SECRET includes the account's signing key", "fingerprint", account.Fingerprint())
		}
	}
	if len(keys) == 0 {
		log.Warn("no signing key configured: every webhook delivery will be refused (401) until REPLICATE_WEBHOOK_SECRET is set")
	} else {
		log.Info("webhook signing keys loaded", "fingerprints", keys.Fingerprints())
	}
	return keys, nil
}

// Status is what GET /api/status and the dashboard show of the running
// configuration: never a secret.
type Status struct {
	Mode               string   `json:"mode"`
	ModeReason         string   `json:"mode_reason"`
	WebhookURL         string   `json:"webhook_url,omitempty"`
	SigningKeys        []string `json:"signing_key_fingerprints"`
	ReplicateBaseURL   string   `json:"replicate_base_url"`
	ReplicateToken     bool     `json:"replicate_token_set"`
	APIRateLimit       int      `json:"api_rate_limit_per_minute"`
	APICallsTotal      int64    `json:"api_calls_total"`
	PollInterval       string   `json:"poll_interval"`
	ReconcileAfter     string   `json:"reconcile_after"`
	WebhookEvents      []string `json:"webhook_events"`
	Database           string   `json:"database"`
	MaxBody            int64    `json:"max_body_bytes"`
	APITokenRequired   bool     `json:"api_token_required"`
	CORSAllowedOrigins []string `json:"cors_allowed_origins"`
}

func (a *App) status() any {
	c := a.Config
	st := Status{
		Mode: mode(c), ModeReason: c.ModeReason, WebhookURL: c.WebhookURL, SigningKeys: a.Keys.Fingerprints(),
		ReplicateBaseURL: config.RedactURL(c.ReplicateBaseURL), ReplicateToken: c.ReplicateToken != "", APIRateLimit: c.APIRateLimit,
		PollInterval: c.PollInterval.String(), ReconcileAfter: c.ReconcileAfter.String(), WebhookEvents: c.WebhookEvents,
		Database: c.DBDriver, MaxBody: c.MaxBody, APITokenRequired: c.APIToken != "", CORSAllowedOrigins: c.CORSOrigins,
	}
	if a.apiCalls != nil {
		st.APICallsTotal = a.apiCalls.Total()
	}
	return st
}
