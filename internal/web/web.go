// Package web is trainhook's dashboard: server-rendered pages of models,
// deliveries and configuration, live through Server-Sent Events.
package web

import (
	"context"
	"log/slog"
	"net/http"

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
}

// Register adds the dashboard's routes to mux.
func Register(mux *http.ServeMux, d Deps) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("trainhook is running. The API is under /api/ (see the README).\n"))
	})
}
