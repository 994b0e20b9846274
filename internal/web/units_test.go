package web

import (
	"github.com/trainhook/trainhook/internal/service"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

func TestSpanAndAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0 s", 42 * time.Second: "42 s", 3*time.Minute + 12*time.Second: "3 min 12 s", 4 * time.Minute: "4 min",
		12*time.Minute + 30*time.Second: "12 min", 2*time.Hour + 5*time.Minute: "2 h 05 min", 75 * time.Hour: "3 days 3 h",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q, want %q", d, got, want)
		}
	}
	if got := ago(90 * time.Second); got != "1 min 30 s ago" {
		t.Errorf("ago = %q", got)
	}
	if got := ago(-time.Minute); got != "in 1 min" {
		t.Errorf("ago of the future = %q", got)
	}
}

func TestWaiting(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	next := now.Add(3 * time.Minute)
	past := now.Add(-20 * time.Second)
	check := func(what string, m training.Model, webhookMode, canPoll bool, want string, wantNormal bool) {
		t.Helper()
		if got, normal := waiting(m, now, webhookMode, canPoll); got != want || normal != wantNormal {
			t.Errorf("%s: %q (normal %v), want %q (normal %v)", what, got, normal, want, wantNormal)
		}
	}
	m := training.Model{Status: training.Training, TrainingID: "t1", UpdatedAt: now.Add(-3 * time.Second), NextCheckAt: &next}
	check("polling, on schedule", m, false, true, "last news 3 s ago; next check in 3 min", true)
	check("webhook, on schedule", m, true, true, "last news 3 s ago; next check in 3 min if no webhook comes first", true)
	m.NextCheckAt, m.CheckAttempts = &past, 4
	check("overdue, failing checks", m, false, true, "no news for 3 s; a check is due now (overdue by 20 s); 4 checks so far", false)
	since := now.Add(-time.Minute)
	m.NextCheckAt, m.CheckAttempts, m.NotFoundChecks, m.NotFoundSince = &next, 2, 2, &since
	check("404s", m, false, true, "no news for 3 s; next check in 3 min; Replicate has answered 404 for this training 2 times since 1 min ago; if it goes on, the model fails", false)
	m = training.Model{Status: training.Training, TrainingID: "t1", UpdatedAt: now, NextCheckAt: &next}
	check("no token", m, false, false, "no news for 0 s; trainhook cannot check on it without REPLICATE_API_TOKEN, so only a webhook can move it", false)
	m = training.Model{Status: training.Pending, UpdatedAt: now}
	if got, normal := waiting(m, now, true, true); normal || !strings.HasPrefix(got, "the start has not been confirmed by Replicate yet; no news for 0 s; waiting for a webhook") {
		t.Errorf("start in doubt: %q (normal %v)", got, normal)
	}
	m.Status = training.Ready
	check("terminal", m, true, true, "", false)
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/deliveries?x=1": "/deliveries?x=1", "": "/", "https://evil.example/": "/", "//evil.example/": "/",
		"/\\evil.example": "/", "/login?next=/": "/", "deliveries": "/", "/a\r\nSet-Cookie: x": "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJSONObjectError(t *testing.T) {
	for in, want := range map[string]string{
		`{"a": 1}`:          "",
		"{\n  \"a\": 1,\n}": "(line 3, column 1)",
		`{"a": tru}`:        "(line 1, column 10)",
		`[1, 2]`:            "Enter a JSON object",
		`"text"`:            "Enter a JSON object",
		`{"a": 1} {"b": 2}`: "not valid JSON",
		"{\"a\": \"\x01\"}": "not valid JSON",
		"   ":               "",
	} {
		got := jsonObjectError(in, "{}")
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("jsonObjectError(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCursors(t *testing.T) {
	id := training.NewID(time.Now())
	if got, ok := service.ParseModelCursor(service.ModelCursor(id)); !ok || got != id {
		t.Fatalf("model cursor round trip: %q %v", got, ok)
	}
	if got, ok := decodeDeliveryCursor(encodeDeliveryCursor(42)); !ok || got != 42 {
		t.Fatalf("delivery cursor round trip: %d %v", got, ok)
	}
	for _, bad := range []string{"", "!!", encodeDeliveryCursor(42), "bTE6"} {
		if _, ok := service.ParseModelCursor(bad); ok {
			t.Errorf("model cursor %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "ZDE6MDQy", "ZDE6LTE", service.ModelCursor(id)} { // "d1:042", "d1:-1"
		if _, ok := decodeDeliveryCursor(bad); ok {
			t.Errorf("delivery cursor %q accepted", bad)
		}
	}
}

func TestSessions(t *testing.T) {
	now := time.Now()
	s := newSessions("tok", false)
	_, c := s.issue(kindSignedIn, now)
	req := func(value string) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(&http.Cookie{Name: c.Name, Value: value})
		return r
	}
	sess, ok := s.read(req(c.Value), now)
	if !ok || !s.authorized(sess, ok) {
		t.Fatal("a fresh session is not accepted")
	}
	if _, ok := s.read(req(c.Value), now.Add(sessionTTL+time.Second)); ok {
		t.Error("an expired session is accepted")
	}
	if _, ok := newSessions("another token", false).read(req(c.Value), now); ok {
		t.Error("a session outlives a change of the token")
	}
	if !s.checkCSRF(sess, s.csrf(sess)) || s.checkCSRF(sess, "") || s.checkCSRF(session{}, s.csrf(sess)) {
		t.Error("CSRF tokens are not bound to their session")
	}
	s.revoke(sess, now)
	if _, ok := s.read(req(c.Value), now); ok {
		t.Error("a revoked session is accepted")
	}
	for i := 0; i < maxLoginFailures; i++ {
		s.loginFailed(now)
	}
	if s.loginAllowed(now) || !s.loginAllowed(now.Add(61*time.Second)) {
		t.Error("the sign-in throttle does not hold for a minute")
	}
}

func TestHistorySource(t *testing.T) {
	for src, want := range map[training.Source]string{training.SourceWebhook: "webhook", training.SourcePoll: "poll", training.SourceAPI: "API"} {
		h := historyRow{training.HistoryEntry{Source: src, Decision: training.Conflict}}
		if h.SourceText() != want || !h.Conflict() {
			t.Errorf("%s: %q", src, h.SourceText())
		}
	}
}
