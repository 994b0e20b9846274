package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/store"
)

// notificationStatuses are the filter's choices.
var notificationStatuses = []string{store.NotifyPending, store.NotifyDelivered, store.NotifyFailed}

type notificationRow struct {
	store.Notification
	Now time.Time
}

// Age is how long ago the change it reports happened.
func (n notificationRow) Age() string { return ago(n.Now.Sub(n.CreatedAt)) }

// Badge is the status's badge class, in the models' colours.
func (n notificationRow) Badge() string {
	switch n.Status {
	case store.NotifyDelivered:
		return "ready"
	case store.NotifyFailed:
		return "failed"
	}
	return "pending"
}

type notificationsView struct {
	Rows     []notificationRow
	Status   string
	Model    string
	Statuses []string
	Self     string // this page with its filter, to come back to after a resend
}

// notificationsPage lists the notifications sent to the app, with their
// attempts' outcome and a resend button. The script keeps it live: on a
// "notification" event it fetches the list again (?fragment=list); the
// Refresh link reloads it without the script.
func (s *server) notificationsPage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Has("fragment") && q.Get("fragment") != "list" {
		return invalid("fragment must be list")
	}
	v := notificationsView{Status: q.Get("status"), Model: strings.TrimSpace(q.Get("model")), Statuses: notificationStatuses}
	if len(v.Model) > 64 {
		return invalid("model must be a model id, got %q", clip(v.Model, 30))
	}
	ns, err := s.d.Service.Notifications(r.Context(), store.NotificationFilter{Status: v.Status, ModelID: v.Model, Limit: pageSize})
	if err != nil {
		return err
	}
	now := s.now()
	for _, n := range ns {
		v.Rows = append(v.Rows, notificationRow{n, now})
	}
	v.Self = "/notifications"
	if e := (url.Values{"status": {v.Status}, "model": {v.Model}}); v.Status != "" || v.Model != "" {
		v.Self += "?" + e.Encode()
	}
	if q.Has("fragment") {
		return s.fragment(w, "notifications", "list", &view{CSRF: s.sessions.csrf(sessionOf(r)), Data: v})
	}
	page := &view{Title: "Notifications", Data: v}
	switch q.Get("notice") {
	case "resent":
		page.Notice = "Notification " + clip(q.Get("id"), 20) + " will be sent again, with the same webhook-id."
	}
	return s.renderView(w, r, http.StatusOK, "notifications", page)
}

func (s *server) resendSubmit(w http.ResponseWriter, r *http.Request) error {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return notFound("no notification with id %q", clip(raw, 30))
	}
	if _, err := s.d.Service.ResendNotification(r.Context(), id); err != nil {
		return err
	}
	// Back to the list the button was on, with its filter.
	back := "/notifications"
	if b := r.PostFormValue("back"); strings.HasPrefix(b, "/notifications") && !strings.HasPrefix(b, "//") {
		back = b
	}
	sep := "?"
	if strings.Contains(back, "?") {
		sep = "&"
	}
	http.Redirect(w, r, back+sep+"notice=resent&id="+strconv.FormatInt(id, 10), http.StatusSeeOther)
	return nil
}
