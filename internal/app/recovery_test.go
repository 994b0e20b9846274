package app_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// Two starts in doubt with the same trainer and input but different
// destinations (one dataset trained into two models) each get the training
// created for them, not each other's.
//
// This crossed them once: recovery bound the first listed training with the
// same trainer and input, and list results carry no webhook URL. Now each
// candidate is fetched whole (its webhook URL names the model in webhook
// mode; a succeeded one's output names its destination), and indistinct
// candidates are left alone until something tells them apart.
func TestRecoveredStartsAreNotCrossed(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"off", "on"} {
		t.Run("webhooks "+mode, func(t *testing.T) {
			t.Parallel()
			// Long trainings: recovery runs before the first webhook could
			// bind a training to its model.
			sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_recover", Duration: time.Minute})
			ln := apptest.Listen(t)
			a := apptest.Start(t, apptest.Options{Listener: ln, Env: map[string]string{
				"DATABASE_URL": filepath.Join(t.TempDir(), "recover.db"), "APP_URL": apptest.URL(ln),
				"TRAINHOOK_WEBHOOKS": mode, "REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_recover",
				"REPLICATE_WEBHOOK_SECRET": sim.Key().Secret(), "TRAINHOOK_POLL_INTERVAL": "100ms",
			}}).App
			ctx := t.Context()

			// Both creates reach Replicate; both answers are lost.
			if err := sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 502, Count: 2, After: true}); err != nil {
				t.Fatal(err)
			}
			var models []training.Model
			for _, dest := range []string{"dataset-into-a", "dataset-into-b"} {
				m, _, err := a.Service.Start(ctx, service.StartRequest{
					Trainer:     fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion,
					Destination: fakereplicate.DefaultUsername + "/" + dest,
					Input:       json.RawMessage(`{"input_images":"https://example.com/one-dataset.zip","steps":1000}`),
				})
				var se *service.Error
				if !errors.As(err, &se) || se.Kind != service.Upstream || m.Status != training.Pending {
					t.Fatalf("start into %s: %+v, %v; want a start in doubt", dest, m, err)
				}
				models = append(models, m)
			}
			if mode == "off" {
				// In polling mode nothing in a running training tells the two
				// apart, so trainhook binds neither until one does: a
				// succeeded training's output names its destination.
				time.Sleep(2 * time.Second)
				for _, m := range models {
					if got, _ := a.Store.GetModel(ctx, m.ID); got.TrainingID != "" {
						t.Fatalf("model %s was bound to %s while the candidates were indistinguishable", m.ID, got.TrainingID)
					}
				}
				for _, tr := range sim.Trainings() {
					if err := sim.Complete(tr.ID, "succeeded", ""); err != nil {
						t.Fatal(err)
					}
				}
			}
			deadline := time.Now().Add(20 * time.Second)
			for _, m := range models {
				for {
					got, err := a.Store.GetModel(ctx, m.ID)
					if err != nil {
						t.Fatal(err)
					}
					if got.TrainingID != "" {
						truth, _ := sim.Training(got.TrainingID)
						if truth.Destination != m.Destination {
							t.Errorf("model %s (destination %s) was bound to training %s, which trains %s", m.ID, m.Destination, got.TrainingID, truth.Destination)
						}
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("model %s was not recovered", m.ID)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			if n := len(sim.Trainings()); n != 2 {
				t.Errorf("%d trainings, want 2", n)
			}
		})
	}
}

// A start in doubt whose training exists is found however many trainings
// the account started since, and never created a second time. A start is
// recovered only after its lease when the process died mid-create, or
// after RecoverAfter when the answer was lost; an account may start many
// hundreds of trainings meanwhile, so recovery pages back through the list
// (newest first) until it passes the model's creation, not a fixed number
// of pages.
func TestRecoveryLooksPastFivePages(t *testing.T) {
	t.Parallel()
	sim, simURL := apptest.Sim(t, fakereplicate.Options{Token: "r8_recover", Duration: 10 * time.Minute})
	a := apptest.Start(t, apptest.Options{Env: map[string]string{
		"DATABASE_URL": filepath.Join(t.TempDir(), "recover.db"), "TRAINHOOK_WEBHOOKS": "off",
		"REPLICATE_BASE_URL": simURL, "REPLICATE_API_TOKEN": "r8_recover",
		// Recovery starts 10 s after the lost answer (2 × the interval).
		"TRAINHOOK_POLL_INTERVAL": "5s",
	}}).App
	ctx := t.Context()

	if err := sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 502, After: true}); err != nil {
		t.Fatal(err)
	}
	dest := fakereplicate.DefaultUsername + "/recover-deep"
	m, _, err := a.Service.Start(ctx, service.StartRequest{
		Trainer: fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion, Destination: dest,
		Input: json.RawMessage(`{"input_images":"https://example.com/deep.zip"}`),
	})
	if m.Status != training.Pending || err == nil {
		t.Fatalf("want a start in doubt: %+v %v", m, err)
	}
	// Meanwhile the account starts 600 other trainings (other apps, other users).
	other, err := replicate.NewClient(replicate.ClientOptions{BaseURL: simURL, Token: "r8_recover", RateLimit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.CreateModel(ctx, replicate.CreateModelRequest{Owner: fakereplicate.DefaultUsername, Name: "busy", Visibility: "private", Hardware: "cpu"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 600; i++ {
		if _, err := other.CreateTraining(ctx, fakereplicate.FluxTrainer+":"+fakereplicate.FluxTrainerVersion, replicate.CreateTrainingRequest{
			Destination: fakereplicate.DefaultUsername + "/busy", Input: json.RawMessage(`{"steps":1}`),
		}); err != nil {
			t.Fatal(err)
		}
	}
	apptest.WaitFor(t, "model "+m.ID+" is recovered", 30*time.Second, func() bool {
		got, err := a.Store.GetModel(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.TrainingID != ""
	})
	n := 0
	for _, tr := range sim.Trainings() {
		if tr.Destination == dest {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the model's destination got %d trainings, want 1", n)
	}
}
