package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/notify"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

func TestParseRange(t *testing.T) {
	for in, want := range map[string][2]time.Duration{
		"0": {0, 0}, "10s": {10 * time.Second, 10 * time.Second}, "5s-20s": {5 * time.Second, 20 * time.Second},
	} {
		lo, hi, err := parseRange(in)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("%q: %v %v %v", in, lo, hi, err)
		}
	}
	for _, in := range []string{"20s-5s", "-1s", "soon", "5s-"} {
		if _, _, err := parseRange(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.n != 10000 || len(o.modes) != 2 || o.simRateLimit != 1800 || o.killMin != 5*time.Second ||
		!o.notify || o.notifyFailRate != 0.2 || o.notifyTimeoutRate != 0.05 || o.notifyDown != 15*time.Second {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	for _, args := range [][]string{
		{"--mode", "sideways"}, {"--n", "0"}, {"--budget", "3001"}, {"--drop-webhooks", "2"},
		{"--database-url", "postgres://x/y"}, // one database for two modes
		{"--instances", "0"}, {"extra"},
		{"--notify-fail-rate", "1.5"}, {"--notify-fail-rate", "0.9", "--notify-timeout-rate", "0.2"}, {"--notify-down", "-1s"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if o, err := parseFlags([]string{"--mode", "polling", "--sim-rate-limit", "-1", "--database-url", "postgres://x/y"}, io.Discard); err != nil || o.simRateLimit != 0 {
		t.Errorf("%+v %v", o, err)
	}
}

func TestMismatch(t *testing.T) {
	done := time.Date(2026, 1, 1, 0, 0, 0, 123456000, time.UTC)
	truth := fakereplicate.TrainingTruth{ID: "t1", Status: "succeeded", CompletedAt: &done, OutputVersion: "o/d:v", Weights: "https://w"}
	out, _ := json.Marshal(map[string]string{"version": "o/d:v", "weights": "https://w"})
	ok := &detail{Model: training.Model{TrainingID: "t1", Status: training.Ready, Output: out, CompletedAt: &done}}
	if why := mismatch(ok, truth); why != "" {
		t.Fatalf("a match: %s", why)
	}
	wrong := func(f func(d *detail, tr *fakereplicate.TrainingTruth)) string {
		d, tr := *ok, truth
		f(&d, &tr)
		return mismatch(&d, tr)
	}
	for name, f := range map[string]func(d *detail, tr *fakereplicate.TrainingTruth){
		"other training":  func(d *detail, _ *fakereplicate.TrainingTruth) { d.TrainingID = "t2" },
		"other status":    func(d *detail, _ *fakereplicate.TrainingTruth) { d.Status = training.Failed },
		"other weights":   func(_ *detail, tr *fakereplicate.TrainingTruth) { tr.Weights = "https://other" },
		"still running":   func(_ *detail, tr *fakereplicate.TrainingTruth) { tr.Status = "processing" },
		"no completed_at": func(d *detail, _ *fakereplicate.TrainingTruth) { d.CompletedAt = nil },
		"failed, other error": func(d *detail, tr *fakereplicate.TrainingTruth) {
			tr.Status, tr.Error, d.Status, d.Error = "failed", "CUDA out of memory", training.Failed, "boom"
		},
	} {
		if wrong(f) == "" {
			t.Errorf("%s: not noticed", name)
		}
	}
	aborted := wrong(func(d *detail, tr *fakereplicate.TrainingTruth) {
		tr.Status, d.Status, d.Error = "aborted", training.Failed, "training was aborted before it started"
	})
	if aborted != "" {
		t.Errorf("aborted: %s", aborted)
	}
}

func TestQuantilesAndRedaction(t *testing.T) {
	p50, p99, maxV := quantiles([]float64{5, 1, 3, 2, 4})
	if p50 != 3 || p99 != 5 || maxV != 5 {
		t.Errorf("%v %v %v", p50, p99, maxV)
	}
	if got := redactDB("postgres://u:pw@h/db"); got != "postgres://u:xxxxx@h/db" {
		t.Error(got)
	}
	if got := redactDB("/tmp/x.db"); got != "/tmp/x.db" {
		t.Error(got)
	}
}

func TestCheckNotifications(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	body := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ev := func(id, model, typ string, seq int64, status, s int) arrival {
		return arrival{ID: id, ModelID: model, Type: typ, Sequence: seq, Body: body(id), EventAt: t0, At: at(s), Status: status}
	}
	// m1: training, then ready after a 500 and a duplicate 2xx; m2: failed.
	good := []arrival{
		ev("e1", "m1", "model.training", 1, 200, 1),
		ev("e2", "m1", "model.ready", 2, 500, 2),
		ev("e3", "m2", "model.failed", 1, 200, 3),
		ev("e2", "m1", "model.ready", 2, 200, 7),
		ev("e2", "m1", "model.ready", 2, 200, 9),
	}
	finals := map[string]training.Status{"m1": training.Ready, "m2": training.Failed}
	f := checkNotifications(good, finals)
	if f.Lost != 0 || f.OutOfOrder != 0 || f.BodyChange != 0 || len(f.Problems) != 0 {
		t.Fatalf("a clean run: %+v", f)
	}
	if f.Received != 5 || f.Accepted != 4 || f.Events != 3 || f.Retries != 2 || f.Duplicates != 1 {
		t.Errorf("counts: %+v", f)
	}
	if p50, _, maxV := quantiles(f.Lag); len(f.Lag) != 3 || p50 != 3 || maxV != 7 {
		t.Errorf("lag to the first 2xx: %v", f.Lag)
	}

	// Lost: m1's ready was only ever answered 500; m3 is canceled and
	// nothing came; a still-running model needs nothing.
	lost := []arrival{ev("e1", "m1", "model.training", 1, 200, 1), ev("e2", "m1", "model.ready", 2, 500, 2), ev("e3", "m2", "model.failed", 1, 200, 3)}
	f = checkNotifications(lost, map[string]training.Status{"m1": training.Ready, "m2": training.Failed, "m3": training.Canceled, "m4": training.Training})
	if f.Lost != 2 || f.OutOfOrder != 0 || f.BodyChange != 0 {
		t.Errorf("lost: %+v", f)
	}
	// A notification of another final status does not count for this one.
	f = checkNotifications([]arrival{ev("e3", "m2", "model.canceled", 1, 200, 3)}, map[string]training.Status{"m2": training.Failed})
	if f.Lost != 1 {
		t.Errorf("wrong type counted as notified: %+v", f)
	}

	// Out of order: m1's ready (2) arrives first, then its training (1),
	// even though both are answered 2xx in the end. A retry of an earlier
	// event after a later one's first arrival is not a violation.
	f = checkNotifications([]arrival{
		ev("e2", "m1", "model.ready", 2, 200, 1),
		ev("e1", "m1", "model.training", 1, 200, 2),
		ev("e3", "m2", "model.training", 1, 500, 3),
		ev("e4", "m2", "model.failed", 2, 200, 4),
		ev("e3", "m2", "model.training", 1, 200, 5),
	}, finals)
	if f.OutOfOrder != 1 || f.Lost != 0 {
		t.Errorf("out of order: %+v", f)
	}

	// One webhook-id, two bodies.
	changed := ev("e2", "m1", "model.ready", 2, 200, 8)
	changed.Body = body("something else")
	f = checkNotifications(append(append([]arrival(nil), good...), changed), finals)
	if f.BodyChange != 1 || f.Lost != 0 || f.OutOfOrder != 0 {
		t.Errorf("body changed: %+v", f)
	}
}

func TestNotifyFiguresFailTheReport(t *testing.T) {
	o, err := parseFlags([]string{"--mode", "webhook"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]notifyFigures{
		"lost": {Lost: 1}, "body changed": {BodyChange: 1}, "out of order": {OutOfOrder: 1},
	} {
		rep := newReport(o, "webhook")
		rep.fillNotify(notifyFigures{}, 0, 0)
		if !rep.Passed() {
			t.Fatalf("%s: a clean report fails", name)
		}
		rep.fillNotify(f, 0, 0)
		if rep.Passed() {
			t.Errorf("%s: report passes", name)
		}
	}
	rep := newReport(o, "webhook")
	rep.fillNotify(notifyFigures{}, 1, 0)
	if rep.Passed() {
		t.Error("a request that failed verification: report passes")
	}
}

func TestReceiver(t *testing.T) {
	rc, err := newReceiver(options{n: 100, notifyFailRate: 1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.close()
	keys, err := replicate.ParseKeys(rc.secret)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	committed := time.Now()
	post := func(id string, keys replicate.Keys) (int, error) {
		body := []byte(`{"type":"model.ready","timestamp":"` + committed.UTC().Format(time.RFC3339Nano) + `","data":{"model":{"id":"m1"},"sequence":2}}`)
		req, _ := http.NewRequest("POST", rc.url(), bytes.NewReader(body))
		notify.Sign(req.Header, keys, id, time.Now(), body)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// Every request fails, but one event at most twice: then it is accepted.
	for i, want := range []int{500, 500, 200, 200} {
		if code, err := post("evt_1", keys); err != nil || code != want {
			t.Fatalf("attempt %d: %d %v, want %d", i+1, code, err, want)
		}
	}
	other, _ := replicate.ParseKeys(replicate.NewKey(make([]byte, 32)).Secret())
	if code, err := post("evt_2", other); err != nil || code != http.StatusBadRequest {
		t.Fatalf("signed with another key: %d %v", code, err)
	}
	arrivals, badSig, _, _ := rc.snapshot()
	if len(arrivals) != 4 || badSig != 1 || arrivals[0].ModelID != "m1" || arrivals[0].Sequence != 2 || arrivals[0].Type != "model.ready" {
		t.Fatalf("arrivals %+v, failed verification %d", arrivals, badSig)
	}

	// Down: refused; up again on the same address.
	rc.goDown()
	committed = time.Now()
	if _, err := post("evt_3", keys); err == nil {
		t.Fatal("a request got through while the receiver was down")
	}
	if err := rc.comeUp(); err != nil {
		t.Fatal(err)
	}
	// evt_3 was committed while the receiver was down (its attempts may
	// have been refused): one fault at most.
	for i, want := range []int{500, 200} {
		if code, err := post("evt_3", keys); err != nil || code != want {
			t.Fatalf("after the stretch, attempt %d: %d %v, want %d", i+1, code, err, want)
		}
	}
}
