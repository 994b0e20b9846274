package main

import (
	"encoding/json"
	"fmt"
	"github.com/trainhook/trainhook/internal/apptest"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/training"
)

// roundRobin is a loopback load balancer: each request goes to the next
// instance that accepts a connection.
type roundRobin struct {
	next     atomic.Int64
	backends []*url.URL
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for range rr.backends {
		u := rr.backends[int(rr.next.Add(1))%len(rr.backends)]
		c, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err != nil {
			continue // that instance is down
		}
		c.Close()
		httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
		return
	}
	http.Error(w, "no instance up", http.StatusBadGateway)
}

// Three instances on one PostgreSQL behind a load balancer, with the
// simulator duplicating and dropping webhooks, and one instance killed
// mid-run: every model ends in its true state, each transition is applied
// once, no model gets two trainings, and the instances together keep to the
// one API budget.
func TestThreeInstancesOnPostgres(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	const budget = 300
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_multi", Duration: 3 * time.Second, WebhookRetryWindow: 2 * time.Second,
		Faults: fakereplicate.Faults{DropWebhooks: 0.2, DupWebhooks: 0.3, ReorderWebhooks: true, FailRate: 0.2}})

	rr := &roundRobin{}
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lbSrv := &http.Server{Handler: rr}
	go lbSrv.Serve(lb)
	defer lbSrv.Close()
	appURL := "http://" + lb.Addr().String()

	env := []string{
		"DATABASE_URL=" + dbURL, "APP_URL=" + appURL, "TRAINHOOK_WEBHOOKS=on",
		"REPLICATE_BASE_URL=" + simURL, "REPLICATE_API_TOKEN=r8_multi", "REPLICATE_WEBHOOK_SECRET=" + sim.Key().Secret(),
		"TRAINHOOK_RECONCILE_AFTER=2s", fmt.Sprintf("TRAINHOOK_API_RATE_LIMIT=%d", budget),
	}
	var procs []*proc
	for i := 0; i < 3; i++ {
		p := serve(t, env...)
		procs = append(procs, p)
		u, _ := url.Parse(p.url)
		rr.backends = append(rr.backends, u)
	}

	const n = 18
	var ids []string
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"trainer":"ostris/flux-dev-lora-trainer","destination":"trainhook-sim/multi-%d","input":{"steps":100}}`, i)
		target := procs[i%3]
		if i > n/2 && target == procs[1] {
			target = procs[0] // the killed one
		}
		code, resp := post(t, target.url+"/api/models", []byte(body), nil)
		if code != 201 {
			t.Fatalf("start %d: %d %s", i, code, resp)
		}
		var m struct{ ID string }
		_ = json.Unmarshal([]byte(resp), &m)
		ids = append(ids, m.ID)
		if i == n/2 {
			_ = procs[1].cmd.Process.Signal(syscall.SIGKILL) // one instance dies mid-run
			_ = procs[1].cmd.Wait()
		}
	}
	live := []*proc{procs[0], procs[2]}

	deadline := time.Now().Add(60 * time.Second)
	type detail struct {
		training.Model
		History []training.HistoryEntry `json:"history"`
	}
	final := map[string]detail{}
	for len(final) < n && time.Now().Before(deadline) {
		for i, id := range ids {
			if _, ok := final[id]; ok {
				continue
			}
			resp, err := http.Get(live[i%2].url + "/api/models/" + id)
			if err != nil {
				t.Fatal(err)
			}
			var d detail
			_ = json.NewDecoder(resp.Body).Decode(&d)
			resp.Body.Close()
			if d.Status.Terminal() {
				final[id] = d
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(final) < n {
		t.Fatalf("%d of %d models final after 60s", len(final), n)
	}
	perDest := map[string]int{}
	for _, tr := range sim.Trainings() {
		perDest[tr.Destination]++
	}
	for _, d := range final {
		truth, ok := sim.Training(d.TrainingID)
		want, _ := training.MapRemote(truth.Status)
		if !ok || d.Status != want || want == training.Ready && !strings.Contains(string(d.Output), truth.OutputVersion) || want == training.Failed && d.Error != truth.Error {
			t.Errorf("model %s: %s %q, truth %s %q", d.ID, d.Status, d.Error, truth.Status, truth.Error)
		}
		moves := 0
		for _, h := range d.History {
			if h.Decision == training.Move && h.To.Terminal() {
				moves++
			}
			if h.Decision == training.Move && h.From.Terminal() {
				t.Errorf("model %s left a final status: %+v", d.ID, h)
			}
		}
		if moves != 1 {
			t.Errorf("model %s: %d final transitions", d.ID, moves)
		}
		if perDest[d.Destination] != 1 {
			t.Errorf("model %s: %d trainings", d.ID, perDest[d.Destination])
		}
	}
	st := sim.Stats()
	if st.MaxPerMinute > budget {
		t.Errorf("the instances sent %d requests in one minute; the shared budget is %d", st.MaxPerMinute, budget)
	}
	t.Logf("API calls %d, most in 60s %d, webhooks delivered %d dropped %d", st.Requests, st.MaxPerMinute, st.WebhooksDelivered, st.WebhooksDropped)
}
