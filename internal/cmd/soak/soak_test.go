package main

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
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
	if err != nil || o.n != 10000 || len(o.modes) != 2 || o.simRateLimit != 1800 || o.killMin != 5*time.Second {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	for _, args := range [][]string{
		{"--mode", "sideways"}, {"--n", "0"}, {"--budget", "3001"}, {"--drop-webhooks", "2"},
		{"--database-url", "postgres://x/y"}, // one database for two modes
		{"--instances", "0"}, {"extra"},
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
