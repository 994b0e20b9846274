package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// SeedOptions configure `ingestbench seed`: a SQLite file filled with the
// models of a long-lived deployment, written through the store package
// (as trainhook writes them, with its schema and compression) rather than
// over HTTP, so that a million models take minutes rather than hours.
type SeedOptions struct {
	Path   string        // the SQLite file to create; it must not exist
	Models int           // models to write
	Span   time.Duration // the models were created evenly over this span, ending at Now
	Now    time.Time     // the newest model's creation time (default: time.Now)
	Batch  int           // models per transaction (default 2000)
	Log    io.Writer     // progress lines; nil = none

	afterBatch func(written int) // for tests: called after each committed batch
}

// SeedResult is what a seed wrote.
type SeedResult struct {
	Path     string         `json:"path"`
	Models   int            `json:"models"`
	History  int            `json:"history"`
	ByStatus map[string]int `json:"by_status"`
	Seconds  float64        `json:"seconds"`
	Bytes    int64          `json:"bytes"` // the database file after the final checkpoint
}

// MaxSeedModels bounds --models: 5 million models are about 10 GB.
const MaxSeedModels = 5_000_000

// The status mix of a seeded database. The newest seedInFlightPercent of
// the models are still in flight (half Pending, half Training), as only
// recent trainings can be; the older ones ended: seedFailedPercent Failed,
// seedCanceledPercent Canceled, the rest Ready with their output.
const (
	seedInFlightPercent = 1
	seedFailedPercent   = 7
	seedCanceledPercent = 3
)

// replicateID returns a training id as Replicate makes them: 26 random
// lower-case base32 characters, in no time order, so that the models'
// training_id index is hit all over rather than at its end (and of the
// placeholder's length, so payloads keep their size).
func replicateID(r *rand.Rand) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [26]byte
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b[:])
}

