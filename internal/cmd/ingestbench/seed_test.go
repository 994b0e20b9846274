package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// TestSeed: a seeded file holds the models asked for, with the status mix
// of a long-lived deployment, each as trainhook would have stored it.
func TestSeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.db")
	const n = 3000
	now := time.Now().Truncate(time.Millisecond)
	res, err := Seed(context.Background(), SeedOptions{Path: path, Models: n, Span: 30 * 24 * time.Hour, Now: now, Batch: 700})
	if err != nil {
		t.Fatal(err)
	}
	if res.Models != n || res.Bytes <= 0 || res.Seconds <= 0 {
		t.Errorf("result %+v", res)
	}
	// Closed and checkpointed: the file alone is the database.
	if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
		t.Errorf("WAL left beside the seeded file: %v", err)
	}

	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	counts, err := st.CountModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for s, c := range counts {
		total += c
		if res.ByStatus[string(s)] != c {
			t.Errorf("%s: %d in the database, the result says %d", s, c, res.ByStatus[string(s)])
		}
	}
	inFlight := n * seedInFlightPercent / 100
	if total != n || counts[training.Pending]+counts[training.Training] != inFlight || counts[training.Pending] != inFlight/2 {
		t.Errorf("counts %v: want %d models, %d in flight (half Pending)", counts, n, inFlight)
	}
	ended := n - inFlight
	share := func(s training.Status) float64 { return float64(counts[s]) / float64(ended) * 100 }
	if f := share(training.Failed); f < seedFailedPercent-3 || f > seedFailedPercent+3 {
		t.Errorf("%.1f%% Failed, want about %d%%", f, seedFailedPercent)
	}
	if f := share(training.Canceled); f < seedCanceledPercent-2 || f > seedCanceledPercent+2 {
		t.Errorf("%.1f%% Canceled, want about %d%%", f, seedCanceledPercent)
	}
	if f := share(training.Ready); f < 85 {
		t.Errorf("%.1f%% Ready, want most", f)
	}

	// Newest first: the in-flight ones are the newest, the oldest ended.
	var all []training.Model
	for before := ""; ; {
		page, err := st.ListModels(ctx, store.ModelFilter{Before: before, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].ID
	}
	if len(all) != n {
		t.Fatalf("listed %d models, want %d", len(all), n)
	}
	for i, m := range all {
		if (i < inFlight) != !m.Status.Terminal() {
			t.Fatalf("model %d of the newest first is %s: want the newest %d in flight, the rest ended", i, m.Status, inFlight)
		}
	}
	if newest := all[0].CreatedAt; newest.After(now) || newest.Before(now.Add(-time.Hour)) {
		t.Errorf("newest created at %s, want just before %s", newest, now)
	}
	if oldest := all[n-1].CreatedAt; oldest.Before(now.Add(-31*24*time.Hour)) || oldest.After(now.Add(-29*24*time.Hour)) {
		t.Errorf("oldest created at %s, want about 30 days before %s", oldest, now)
	}
	// Training ids are Replicate-like and random: not in the models' order.
	tids := make([]string, 0, n)
	for _, m := range all {
		tids = append(tids, m.TrainingID)
		if len(m.TrainingID) != 26 || strings.Trim(m.TrainingID, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("training id %q does not look like Replicate's", m.TrainingID)
		}
	}
	rev := slices.Clone(tids)
	slices.Reverse(rev)
	if slices.IsSorted(tids) || slices.IsSorted(rev) {
		t.Error("training ids are in the models' order; want them random")
	}

	// An ended model, read back whole.
	var ready, training1 *training.Model
	for i := range all {
		switch all[i].Status {
		case training.Ready:
			ready = &all[i]
		case training.Training:
			training1 = &all[i]
		}
	}
	m, err := st.GetModel(ctx, ready.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out replicate.TrainingOutput
	if err := json.Unmarshal(m.Output, &out); err != nil || out.Version != expectedVersion(m.TrainingID) || out.Weights != expectedWeights(m.TrainingID) {
		t.Errorf("Ready model's output %s (%v)", m.Output, err)
	}
	if len(m.LogTail) < 2000 || !strings.Contains(m.LogTail, "Training complete") || m.Progress.Percent != 100 || m.CompletedAt == nil || m.NextCheckAt != nil {
		t.Errorf("Ready model: log tail %d bytes, progress %+v, completed %v, next check %v", len(m.LogTail), m.Progress, m.CompletedAt, m.NextCheckAt)
	}
	h, err := st.History(ctx, m.ID)
	if err != nil || len(h) != 2 || h[0].To != training.Training || h[1].To != training.Ready {
		t.Errorf("Ready model's history %+v (%v)", h, err)
	}
	if training1 == nil || training1.NextCheckAt == nil || training1.CompletedAt != nil {
		t.Errorf("in-flight model %+v: want one due for a check", training1)
	}

	// A second seed on the same path is refused, and changes nothing.
	before, _ := os.ReadFile(path)
	if _, err := Seed(context.Background(), SeedOptions{Path: path, Models: 10, Span: time.Hour}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("seeding over an existing file: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a refused seed changed the file")
	}
}

func TestSeedCommand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.db")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"seed", "--db", path, "--models", "250", "--json"}, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var res SeedResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	fi, err := os.Stat(path)
	if err != nil || res.Models != 250 || res.Bytes != fi.Size() || res.ByStatus["Ready"] == 0 || res.History == 0 {
		t.Errorf("result %+v, file %v", res, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"seed", "--models", "10"}, "--db"},
		{[]string{"seed", "--db", filepath.Join(dir, "a.db"), "--models", "0"}, "--models 0"},
		{[]string{"seed", "--db", filepath.Join(dir, "a.db"), "--models", "5000001"}, "want 1 to 5000000"},
		{[]string{"seed", "--db", filepath.Join(dir, "a.db"), "--span", "0s"}, "--span"},
		{[]string{"seed", "--db", filepath.Join(dir, "a.db"), "--batch", "0"}, "--batch"},
		{[]string{"seed", "--db", path}, "exists"},
		{[]string{"seed", "--db", filepath.Join(dir, "a.db"), "extra"}, "unexpected argument"},
	} {
		stderr.Reset()
		if code := run(context.Background(), c.args, func(string) string { return "" }, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, %q; want 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a.db")); !os.IsNotExist(err) {
		t.Errorf("a refused seed created a file: %v", err)
	}
}

