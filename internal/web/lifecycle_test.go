package web_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

var modelPath = regexp.MustCompile(`^/models/([0-9a-z]{26})`)

// A model a typo failed shows its error in the list; its page offers
// Retry and Remove, which work with the session's CSRF token and are
// refused without it.
func TestFailedModelRetryAndRemove(t *testing.T) {
	s, sim := withSimulator(t, fakereplicate.Options{Duration: 10 * time.Minute})
	tok := s.csrf("/models/new")
	r := s.post("/models/new", url.Values{"csrf": {tok}, "name": {"typo portrait"}, "trainer": {"nobody/no-such-trainer"},
		"destination": {"trainhook-sim/typo"}, "input": {`{"steps": 10}`}})
	if r.code != http.StatusUnprocessableEntity {
		t.Fatalf("start with a bad trainer: %d", r.code)
	}
	ms, _, err := s.app.Service.Models(t.Context(), store.ModelFilter{})
	if err != nil || len(ms) != 1 || ms[0].Status != training.Failed {
		t.Fatalf("models: %+v %v", ms, err)
	}
	failed := ms[0]

	list := s.get("/")
	list.has(t, `class="error-text"`, "never started on Replicate", "resolve the latest version of trainer nobody/no-such-trainer")
	list.hasNot(t, "no training id yet")

	page := s.get("/models/" + failed.ID)
	page.has(t, `action="/models/`+failed.ID+`/retry"`, `id="retry-button"`, `action="/models/`+failed.ID+`/remove"`, `id="remove-button"`)

	// Without the CSRF token nothing happens.
	if r := s.post("/models/"+failed.ID+"/remove", url.Values{}); r.code != http.StatusForbidden {
		t.Fatalf("remove without CSRF: %d", r.code)
	}
	if d, _ := s.app.Service.Model(t.Context(), failed.ID); d.ArchivedAt != nil {
		t.Fatal("a remove without the CSRF token archived the model")
	}

	// Retry: the trainer is still wrong, so Replicate refuses again; the
	// new model is linked to the old.
	tok = s.csrf("/models/" + failed.ID)
	r = s.post("/models/"+failed.ID+"/retry", url.Values{"csrf": {tok}, "key": {"web-retry-1"}})
	m := modelPath.FindStringSubmatch(r.header.Get("Location"))
	if r.code != http.StatusSeeOther || m == nil || m[1] == failed.ID {
		t.Fatalf("retry: %d %v", r.code, r.header)
	}
	retried, err := s.app.Service.Model(t.Context(), m[1])
	if err != nil || retried.RetryOf != failed.ID || retried.Trainer != failed.Trainer || retried.Destination != failed.Destination {
		t.Fatalf("retried model %+v, %v; want a retry of %s", retried.Model, err, failed.ID)
	}
	s.get("/models/"+retried.ID).has(t, "Retry of", `href="/models/`+failed.ID+`"`)

	r = s.post("/models/"+failed.ID+"/remove", url.Values{"csrf": {tok}})
	if r.code != http.StatusSeeOther || !strings.HasSuffix(r.header.Get("Location"), "?notice=removed") {
		t.Fatalf("remove: %d %v", r.code, r.header)
	}
	s.get("/").hasNot(t, failed.ID)
	gone := s.get("/models/" + failed.ID)
	gone.has(t, "Removed from the list", "hidden from the list; kept here")
	gone.hasNot(t, `id="remove-button"`)
	if n := len(sim.Trainings()); n != 0 {
		t.Errorf("%d trainings on the simulator, want none (both refused)", n)
	}

	// A running model cannot be removed: the page says why.
	tok = s.csrf("/models/new")
	r = s.post("/models/new", url.Values{"csrf": {tok}, "trainer": {"ostris/flux-dev-lora-trainer"}, "destination": {"trainhook-sim/running"}, "input": {`{"steps": 10}`}})
	m = modelPath.FindStringSubmatch(r.header.Get("Location"))
	if m == nil {
		t.Fatalf("start: %d %v", r.code, r.header)
	}
	s.get("/models/"+m[1]).hasNot(t, `id="remove-button"`, `id="retry-button"`)
	r = s.post("/models/"+m[1]+"/remove", url.Values{"csrf": {tok}})
	if r.code != http.StatusConflict {
		t.Fatalf("remove a running model: %d", r.code)
	}
	r.has(t, "The model was not removed: ", "cancel it first")
}