// seedLog is a trainer's log up to step of 1000: the tqdm lines a real run
// prints, about 4 KB for a whole run (as the deliveries ingestbench sends).
func seedLog(step int, failed bool) string {
	const steps, lines = 1000, 40
	var b strings.Builder
	b.WriteString("Extracting 14 images...\nLoading Flux model\nStarting training\n")
	for i := 1; i <= lines && i*steps/lines <= step; i++ {
		b.WriteString(fakereplicate.TqdmLine(i*steps/lines, steps, steps*1300*time.Millisecond))
		b.WriteByte('\n')
	}
	switch {
	case failed:
		b.WriteString("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
	case step >= steps:
		b.WriteString("Saving weights\nTraining complete\n")
	}
	return b.String()
}

// seedModel builds model i of n with its history, created at created.
func seedModel(i, n int, created time.Time, r *rand.Rand) (training.Model, []training.HistoryEntry) {
	tid := replicateID(r)
	m := training.Model{
		ID: training.NewID(created), Name: "seed-" + tid, TrainingID: tid,
		Destination: benchOwner + "/model-" + tid,
		Metadata:    json.RawMessage(fmt.Sprintf(`{"source":"ingestbench seed","index":%d}`, i)),
		CreatedAt:   created, UpdatedAt: created,
		WebURL: "https://replicate.com/p/" + tid,
	}
	started := created.Add(20 * time.Second)
	hist := func(from, to training.Status, remote string, at time.Time) training.HistoryEntry {
		return training.HistoryEntry{ModelID: m.ID, From: from, To: to, RemoteStatus: remote, Decision: training.Move,
			Source: training.SourceWebhook, SourceRef: "msg_" + replicateID(r), At: at}
	}
	setLog := func(step int, failed bool) {
		logs := seedLog(step, failed)
		m.LogTail, m.LogLen = training.LogTail(logs), len(logs)
		if p, ok := training.ParseProgress(logs); ok {
			m.Progress = p
		}
	}
	if i >= n-n*seedInFlightPercent/100 { // the newest: in flight
		next := created.Add(5 * time.Second)
		m.NextCheckAt = &next
		if i%2 == 0 {
			m.Status = training.Pending
			return m, nil
		}
		m.Status, m.RemoteStatus, m.StartedAt, m.UpdatedAt = training.Training, training.RemoteProcessing, &started, started
		setLog(r.IntN(1000), false)
		return m, []training.HistoryEntry{hist(training.Pending, training.Training, training.RemoteStarting, started)}
	}
	h := []training.HistoryEntry{hist(training.Pending, training.Training, training.RemoteStarting, started)}
	completed := started.Add(time.Duration(15+r.IntN(15)) * time.Minute)
	m.StartedAt, m.CompletedAt, m.UpdatedAt = &started, &completed, completed
	switch p := r.IntN(100); {
	case p < seedFailedPercent:
		m.Status, m.RemoteStatus = training.Failed, training.RemoteFailed
		m.Error = "CUDA out of memory. Tried to allocate 2.00 GiB"
		setLog(r.IntN(1000), true)
	case p < seedFailedPercent+seedCanceledPercent:
		m.Status, m.RemoteStatus = training.Canceled, training.RemoteCanceled
		setLog(r.IntN(1000), false)
	default:
		m.Status, m.RemoteStatus = training.Ready, training.RemoteSucceeded
		out, _ := json.Marshal(replicate.TrainingOutput{Version: expectedVersion(tid), Weights: expectedWeights(tid)})
		m.Output = out
		setLog(1000, false)
		m.Progress.Percent = 100
	}
	return m, append(h, hist(training.Training, m.Status, m.RemoteStatus, completed))
}

// validate checks the options and that the file does not exist yet.
func (o SeedOptions) validate() error {
	switch {
	case o.Path == "":
		return errors.New("--db: need the path of the SQLite file to create")
	case o.Models < 1 || o.Models > MaxSeedModels:
		return fmt.Errorf("--models %d: want 1 to %d", o.Models, MaxSeedModels)
	case o.Span <= 0:
		return fmt.Errorf("--span %s: want a positive duration", o.Span)
	case o.Batch < 0:
		return fmt.Errorf("--batch %d: want at least 1", o.Batch)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if _, err := os.Stat(o.Path + suffix); err == nil {
			return fmt.Errorf("--db %s: %s exists; seed writes a new database (remove it first)", o.Path, o.Path+suffix)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("--db %s: %w", o.Path, err)
		}
	}
	return nil
}

// Seed writes a new SQLite database of o.Models models, oldest first, in
// transactions of o.Batch models, and closes it (which checkpoints the WAL
// into the file, so the file alone is the database and can be copied).
// On an error it removes what it wrote, so that the same command can be
// run again.
func Seed(ctx context.Context, o SeedOptions) (_ SeedResult, err error) {
	if err := o.validate(); err != nil {
		return SeedResult{}, err
	}
	if o.Batch == 0 {
		o.Batch = 2000
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	start := time.Now()
	st, err := sqlite.Open(ctx, o.Path)
	if err != nil {
		return SeedResult{}, err
	}
	res := SeedResult{Path: o.Path, ByStatus: map[string]int{}}
	defer func() {
		if st != nil {
			st.Close()
		}
		if err != nil {
			for _, suffix := range []string{"", "-wal", "-shm", ".lock"} {
				os.Remove(o.Path + suffix)
			}
		}
	}()

	// Build the batches on one goroutine while the store writes the last
	// one on this one: the single writer is the bottleneck.
	type batch struct {
		models  []training.Model
		history []training.HistoryEntry
	}
	batches := make(chan batch, 2)
	genCtx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	go func() {
		defer close(batches)
		r := rand.New(rand.NewPCG(7, uint64(o.Models)))
		first := o.Now.Add(-o.Span)
		step := o.Span / time.Duration(o.Models)
		for lo := 0; lo < o.Models; lo += o.Batch {
			var b batch
			for i := lo; i < min(lo+o.Batch, o.Models); i++ {
				m, h := seedModel(i, o.Models, first.Add(time.Duration(i+1)*step), r)
				b.models = append(b.models, m)
				b.history = append(b.history, h...)
			}
			select {
			case batches <- b:
			case <-genCtx.Done():
				return
			}
		}
	}()
	lastLog := time.Now()
	for b := range batches {
		err := st.Write(ctx, func(tx store.Tx) error {
			for i := range b.models {
				if err := tx.InsertModel(ctx, &b.models[i]); err != nil {
					return err
				}
			}
			for _, h := range b.history {
				if err := tx.AddHistory(ctx, h); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("seed %s after %d models: %w", o.Path, res.Models, err)
		}
		res.Models += len(b.models)
		res.History += len(b.history)
		for _, m := range b.models {
			res.ByStatus[string(m.Status)]++
		}
		if o.afterBatch != nil {
			o.afterBatch(res.Models)
		}
		if o.Log != nil && time.Since(lastLog) >= 10*time.Second {
			fmt.Fprintf(o.Log, "seed: %d of %d models after %.0fs\n", res.Models, o.Models, time.Since(start).Seconds())
			lastLog = time.Now()
		}
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("seed %s interrupted after %d models: %w", o.Path, res.Models, err)
	}
	err = st.Close()
	st = nil
	if err != nil {
		return res, fmt.Errorf("close %s: %w", o.Path, err)
	}
	res.Seconds = time.Since(start).Seconds()
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(o.Path + suffix); err == nil {
			res.Bytes += fi.Size()
		}
	}
	return res, nil
}

// runSeed is `ingestbench seed`.
func runSeed(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ingestbench seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o      SeedOptions
		asJSON bool
	)
	fs.StringVar(&o.Path, "db", "", "the SQLite file to create (it must not exist)")
	fs.IntVar(&o.Models, "models", 100000, fmt.Sprintf("models to write (1 to %d)", MaxSeedModels))
	fs.DurationVar(&o.Span, "span", 365*24*time.Hour, "the models were created evenly over this span, the newest now")
	fs.IntVar(&o.Batch, "batch", 2000, "models per transaction")
	fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: ingestbench seed --db FILE --models N [flags]

Writes a new SQLite database holding N models as a long-lived trainhook
would: the newest %d%% in flight (Pending or Training), the others ended
(%d%% Failed, %d%% Canceled, the rest Ready with their output and log tail),
each with its history. Training ids are random, as Replicate's are. Start
trainhook serve on a copy of it and run ingestbench against that. Flags:
`, seedInFlightPercent, seedFailedPercent, seedCanceledPercent)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ingestbench seed: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.Batch < 1 {
		fmt.Fprintf(stderr, "ingestbench seed: --batch %d: want at least 1\n", o.Batch)
		return 2
	}
	if o.Path != "" {
		if abs, err := filepath.Abs(o.Path); err == nil {
			o.Path = abs
		}
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "ingestbench seed: %v\n", err)
		return 2
	}
	o.Log = stderr
	res, err := Seed(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "ingestbench seed: %v\n", err)
		return 1
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			fmt.Fprintf(stderr, "ingestbench seed: %v\n", err)
			return 1
		}
		return 0
	}
	keys := make([]string, 0, len(res.ByStatus))
	for k := range res.ByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var mix []string
	for _, k := range keys {
		mix = append(mix, fmt.Sprintf("%s %d", k, res.ByStatus[k]))
	}
	fmt.Fprintf(stdout, "seeded %s: %d models (%s), %d history entries, %.1f MiB, in %.1fs\n",
		res.Path, res.Models, strings.Join(mix, ", "), res.History, float64(res.Bytes)/(1<<20), res.Seconds)
	return 0
}
