package app_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
)

// Lists and live events carry each model's summary: status, progress with
// the trainer's time-left estimate, error; the log tail comes with the
// single model's GET, or a list with ?include=logs.
func TestListsAndEventsCarryASummary(t *testing.T) {
	s := start(t, nil)
	m := s.register("summary-training")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if r := s.deliver("msg_summary_1", payload("summary-training", "processing")); r.code != http.StatusOK {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	var event string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data:") && strings.Contains(line, m.ID) && strings.Contains(line, `"Training"`) {
			event = line
			break
		}
	}
	if event == "" {
		t.Fatalf("no event for model %s: %v", m.ID, sc.Err())
	}
	if strings.Contains(event, "log_tail") || !strings.Contains(event, `"eta_seconds":18`) || !strings.Contains(event, `"percent":40`) {
		t.Errorf("event %s: want progress with eta_seconds 18 and no log_tail", event)
	}

	list := s.do("GET", "/api/models", nil, nil)
	if strings.Contains(string(list.body), "log_tail") || !strings.Contains(string(list.body), `"eta_seconds":18`) {
		t.Errorf("list: %s; want no log_tail and eta_seconds 18", list.body)
	}
	withLogs := s.do("GET", "/api/models?include=logs", nil, nil)
	if !strings.Contains(string(withLogs.body), `"log_tail":"Loading\n 40%`) {
		t.Errorf("list with include=logs: %s; want the log tail", withLogs.body)
	}
	if d := s.model(m.ID); !strings.HasPrefix(d.LogTail, "Loading\n 40%") || d.Progress.ETASeconds != 18 {
		t.Errorf("single model: log tail %q, eta %d; want the log tail and 18", d.LogTail, d.Progress.ETASeconds)
	}
	if r := s.do("GET", "/api/models?include=everything", nil, nil); r.code != http.StatusBadRequest || !strings.Contains(r.errorText(), "include must be logs") {
		t.Errorf("include=everything: %d %s; want 400", r.code, r.body)
	}
	// A finished training has no time left.
	if r := s.deliver("msg_summary_2", payload("summary-training", "succeeded")); r.code != http.StatusOK {
		t.Fatalf("deliver: %d %s", r.code, r.body)
	}
	if d := s.model(m.ID); d.Progress.ETASeconds != 0 {
		t.Errorf("Ready model has eta %d", d.Progress.ETASeconds)
	}
}

// A training links to its page on replicate.com, from the urls.web
// Replicate reports, in the API and on the dashboard.
func TestTrainingLinksToReplicate(t *testing.T) {
	s, _ := withSim(t, "off", fakereplicate.Options{Duration: time.Hour}, nil)
	code, m, msg := s.startTraining(startBody("linked"), nil)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, msg)
	}
	want := "https://replicate.com/p/" + m.TrainingID
	if m.WebURL != want {
		t.Fatalf("web_url %q, want %q", m.WebURL, want)
	}
	page := s.do("GET", "/models/"+m.ID, nil, nil)
	if !strings.Contains(string(page.body), `id="replicate-link" href="`+want+`"`) {
		t.Errorf("the model page does not link to %s", want)
	}
	if list := s.do("GET", "/", nil, nil); !strings.Contains(string(list.body), `<a href="`+want+`"`) {
		t.Errorf("the list does not link to %s", want)
	}
}
