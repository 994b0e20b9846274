package app_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// A start a killed process left in doubt is recovered as soon as the next
// process opens the SQLite file, not when its 3-minute lease runs out: the
// new process holds the file alone, so the lease is nobody's.
func TestStartLeftByDeadProcessIsRecoveredAtOnce(t *testing.T) {
	db := filepath.Join(t.TempDir(), "trainhook.db")
	// The state a process killed during a create leaves: Pending, no
	// training id, NextCheckAt at the end of its start lease.
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	lease := now.Add(3 * time.Minute)
	m := training.Model{
		ID: training.NewID(now), Name: "interrupted", Trainer: "ostris/flux-dev-lora-trainer",
		Destination: "trainhook-sim/interrupted", Input: json.RawMessage(loraInput),
		Status: training.Pending, CreatedAt: now, UpdatedAt: now, NextCheckAt: &lease,
	}
	if err := st.Write(context.Background(), func(tx store.Tx) error { return tx.InsertModel(context.Background(), &m) }); err != nil {
		t.Fatal(err)
	}
	st.Close()

	s, sim := withSim(t, "off", fakereplicate.Options{Duration: time.Hour}, map[string]string{"DATABASE_URL": db})
	deadline := time.Now().Add(20 * time.Second)
	for {
		d := s.model(m.ID)
		if d.TrainingID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("model is %s without a training 20 s after the restart; its lease ran until %s", d.Status, lease.Format(time.TimeOnly))
		}
		time.Sleep(100 * time.Millisecond)
	}
	oneTrainingEach(t, sim, m)
}
