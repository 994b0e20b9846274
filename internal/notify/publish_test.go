package notify

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
)

// The sender announces each row when it first claims it and after it has
// recorded each attempt's outcome (retry scheduled, delivered, failed):
// every event matches what the store holds when it is published, so it
// follows the commit, and it carries neither the URL nor the body.
func TestSenderPublishesAfterRecordingAnAttempt(t *testing.T) {
	st := openStore(t)
	retried := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	gone := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "retired", http.StatusGone)
	})
	evRetried := addEvent(t, st, "m1", "model.ready", retried.URL+"/hook?token=s3cret")
	evGone := addEvent(t, st, "m2", "model.ready", gone.URL+"/hook?token=s3cret")

	var mu sync.Mutex
	var got []store.NotificationChange
	publish := func(typ string, data any) {
		if typ != store.NotificationEventType {
			t.Errorf("published a %q event", typ)
			return
		}
		c, ok := data.(store.NotificationChange)
		if !ok {
			t.Errorf("published %T, want store.NotificationChange", data)
			return
		}
		// Published after the commit: the store already holds it.
		n, _, err := st.GetNotification(t.Context(), c.ID)
		if err != nil {
			t.Errorf("read notification %d: %v", c.ID, err)
			return
		}
		if want := store.ChangeOf(n); c != want {
			t.Errorf("published %+v, the store holds %+v", c, want)
		}
		raw, _ := json.Marshal(data)
		if strings.Contains(string(raw), "s3cret") || strings.Contains(string(raw), "/hook") || strings.Contains(string(raw), `"m1"`) {
			t.Errorf("event data shows the URL or the body: %s", raw)
		}
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	}
	run(t, Options{Store: st, Keys: keys(t, key1), Publish: publish})
	waitStatus(t, st, evRetried, store.NotifyDelivered)
	waitStatus(t, st, evGone, store.NotifyFailed)

	byRow := map[string][]string{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		clear(byRow)
		for _, c := range got {
			byRow[c.ModelID] = append(byRow[c.ModelID], c.Status+"/"+strconv.Itoa(c.Attempts)+"/"+c.LastError)
		}
		n := len(got)
		mu.Unlock()
		if n >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ns, err := st.ListNotifications(t.Context(), store.NotificationFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		var want []string
		switch n.EventID {
		case evRetried:
			want = []string{"pending/0/", "pending/1/HTTP 503: busy", "delivered/2/"}
		case evGone:
			want = []string{"pending/0/", "failed/1/HTTP 410: retired"}
		}
		if strings.Join(byRow[n.ModelID], ", ") != strings.Join(want, ", ") {
			t.Errorf("events of %s: %q, want %q", n.EventID, byRow[n.ModelID], want)
		}
	}
}
