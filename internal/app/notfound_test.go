package app_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// Registering a training id Replicate does not know answers 422 and keeps
// nothing.
func TestRegisterUnknownTrainingIs422(t *testing.T) {
	s, _ := withSim(t, "off", fakereplicate.Options{}, nil)
	const unknown = "doesnotexist000000000000aa"
	r := s.do("POST", "/api/models", []byte(`{"training_id":"`+unknown+`"}`), jsonHeader)
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(r.errorText(), service.NotFoundError(unknown)) {
		t.Fatalf("register unknown training: %d %s; want 422 saying %q", r.code, r.body, service.NotFoundError(unknown))
	}
	list := s.do("GET", "/api/models", nil, nil)
	if list.code != http.StatusOK || strings.Contains(string(list.body), unknown) {
		t.Fatalf("after a refused registration the list is %d %s; want no model", list.code, list.body)
	}
}

// Stopping the demo mid-training and starting it again gives trainhook a
// simulator that forgot every training: the models it was tracking fail
// with a clear error once the grace period is over, instead of being polled
// forever. A cancel of such a model ends it at once.
func TestModelsForgottenByReplicateFail(t *testing.T) {
	app.SetNotFoundGrace(t, 2*time.Second)
	db := filepath.Join(t.TempDir(), "trainhook.db")
	env := map[string]string{"DATABASE_URL": db}
	s, _ := withSim(t, "off", fakereplicate.Options{Duration: time.Hour}, env)
	var ids []string
	for _, dest := range []string{"forgotten-a", "forgotten-b"} {
		code, m, msg := s.startTraining(startBody(dest), nil)
		if code != http.StatusCreated || m.Status != training.Training {
			t.Fatalf("start: %d %s %s", code, m.Status, msg)
		}
		ids = append(ids, m.ID)
	}
	s.srv.Stop()

	// A new simulator: it has no record of either training.
	s2, _ := withSim(t, "off", fakereplicate.Options{}, env)
	r := s2.do("POST", "/api/models/"+ids[1]+"/cancel", nil, nil)
	var canceled training.Model
	if r.code != http.StatusOK {
		t.Fatalf("cancel a forgotten training: %d %s; want 200", r.code, r.body)
	}
	r.json(t, &canceled)
	if canceled.Status != training.Failed || canceled.Error != service.NotFoundError(canceled.TrainingID) {
		t.Fatalf("canceled forgotten model is %s (%q); want Failed saying Replicate has no such training", canceled.Status, canceled.Error)
	}

	d := s2.waitFinal(ids[0])[ids[0]]
	if d.Status != training.Failed || d.Error != service.NotFoundError(d.TrainingID) {
		t.Fatalf("forgotten model is %s (%q); want Failed with %q", d.Status, d.Error, service.NotFoundError(d.TrainingID))
	}
	if src := lastSource(d); src != training.SourcePoll {
		t.Errorf("the failure was recorded from %s, want poll", src)
	}
}
