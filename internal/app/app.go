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

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/httpapi"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
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
	// URL is the base URL the server listens on, e.g. http://127.0.0.1:8080.
	URL string

	ln   net.Listener
	http *http.Server
}

// NewLogger returns the logger the configuration asks for: JSON when out is
// not a terminal (or TRAINHOOK_LOG_FORMAT=json), text otherwise.
func NewLogger(cfg config.Config, out io.Writer) *slog.Logger {
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
	if format == "text" {
		return slog.New(slog.NewTextHandler(out, opts))
	}
	return slog.New(slog.NewJSONHandler(out, opts))
}

// Start opens the database, resolves the signing keys, and listens. It
// listens before serving so a busy port fails the start instead of leaving a
// process that serves nothing. Call Run to serve.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{Config: cfg, Log: log, Metrics: metrics.New()}
	defer func() {
		if err != nil {
			a.closeStore()
		}
	}()
	log.Info("trainhook starting", "config", cfg)
	log.Info(cfg.ModeReason, "mode", mode(cfg))

	if a.Keys, err = resolveKeys(ctx, cfg, log); err != nil {
		return nil, err
	}

	switch cfg.DBDriver {
	case config.DriverSQLite:
		s, err := sqlite.Open(ctx, cfg.DBPath)
		if err != nil {
			return nil, err
		}
		a.Store = s
		log.Info("database ready", "driver", "sqlite", "path", cfg.DBPath)
	default:
		return nil, fmt.Errorf("DATABASE_URL selects %s, which this version of trainhook cannot use yet; use a SQLite file path such as trainhook.db", cfg.DBDriver)
	}

	a.Broker = events.NewBroker(4096, log)
	a.Service = service.New(service.Options{Store: a.Store, Broker: a.Broker, Metrics: a.Metrics, Logger: log})
	wh := webhook.NewHandler(webhook.Handler{Keys: a.Keys, Service: a.Service, MaxBody: cfg.MaxBody, Log: log}, a.Metrics)
	api := httpapi.New(httpapi.Config{APIToken: cfg.APIToken, CORSOrigins: cfg.CORSOrigins, HSTS: cfg.HSTS}, a.Service, wh, a.Metrics, log)

	a.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		a.Service.Close()
		return nil, fmt.Errorf("listen on %s (set ADDR or PORT to a free address): %w", cfg.Addr, err)
	}
	a.URL = "http://" + dialable(a.ln.Addr())
	a.http = &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A multi-megabyte training payload over a slow link still fits;
		// a slow-loris body does not.
		ReadTimeout:    60 * time.Second,
		WriteTimeout:   60 * time.Second,
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
	errc := make(chan error, 1)
	go func() { errc <- a.http.Serve(a.ln) }()
	a.Log.Info("listening", "url", a.URL, "webhook_path", webhook.Path, "webhook_url", a.Config.WebhookURL)

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
	a.Service.Close()
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

// resolveKeys returns the signing keys the webhook endpoint accepts.
func resolveKeys(_ context.Context, cfg config.Config, log *slog.Logger) (replicate.Keys, error) {
	keys := cfg.WebhookKeys
	if len(keys) == 0 {
		log.Warn("no signing key configured: every webhook delivery will be refused (401) until REPLICATE_WEBHOOK_SECRET is set")
	} else {
		log.Info("webhook signing keys loaded", "fingerprints", keys.Fingerprints())
	}
	return keys, nil
}
