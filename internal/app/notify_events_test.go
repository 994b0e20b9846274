package app_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/store"
)

// A notification's changes reach the live stream after they commit: the
// new row when the sender takes it, its failure, the resend (from the
// service) and its delivery; the data names the row and its model, never
// the URL or the body.
func TestNotificationEventsOnTheLiveStream(t *testing.T) {
	rc := newAppReceiver(t, func(n int, _ string) int {
		if n == 1 {
			return http.StatusGone // failed at once, not retried
		}
		return http.StatusNoContent
	})
	s, _ := withSim(t, "on", fakereplicate.Options{}, map[string]string{
		"TRAINHOOK_NOTIFY_URL": rc.URL + "/api/trainhook?token=s3cret", "TRAINHOOK_NOTIFY_SECRET": notifySecret,
		"TRAINHOOK_NOTIFY_EVENTS": "model.ready",
	})
	sub, _ := s.app.Broker.Subscribe(0, 1024)
	defer sub.Close()
	code, m, msg := s.startTraining(startBody("announced"), nil)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, msg)
	}
	// next waits for the next notification event, checking what it carries.
	next := func() store.NotificationChange {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			var ev events.Event
			select {
			case e, ok := <-sub.C:
				if !ok {
					t.Fatal("the subscription was dropped")
				}
				ev = e
			case <-timeout:
				t.Fatal("no notification event within 30s")
			}
			if ev.Type != "notification" {
				continue
			}
			if strings.Contains(string(ev.Data), "s3cret") || strings.Contains(string(ev.Data), "api/trainhook") || strings.Contains(string(ev.Data), `"model":`) {
				t.Errorf("event data shows the URL or the body: %s", ev.Data)
			}
			var c store.NotificationChange
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				t.Fatalf("event data %s: %v", ev.Data, err)
			}
			if c.ModelID != m.ID || c.Type != "model.ready" || c.ID == 0 {
				t.Errorf("event %s, want model %s's model.ready", ev.Data, m.ID)
			}
			return c
		}
	}
	got := func(c store.NotificationChange) string {
		return c.Status + "/" + strconv.Itoa(c.Attempts) + "/" + c.LastError
	}
	if c := next(); got(c) != "pending/0/" {
		t.Errorf("first event %+v, want the new row, pending", c)
	}
	failed := next()
	if got(failed) != "failed/1/HTTP 410" || failed.LastStatus != 410 {
		t.Errorf("second event %+v, want it failed with HTTP 410", failed)
	}
	r := s.do("POST", "/api/notifications/"+strconv.FormatInt(failed.ID, 10)+"/resend", nil, nil)
	if r.code != http.StatusAccepted {
		t.Fatalf("resend: %d %s", r.code, r.body)
	}
	if c := next(); c.ID != failed.ID || c.Status != "pending" || c.Attempts != 1 {
		t.Errorf("event after the resend %+v, want it pending again", c)
	}
	if c := next(); c.ID != failed.ID || got(c) != "delivered/2/" || c.LastStatus != 204 {
		t.Errorf("event after the delivery %+v, want it delivered", c)
	}
}

// Instances on one PostgreSQL: a notification sent by one of them shows
// on the live stream of the other too.
func TestNotificationEventsReachOtherInstances(t *testing.T) {
	rcv := newAppReceiver(t, func(int, string) int { return http.StatusNoContent })
	env := map[string]string{"DATABASE_URL": pgtest.URL(t), "TRAINHOOK_NOTIFY_URL": rcv.URL, "TRAINHOOK_NOTIFY_SECRET": notifySecret,
		"TRAINHOOK_NOTIFY_EVENTS": "model.ready"}
	a, b := start(t, env), start(t, env)
	subA, _ := a.app.Broker.Subscribe(0, 1024)
	defer subA.Close()
	subB, _ := b.app.Broker.Subscribe(0, 1024)
	defer subB.Close()
	const tid = "crossinstance1"
	m := a.register(tid)
	if r := a.deliver("msg_"+tid, payload(tid, "succeeded")); r.code != http.StatusOK {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	for name, sub := range map[string]*events.Subscription{"a": subA, "b": subB} {
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					t.Fatalf("instance %s: subscription dropped", name)
				}
				var c store.NotificationChange
				if ev.Type == "notification" && json.Unmarshal(ev.Data, &c) == nil && c.ModelID == m.ID && c.Status == store.NotifyDelivered {
					break wait
				}
			case <-timeout:
				t.Fatalf("instance %s: no event of the delivered notification within 30s", name)
			}
		}
	}
}
