package web_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apptest"
)

const notifySecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

// The Notifications page lists what was sent with its outcome and resends
// one through the CSRF-protected form.
func TestNotificationsPage(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get("webhook-id"))
		n := len(ids)
		mu.Unlock()
		if n == 1 {
			http.Error(w, "not yet", http.StatusGone) // failed at once, not retried
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	s := start(t, map[string]string{"TRAINHOOK_NOTIFY_URL": rcv.URL + "/hook", "TRAINHOOK_NOTIFY_SECRET": notifySecret})
	m := s.register("notified <b>", "train-notify-1")
	if r := s.deliver(testKey, "msg_n1", payload("train-notify-1", "succeeded")); r.code != 200 {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	var page response
	apptest.WaitFor(t, "the notification to fail", 5*time.Second, func() bool {
		page = s.get("/notifications?status=failed")
		return strings.Contains(page.body, `data-status="failed"`)
	})
	page.has(t, "model.ready", m.ID, rcv.URL+"/hook", "HTTP 410: not yet", `aria-current="page">Notifications`)
	id := regexp.MustCompile(`data-notification-id="(\d+)"`).FindStringSubmatch(page.body)
	if id == nil {
		t.Fatal("no row id")
	}
	if r := s.get("/notifications?status=delivered"); !strings.Contains(r.body, "No notifications match this filter.") {
		t.Errorf("delivered filter shows the failed one:\n%s", r.body)
	}

	// Without the form's CSRF token: refused, nothing sent.
	if r := s.post("/notifications/"+id[1]+"/resend", url.Values{}); r.code != http.StatusForbidden {
		t.Errorf("resend without CSRF: %d", r.code)
	}
	tok := s.csrf("/notifications")
	r := s.post("/notifications/"+id[1]+"/resend", url.Values{"csrf": {tok}, "back": {"/notifications?status=failed"}})
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/notifications?status=failed&notice=resent&id="+id[1] {
		t.Fatalf("resend: %d Location %q", r.code, r.header.Get("Location"))
	}
	apptest.WaitFor(t, "the resent notification to arrive", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ids) == 2
	})
	if ids[0] != ids[1] {
		t.Errorf("resent with webhook-id %s, first sent with %s", ids[1], ids[0])
	}
	apptest.WaitFor(t, "the page to show it delivered", 5*time.Second, func() bool {
		return strings.Contains(s.get("/notifications?model="+m.ID).body, `data-status="delivered"`)
	})
	s.get("/notifications?notice=resent&id="+id[1]).has(t, "will be sent again, with the same webhook-id")
	// The live updates' fragment: the list alone, with the page's filter
	// and working Resend forms.
	frag := s.get("/notifications?fragment=list&model=" + m.ID)
	frag.has(t, `data-notification-id="`+id[1]+`"`, `data-status="delivered"`, `name="csrf" value="`+tok+`"`, `name="back" value="/notifications?model=`+m.ID)
	if frag.code != http.StatusOK || strings.Contains(frag.body, "<html") || strings.Contains(frag.body, "<h1>") {
		t.Errorf("fragment=list: %d, want the list alone:\n%s", frag.code, frag.body)
	}
	if r := s.get("/notifications?fragment=list&status=failed"); !strings.Contains(r.body, "No notifications match this filter.") {
		t.Errorf("fragment=list with a filter shows other rows:\n%s", r.body)
	}
	if r := s.get("/notifications?fragment=page"); r.code != http.StatusBadRequest || !strings.Contains(r.body, "fragment must be list") {
		t.Errorf("fragment=page: %d %s", r.code, r.body)
	}
	if r := s.post("/notifications/99999/resend", url.Values{"csrf": {tok}}); r.code != http.StatusNotFound {
		t.Errorf("resend of an unknown notification: %d", r.code)
	}
	// An open redirect through "back" is not possible.
	if r := s.post("/notifications/"+id[1]+"/resend", url.Values{"csrf": {tok}, "back": {"//evil.example/notifications"}}); !strings.HasPrefix(r.header.Get("Location"), "/notifications?notice=") {
		t.Errorf("back=//evil: Location %q", r.header.Get("Location"))
	}
}
