package service_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// A delivery for a training trainhook started must carry the model's token.
// One that arrived without it before the
// training id was saved is held like any early delivery; when the model
// learns its training id, the held report is dropped, not applied, while a
// tokenized early report is.
func TestHeldUntokenedDeliveryIsNotApplied(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := service.New(service.Options{Store: st})
	t.Cleanup(svc.Close)

	now := time.Now().UTC()
	started := training.Model{ID: training.NewID(now), Name: "started", Trainer: "owner/trainer:abc",
		Destination: "owner/dest", Status: training.Pending, CreatedAt: now, UpdatedAt: now}
	err = st.Write(ctx, func(tx store.Tx) error { return tx.InsertModel(ctx, &started) })
	if err != nil {
		t.Fatal(err)
	}

	// An untokened "succeeded" for the training id no model knows yet: held.
	forged := training.Observation{TrainingID: "tr-early", Remote: "succeeded", Output: []byte(`{"version":"forged","weights":"https://example.com/forged.tar"}`),
		Source: training.SourceWebhook, SourceRef: "msg_forged"}
	res, err := svc.Deliver(ctx, forged, training.Delivery{WebhookID: "msg_forged", TrainingID: "tr-early", RemoteStatus: "succeeded"})
	if err != nil || res.Outcome != service.OutcomeHeld {
		t.Fatalf("untokened early delivery: %+v, %v; want held", res, err)
	}

	// The tokenized "processing" binds the training id to the model.
	bind := training.Observation{TrainingID: "tr-early", ModelID: started.ID, Remote: "processing",
		Source: training.SourceWebhook, SourceRef: "msg_bind"}
	res, err = svc.Deliver(ctx, bind, training.Delivery{WebhookID: "msg_bind", TrainingID: "tr-early", RemoteStatus: "processing"})
	if err != nil {
		t.Fatalf("tokenized delivery: %v", err)
	}
	got, err := st.GetModel(ctx, started.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.TrainingID != "tr-early" || got.Status != training.Training || len(got.Output) != 0 {
		t.Fatalf("model after binding: training %q, status %s, output %s; want tr-early, Training, no output (the held untokened report dropped)",
			got.TrainingID, got.Status, got.Output)
	}
}
