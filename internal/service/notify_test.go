package service

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// Only moves to a wanted status write events, one per URL (a model's own
// URL added once, even when it is also configured); a report that changes
// nothing writes none.
func TestNotifyWritesWantedMoves(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const cfgURL, ownURL = "http://127.0.0.1:9/cfg", "http://127.0.0.1:9/own"
	kicks := 0
	svc := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler), Notify: Notify{
		URLs: []string{cfgURL}, Events: []string{"model.ready", "model.failed"}, Kick: func() { kicks++ },
		AllowURL: func(u string) bool { return strings.HasPrefix(u, "http://127.0.0.1:9/") },
	}})
	t.Cleanup(svc.Close)
	m, _, err := svc.Register(ctx, RegisterRequest{TrainingID: "notify-1", NotifyURL: ownURL})
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := svc.Register(ctx, RegisterRequest{TrainingID: "notify-2", NotifyURL: cfgURL})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Register(ctx, RegisterRequest{TrainingID: "notify-3", NotifyURL: "http://10.0.0.1/x"}); KindOf(err) != Unprocessable {
		t.Fatalf("a notify_url outside the allowed origins: %v, want Unprocessable", err)
	}
	for _, o := range []training.Observation{
		{TrainingID: "notify-1", Remote: "processing", Source: training.SourcePoll}, // Training: not wanted
		{TrainingID: "notify-1", Remote: "succeeded", Output: json.RawMessage(`{"version":"o/m:1"}`), Source: training.SourcePoll},
		{TrainingID: "notify-1", Remote: "succeeded", Output: json.RawMessage(`{"version":"o/m:1"}`), Source: training.SourcePoll}, // same: nothing
		{TrainingID: "notify-2", Remote: "failed", Error: "boom", Source: training.SourcePoll},
	} {
		if _, err := svc.Observe(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := st.ListNotifications(ctx, store.NotificationFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range ns {
		got = append(got, n.ModelID+" "+n.Type+" "+n.URL)
		if strings.Contains(n.EventID, ".") || !strings.HasPrefix(n.EventID, "evt_") {
			t.Errorf("row %+v", n)
		}
		// The event's sequence is the model's version after the change:
		// nothing has changed these final models since.
		if stored, err := st.GetModel(ctx, n.ModelID); err != nil || n.Sequence != stored.Version {
			t.Errorf("%s sequence %d, want the model's version %d (%v)", n.EventID, n.Sequence, stored.Version, err)
		}
		var pm training.Model
		if err := json.Unmarshal(n.Model, &pm); err != nil || pm.ID != n.ModelID || pm.LogTail != "" || !pm.Status.Terminal() {
			t.Errorf("payload model %s (%v)", n.Model, err)
		}
	}
	want := []string{m2.ID + " model.failed " + cfgURL, m.ID + " model.ready " + ownURL, m.ID + " model.ready " + cfgURL}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("notifications (newest first):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// An origin removed from the allow-list is not called any more, though
	// the model's URL was stored when it was allowed.
	svc2 := New(Options{Store: st, Logger: slog.New(slog.DiscardHandler), Notify: Notify{
		URLs: []string{cfgURL}, Events: []string{"model.ready", "model.failed"},
		AllowURL: func(u string) bool { return strings.HasPrefix(u, "http://127.0.0.1:9/elsewhere") },
	}})
	t.Cleanup(svc2.Close)
	m4, _, err := svc2.Register(ctx, RegisterRequest{TrainingID: "notify-4"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.SetModelNotifyURL(ctx, m4.ID, ownURL) }); err != nil {
		t.Fatal(err)
	}
	if _, err := svc2.Observe(ctx, training.Observation{TrainingID: "notify-4", Remote: "failed", Source: training.SourcePoll}); err != nil {
		t.Fatal(err)
	}
	if ns, _ := st.ListNotifications(ctx, store.NotificationFilter{ModelID: m4.ID, Limit: 10}); len(ns) != 1 || ns[0].URL != cfgURL {
		t.Errorf("with the model's origin no longer allowed: %+v, want only %s", ns, cfgURL)
	}
	if kicks != 2 {
		t.Errorf("the sender was kicked %d times, want once per commit with events (2)", kicks)
	}
}
