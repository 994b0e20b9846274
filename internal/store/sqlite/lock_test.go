package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// A second Open of a file held by a Store is refused with a message naming
// the file and the holder; once the first is closed the file opens again.
func TestSecondOpenIsRefused(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "trainhook.db")
	first, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, path)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v; want ErrInUse", err)
	}
	for _, want := range []string{path, fmt.Sprintf("pid %d", os.Getpid()), "DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not mention %q", err, want)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}

// ReleaseLeases makes due the starts in doubt and the claimed checks a dead
// process left, and leaves scheduled checks and final models alone.
func TestReleaseLeases(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	models := map[string]*training.Model{
		"start": {Status: training.Pending, NextCheckAt: at(3 * time.Minute)},
		"claim": {Status: training.Training, TrainingID: "tr-claim", NextCheckAt: at(20 * time.Second)},
		"later": {Status: training.Training, TrainingID: "tr-later", NextCheckAt: at(10 * time.Minute)},
		"due":   {Status: training.Training, TrainingID: "tr-due", NextCheckAt: at(-time.Minute)},
		"final": {Status: training.Failed, TrainingID: "tr-final"},
	}
	i := 0
	for name, m := range models {
		i++
		m.ID, m.Name, m.CreatedAt, m.UpdatedAt = training.NewID(now.Add(time.Duration(i))), name, now, now
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		for _, m := range models {
			if err := tx.InsertModel(ctx, m); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n, err := s.ReleaseLeases(ctx, now, 30*time.Second)
	if err != nil || n != 2 {
		t.Fatalf("ReleaseLeases: %d, %v; want the start and the claim", n, err)
	}
	want := map[string]*time.Time{"start": &now, "claim": &now, "later": models["later"].NextCheckAt, "due": models["due"].NextCheckAt, "final": nil}
	for name, m := range models {
		got, err := s.GetModel(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		w := want[name]
		if (got.NextCheckAt == nil) != (w == nil) || w != nil && !got.NextCheckAt.Equal(*w) {
			t.Errorf("%s: next check %v, want %v", name, got.NextCheckAt, w)
		}
	}
}
