package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/training"
)

func (s *server) listIDs(query string) []string {
	s.t.Helper()
	r := s.do("GET", "/api/models"+query, nil, nil)
	if r.code != http.StatusOK {
		s.t.Fatalf("list %s: %d %s", query, r.code, r.body)
	}
	var l struct{ Models []training.Model }
	r.json(s.t, &l)
	var ids []string
	for _, m := range l.Models {
		ids = append(ids, m.ID)
	}
	return ids
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// A finished model can be removed: it leaves the list, keeps its record and
// history, and shows again with archived=true. A running one is refused
// with 409 until it is canceled.
func TestRemoveModel(t *testing.T) {
	s, _ := withSim(t, "off", fakereplicate.Options{Duration: time.Hour}, nil)
	code, running, msg := s.startTraining(startBody("rm-running"), nil)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, msg)
	}
	// A typo in the trainer: Replicate refuses, the model is Failed.
	code, typo, msg := s.startTraining(`{"trainer":"nobody/nothing","destination":"trainhook-sim/rm-typo","input":{}}`, nil)
	if code != http.StatusUnprocessableEntity || typo.Status != training.Failed {
		t.Fatalf("start with a bad trainer: %d %s %s; want 422 and a Failed model", code, typo.Status, msg)
	}

	r := s.do("DELETE", "/api/models/"+running.ID, nil, nil)
	if r.code != http.StatusConflict || !strings.Contains(r.errorText(), "cancel it first") {
		t.Fatalf("remove a running model: %d %s; want 409 saying to cancel it first", r.code, r.body)
	}
	if d := s.model(running.ID); d.ArchivedAt != nil || d.Status != training.Training {
		t.Fatalf("a refused removal changed the model: %+v", d.Model)
	}

	r = s.do("DELETE", "/api/models/"+typo.ID, nil, nil)
	var removed training.Model
	if r.code != http.StatusOK {
		t.Fatalf("remove a failed model: %d %s", r.code, r.body)
	}
	r.json(t, &removed)
	if removed.ArchivedAt == nil || removed.Status != training.Failed {
		t.Fatalf("removed model: %+v; want Failed with archived_at", removed)
	}
	if ids := s.listIDs(""); contains(ids, typo.ID) || !contains(ids, running.ID) {
		t.Errorf("list after removal: %v; want %s left out and %s shown", ids, typo.ID, running.ID)
	}
	if ids := s.listIDs("?archived=true"); !contains(ids, typo.ID) {
		t.Errorf("list with archived=true: %v; want %s in it", ids, typo.ID)
	}
	if r := s.do("GET", "/api/models?archived=maybe", nil, nil); r.code != http.StatusBadRequest || !strings.Contains(r.errorText(), "archived must be true or false") {
		t.Errorf("archived=maybe: %d %s; want 400", r.code, r.body)
	}
	d := s.model(typo.ID)
	if d.ArchivedAt == nil || len(d.History) < 3 || d.History[len(d.History)-1].Decision != "archived" {
		t.Errorf("removed model by id: %+v with history %+v; want it archived, its history kept and the removal in it", d.Model, d.History)
	}
	// Removing it again changes nothing.
	if r := s.do("DELETE", "/api/models/"+typo.ID, nil, nil); r.code != http.StatusOK || len(s.model(typo.ID).History) != len(d.History) {
		t.Errorf("second removal: %d %s", r.code, r.body)
	}
	if r := s.do("DELETE", "/api/models/01m00000000000000000000000", nil, nil); r.code != http.StatusNotFound {
		t.Errorf("remove an unknown model: %d %s; want 404", r.code, r.body)
	}

	// Canceled, it may be removed.
	if r := s.do("POST", "/api/models/"+running.ID+"/cancel", nil, nil); r.code != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	if r := s.do("DELETE", "/api/models/"+running.ID, nil, nil); r.code != http.StatusOK {
		t.Fatalf("remove a canceled model: %d %s", r.code, r.body)
	}
}

// Retry starts a new model with the old one's trainer, destination and
// input, linked to it; the old model is left as it was.
func TestRetryModel(t *testing.T) {
	s, sim := withSim(t, "off", fakereplicate.Options{Duration: time.Hour}, nil)
	code, first, msg := s.startTraining(startBody("retry"), nil)
	if code != http.StatusCreated {
		t.Fatalf("start: %d %s", code, msg)
	}
	if r := s.do("POST", "/api/models/"+first.ID+"/retry", nil, nil); r.code != http.StatusConflict || !strings.Contains(r.errorText(), "still Training") {
		t.Fatalf("retry a running model: %d %s; want 409", r.code, r.body)
	}
	if r := s.do("POST", "/api/models/"+first.ID+"/cancel", nil, nil); r.code != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	r := s.do("POST", "/api/models/"+first.ID+"/retry", nil, nil)
	if r.code != http.StatusCreated {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	var again training.Model
	r.json(t, &again)
	if again.ID == first.ID || again.RetryOf != first.ID || again.Status != training.Training ||
		again.Trainer != first.Trainer || again.Destination != first.Destination || again.Name != first.Name {
		t.Fatalf("retried model %+v; want a new Training model with first's trainer, destination and name, retry_of %s", again, first.ID)
	}
	var in1, in2 any
	_ = json.Unmarshal(first.Input, &in1)
	_ = json.Unmarshal(again.Input, &in2)
	if b1, _ := json.Marshal(in1); string(b1) != mustJSON(in2) {
		t.Errorf("retry input %s, want %s", again.Input, first.Input)
	}
	if got := r.header.Get("Location"); got != "/api/models/"+again.ID {
		t.Errorf("Location %q", got)
	}
	if d := s.model(first.ID); d.Status != training.Canceled {
		t.Errorf("the retried model is now %s, want it left Canceled", d.Status)
	}
	if n := len(sim.Trainings()); n != 2 {
		t.Errorf("%d trainings on the simulator, want 2", n)
	}
	if r := s.do("POST", "/api/models/01m00000000000000000000000/retry", nil, nil); r.code != http.StatusNotFound {
		t.Errorf("retry an unknown model: %d %s; want 404", r.code, r.body)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A destination under another account is refused by Replicate with 403;
// the failed model says so and names the account to use.
func TestDestinationOfAnotherOwner(t *testing.T) {
	s, _ := withSim(t, "off", fakereplicate.Options{}, nil)
	code, m, msg := s.startTraining(`{"trainer":"ostris/flux-dev-lora-trainer","destination":"acme/portrait-lora","input":{}}`, nil)
	want := "you may not create models under acme: the token belongs to trainhook-sim, so use a destination such as trainhook-sim/portrait-lora"
	if code != http.StatusUnprocessableEntity || m.Status != training.Failed || !strings.Contains(m.Error, want) || !strings.Contains(msg, want) {
		t.Fatalf("start under acme: %d, model %s %q, error %q; want 422 and a Failed model saying %q", code, m.Status, m.Error, msg, want)
	}
}
