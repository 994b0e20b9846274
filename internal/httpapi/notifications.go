package httpapi

import (
	"net/http"
	"strconv"

	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
)

// notificationRoutes adds the notifications outbox to the API: list (with
// ?status=, ?model=, ?before=, ?limit=), one with its attempts, and resend.
func (a *API) notificationRoutes(mux *http.ServeMux, protect func(http.Handler) http.Handler) {
	mux.Handle("GET /api/notifications", protect(http.HandlerFunc(a.listNotifications)))
	mux.Handle("GET /api/notifications/{id}", protect(http.HandlerFunc(a.getNotification)))
	mux.Handle("POST /api/notifications/{id}/resend", protect(http.HandlerFunc(a.resendNotification)))
}

func (a *API) listNotifications(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.NotificationFilter{Status: q.Get("status"), ModelID: q.Get("model")}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			a.WriteError(w, r, &service.Error{Kind: service.Invalid, Msg: "before must be a notification id (a positive integer)"})
			return
		}
		f.Before = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			a.WriteError(w, r, &service.Error{Kind: service.Invalid, Msg: "limit must be a whole number from 1 to 1000"})
			return
		}
		f.Limit = n
	}
	ns, err := a.svc.Notifications(r.Context(), f)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"notifications": ns})
}

func notificationID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, &service.Error{Kind: service.NotFound, Msg: "no notification with id " + strconv.Quote(r.PathValue("id")) + " (ids are positive integers)"}
	}
	return id, nil
}

func (a *API) getNotification(w http.ResponseWriter, r *http.Request) {
	id, err := notificationID(r)
	if err == nil {
		var d service.NotificationDetail
		if d, err = a.svc.Notification(r.Context(), id); err == nil {
			writeJSON(w, http.StatusOK, d)
			return
		}
	}
	a.WriteError(w, r, err)
}

func (a *API) resendNotification(w http.ResponseWriter, r *http.Request) {
	id, err := notificationID(r)
	if err == nil {
		var n store.Notification
		if n, err = a.svc.ResendNotification(r.Context(), id); err == nil {
			writeJSON(w, http.StatusAccepted, n)
			return
		}
	}
	a.WriteError(w, r, err)
}