// TestRunOnSeeded: the real server, on a seeded database, ingests the
// bench's deliveries for models registered among the seeded ones, with
// random training ids, and leaves the seeded models as they were.
func TestRunOnSeeded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seeded.db")
	const seeded = 2000
	if _, err := Seed(context.Background(), SeedOptions{Path: path, Models: seeded, Span: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"ADDR": l.Addr().String(), "DATABASE_URL": path, "REPLICATE_WEBHOOK_SECRET": testSecret,
		"TRAINHOOK_WEBHOOKS": "off", "REPLICATE_BASE_URL": "http://127.0.0.1:9/v1",
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.StartOn(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), l)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { stop(); <-done }()

	keys, _ := replicate.ParseKeys(testSecret)
	res, err := Run(context.Background(), Options{URL: "http://" + l.Addr().String(), Key: keys[0], N: 300, Concurrency: 8,
		PayloadBytes: 4096, DurationMax: time.Minute, Order: OrderRandom, TrainingIDs: IDsRandom})
	if err != nil || !res.Passed() || res.TrainingIDs != IDsRandom {
		t.Fatalf("run on a seeded database: %v, %+v", err, res)
	}
	counts, err := a.Store.CountModels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	inFlight := seeded * seedInFlightPercent / 100
	if total != seeded+300 || counts[training.Pending]+counts[training.Training] != inFlight {
		t.Errorf("after the run: %v; want %d models, the seeded %d in flight untouched", counts, seeded+300, inFlight)
	}
}

// TestRunTrainingIDs: random training ids are Replicate-like and in no
// order; sortable ones (the default) are in registration order.
func TestRunTrainingIDs(t *testing.T) {
	for _, kind := range []string{"", IDsSortable, IDsRandom} {
		s, srv := newStub(t)
		o := testOptions(srv, 200)
		o.Concurrency = 1 // so the stub creates the models in the order they were registered
		o.TrainingIDs = kind
		res, err := Run(context.Background(), o)
		if err != nil || !res.Passed() {
			t.Fatalf("%q: %v, %+v", kind, err, res)
		}
		want := kind
		if want == "" {
			want = IDsSortable
		}
		if res.TrainingIDs != want {
			t.Errorf("%q: result says %q", kind, res.TrainingIDs)
		}
		// The stub's models in creation order, and their training ids.
		tids := make([]string, len(s.created))
		for id, i := range s.created {
			tids[i] = s.models[id].TrainingID
		}
		// Count the ids smaller than the one registered before.
		d := 0
		for i := 1; i < len(tids); i++ {
			if tids[i] < tids[i-1] {
				d++
			}
		}
		f := float64(d) / float64(len(tids)-1)
		if want == IDsSortable && f != 0 || want == IDsRandom && (f < 0.35 || f > 0.65) {
			t.Errorf("%s ids: %.2f of them sort below the one registered before", want, f)
		}
		for _, tid := range tids {
			if len(tid) != 26 {
				t.Errorf("training id %q", tid)
			}
		}
	}
	if _, err := Run(context.Background(), Options{URL: "http://127.0.0.1:1", N: 1, Concurrency: 1, DurationMax: time.Second, TrainingIDs: "ulid"}); err == nil || !strings.Contains(err.Error(), "--training-ids") {
		t.Errorf("bad --training-ids: %v", err)
	}
}

// TestSeedInterrupted: a seed cut off part-way removes what it wrote, so
// the same command can run again.
func TestSeedInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cut.db")
	ctx, cancel := context.WithCancel(context.Background())
	var progress bytes.Buffer
	// Cut once the first batch is committed: part of the seed is on disk.
	res, err := Seed(ctx, SeedOptions{Path: path, Models: 400000, Span: time.Hour, Batch: 500, Log: &progress,
		afterBatch: func(int) { cancel() }})
	if err == nil || !strings.Contains(err.Error(), "interrupted") && !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("seed cut off after its first batch: %v (%+v)", err, res)
	}
	if res.Models == 0 {
		t.Errorf("nothing was written before the cut (%v): the test did not cut a seed part-way", err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", path+suffix, err)
		}
	}
}
