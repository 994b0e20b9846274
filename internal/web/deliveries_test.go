package web_test

import (
	"github.com/trainhook/trainhook/internal/apptest"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

type deliveriesPage struct {
	Deliveries []training.Delivery `json:"deliveries"`
	NextCursor string              `json:"next_cursor"`
}

func TestDeliveries(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	m := s.register("portrait", "train-del")
	s.deliver(testKey, "msg_d1", payload("train-del", "processing"))
	s.deliver(testKey, "msg_d2", payload("train-del", "succeeded"))
	s.deliver(testKey, "msg_d2", payload("train-del", "succeeded")) // Replicate's retry: a duplicate
	forger, _ := replicate.ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	if r := s.deliver(forger, "msg_forged", payload("train-del", "failed")); r.code != 401 {
		t.Fatalf("forged delivery: %d", r.code)
	}
	var all deliveriesPage
	apptest.WaitFor(t, "the refused delivery to be recorded", 5*time.Second, func() bool {
		s.get("/api/deliveries").json(t, &all)
		return len(all.Deliveries) == 4
	})

	t.Run("page shows verified and refused, with reasons", func(t *testing.T) {
		r := s.get("/deliveries")
		r.has(t, "<h1>Deliveries</h1>", "✓</span> Verified", "✕</span> Refused", "webhook signature: no valid signature",
			"msg_forged", "<code>train-del</code>", `href="/models/`+m.ID+`">portrait</a>`, `>duplicate<`, `>applied<`,
			`aria-label="Replay delivery 1"`)
		if strings.Index(r.body, "msg_forged") > strings.Index(r.body, "msg_d1") {
			t.Error("not newest first")
		}
	})
	t.Run("filters", func(t *testing.T) {
		r := s.get("/deliveries?verified=false")
		if n := strings.Count(r.body, "<tr data-delivery-id="); n != 1 || !strings.Contains(r.body, "msg_forged") {
			t.Fatalf("refused only: %d rows", n)
		}
		r = s.get("/deliveries?outcome=duplicate")
		if n := strings.Count(r.body, "<tr data-delivery-id="); n != 1 {
			t.Fatalf("duplicates: %d rows", n)
		}
		r = s.get("/deliveries?model=" + m.ID + "&verified=true")
		if n := strings.Count(r.body, "<tr data-delivery-id="); n != 3 {
			t.Fatalf("by model: %d rows", n)
		}
		var p deliveriesPage
		s.get("/api/deliveries?verified=false").json(t, &p)
		if len(p.Deliveries) != 1 || p.Deliveries[0].Verified || p.Deliveries[0].Reason == "" {
			t.Fatalf("API refused only: %+v", p)
		}
	})
	t.Run("keyset pagination, page and API", func(t *testing.T) {
		var ids []int64
		cursor := ""
		for i := 0; i < 10; i++ {
			var p deliveriesPage
			r := s.get("/api/deliveries?limit=3&cursor=" + url.QueryEscape(cursor))
			if r.code != 200 {
				t.Fatalf("%d %s", r.code, r.body)
			}
			r.json(t, &p)
			for _, d := range p.Deliveries {
				ids = append(ids, d.ID)
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		if len(ids) != 4 || ids[0] != all.Deliveries[0].ID || ids[3] != all.Deliveries[3].ID {
			t.Fatalf("pages gave %v", ids)
		}
		r := s.get("/deliveries?limit=3")
		next := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(r.body)
		if next == nil {
			t.Fatal("no next link")
		}
		r = s.get(strings.ReplaceAll(next[1], "&amp;", "&"))
		if n := strings.Count(r.body, "<tr data-delivery-id="); n != 1 || !strings.Contains(r.body, "← Newest") {
			t.Fatalf("second page: %d rows", n)
		}
	})
	t.Run("bad filters are refused", func(t *testing.T) {
		for _, q := range []string{"?verified=maybe", "?outcome=exploded", "?cursor=xyz", "?limit=0", "?model=a%20b"} {
			r := s.get("/api/deliveries" + q)
			var e struct{ Error string }
			r.json(t, &e)
			if r.code != 400 || e.Error == "" {
				t.Errorf("API %s: %d %s", q, r.code, r.body)
			}
			if p := s.get("/deliveries" + q); p.code != 400 || !strings.Contains(p.body, "<h1>Bad Request") {
				t.Errorf("page %s: %d", q, p.code)
			}
		}
		if r := s.get("/api/deliveries/12345"); r.code != 404 {
			t.Errorf("unknown delivery: %d %s", r.code, r.body)
		}
	})
	t.Run("one delivery", func(t *testing.T) {
		var d struct {
			training.Delivery
			Payload map[string]any `json:"payload"`
		}
		s.get("/api/deliveries/"+itoa(all.Deliveries[3].ID)).json(t, &d)
		if d.WebhookID != "msg_d1" || d.Payload["status"] != "processing" {
			t.Fatalf("%+v", d)
		}
		s.get("/deliveries/"+itoa(all.Deliveries[0].ID)).has(t, "Delivery #", "✕</span> Refused", "no valid signature", "&#34;status&#34;: &#34;failed&#34;", "Replay this delivery")
	})

	t.Run("replay from the page", func(t *testing.T) {
		first := all.Deliveries[3] // msg_d1, applied
		tok := s.csrf("/deliveries/" + itoa(first.ID))
		r := s.post("/deliveries/"+itoa(first.ID)+"/replay", url.Values{"csrf": {tok}})
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		r.has(t, `id="replay-result"`, "<strong>Replayed:</strong> the webhook handler answered HTTP ", "recorded as a new delivery")
		var after deliveriesPage
		apptest.WaitFor(t, "the replay to be recorded", 5*time.Second, func() bool {
			s.get("/api/deliveries").json(t, &after)
			return len(after.Deliveries) == 5
		})
		if d, _ := s.app.Service.Model(t.Context(), m.ID); d.Status != training.Ready || len(d.History) != 3 {
			t.Fatalf("a replay changed the model: %s, %d entries", d.Status, len(d.History))
		}
		latest := after.Deliveries[0]
		if latest.ReplayOf != first.ID {
			t.Errorf("the new delivery does not name the one it replayed: %+v (the store must keep replay_of)", latest)
		}
		if strings.Contains(r.body, "HTTP 200") {
			if latest.Outcome != "duplicate" {
				t.Errorf("replay of an applied delivery: outcome %q, want duplicate", latest.Outcome)
			}
		} else {
			t.Errorf("replay of a genuine stored delivery was refused (the store must keep webhook-timestamp and webhook-signature):\n%s",
				regexp.MustCompile(`(?s)<div class="notice[^>]*id="replay-result">.*?</div>`).FindString(r.body))
		}
	})
	t.Run("replay through the API", func(t *testing.T) {
		forged := all.Deliveries[0]
		r := s.do(s.client, "POST", "/api/deliveries/"+itoa(forged.ID)+"/replay", nil, nil)
		var rep struct {
			DeliveryID int64  `json:"delivery_id"`
			Code       int    `json:"code"`
			Error      string `json:"error"`
		}
		r.json(t, &rep)
		// A forged delivery stays forged: today's key does not sign it either.
		if r.code != 200 || rep.DeliveryID != forged.ID || rep.Code != http.StatusUnauthorized || !strings.Contains(rep.Error, "signature") {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if r := s.do(s.client, "POST", "/api/deliveries/424242/replay", nil, nil); r.code != 404 {
			t.Fatalf("unknown delivery: %d", r.code)
		}
		if d, _ := s.app.Service.Model(t.Context(), m.ID); d.Status != training.Ready {
			t.Fatal("replaying a forged delivery changed the model")
		}
	})
}
