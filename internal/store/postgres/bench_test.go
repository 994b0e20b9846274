package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// BenchmarkWriteBatch is the SQLite store's benchmark of the same name, on
// PostgreSQL: one Write per batch of 32 deliveries, each doing what the
// service does for one delivery (find the model by training id, claim the
// webhook id, record the delivery with its ~4 KB body, update the model,
// add a history row). The figure to read is ns/delivery. Each delivery is
// five statements, each one round trip to the server; the commit is one
// WAL flush for the batch.
func BenchmarkWriteBatch(b *testing.B) {
	benchmarkDeliveries(b, 32)
}

// BenchmarkWriteBatch128 is a full batch as the service sends it under load.
func BenchmarkWriteBatch128(b *testing.B) {
	benchmarkDeliveries(b, 128)
}

// BenchmarkWriteSingle is one delivery per Write: what each delivery would
// cost without group commit.
func BenchmarkWriteSingle(b *testing.B) {
	benchmarkDeliveries(b, 1)
}

// BenchmarkWriteBatchPrefetched is BenchmarkWriteBatch as the service runs
// it: the batch's rows read ahead (Prefetch), its writes sent with the
// COMMIT. Two round trips per Write, whatever the batch size.
func BenchmarkWriteBatchPrefetched(b *testing.B) {
	benchmarkDeliveries(b, -32)
}

// BenchmarkWriteSinglePrefetched is BenchmarkWriteSingle with Prefetch.
func BenchmarkWriteSinglePrefetched(b *testing.B) {
	benchmarkDeliveries(b, -1)
}

// benchmarkDeliveries runs batches of |batch| deliveries, prefetched if
// batch is negative.
func benchmarkDeliveries(b *testing.B, batch int) {
	s, _ := openTest(b)
	// The service's context is cancellable; use one so that cost is counted.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	trainingIDs := benchModels(b, s, "")
	payload := webhookBody()
	n := 0
	for b.Loop() {
		if err := writeDeliveries(ctx, s, trainingIDs, payload, batch, &n, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/delivery")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkWriteBatch3Instances is three instances, each with its own pool
// and writer, sending batches of 32 deliveries for different models at
// once: PostgreSQL runs their transactions side by side, where SQLite has
// one writer. ns/delivery is wall time over all deliveries.
func BenchmarkWriteBatch3Instances(b *testing.B) {
	url := pgtest.URL(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payload := webhookBody()
	type instance struct {
		s   *Store
		ids []string
		n   int
	}
	var ins []*instance
	for i := range 3 {
		s, err := Open(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ins = append(ins, &instance{s: s, ids: benchModels(b, s, strconv.Itoa(i))})
	}
	var errs [3]error
	for b.Loop() {
		var wg sync.WaitGroup
		for i, in := range ins {
			wg.Go(func() { errs[i] = writeDeliveries(ctx, in.s, in.ids, payload, 32, &in.n, strconv.Itoa(i)) })
		}
		wg.Wait()
		if err := errors.Join(errs[:]...); err != nil {
			b.Fatal(err)
		}
	}
	n := ins[0].n + ins[1].n + ins[2].n
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/delivery")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "deliveries/s")
}

// benchModels inserts 1000 models in training, returning their training ids.
// Every delivery of a batch is for a different training.
func benchModels(b *testing.B, s *Store, prefix string) []string {
	ctx := context.Background()
	const models = 1000
	trainingIDs := make([]string, models)
	now := time.Now()
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range trainingIDs {
			m := training.Model{
				ID:          training.NewID(now.Add(time.Duration(i) * time.Millisecond)),
				Name:        "bench model " + strconv.Itoa(i),
				TrainingID:  prefix + "tr" + strconv.Itoa(i) + "xxxxxxxxxxxxxxxxxxxxxx",
				Trainer:     "owner/trainer:0123456789abcdef",
				Destination: "owner/dest-" + strconv.Itoa(i),
				Input:       []byte(`{"input_images":"https://example.com/images.zip","steps":1000,"lora_rank":16}`),
				Status:      training.Training,
				Metadata:    []byte(`{"team":"vision"}`),
				CreatedAt:   now,
				UpdatedAt:   now,
				NextCheckAt: &now,
			}
			trainingIDs[i] = m.TrainingID
			if err := tx.InsertModel(ctx, &m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return trainingIDs
}

// writeDeliveries is one Write of batch deliveries, each as the service
// applies it; *n counts deliveries.
// A negative batch is -batch deliveries read ahead with Prefetch.
func writeDeliveries(ctx context.Context, s *Store, trainingIDs []string, payload []byte, batch int, n *int, prefix string) error {
	now := time.Now()
	return s.Write(ctx, func(tx store.Tx) error {
		if batch < 0 {
			batch = -batch
			var keys store.BatchKeys
			for i := range batch {
				k := *n + 1 + i
				keys.TrainingIDs = append(keys.TrainingIDs, trainingIDs[k%len(trainingIDs)])
				keys.WebhookIDs = append(keys.WebhookIDs, "msg_"+prefix+"_"+strconv.Itoa(k))
			}
			keys.Deliveries = batch
			if err := tx.(store.Prefetcher).Prefetch(ctx, keys); err != nil {
				return err
			}
		}
		for range batch {
			*n++
			at := now.Add(time.Duration(*n) * time.Millisecond)
			m, err := tx.ModelByTrainingID(ctx, trainingIDs[*n%len(trainingIDs)])
			if err != nil {
				return err
			}
			webhookID := "msg_" + prefix + "_" + strconv.Itoa(*n)
			if ok, err := tx.ClaimWebhookID(ctx, webhookID, at); err != nil || !ok {
				return fmt.Errorf("claim %s: %v, %v", webhookID, ok, err)
			}
			if _, err := tx.AddDelivery(ctx, training.Delivery{
				WebhookID: webhookID, ReceivedAt: at, Verified: true, Outcome: "applied",
				TrainingID: m.TrainingID, ModelID: m.ID, RemoteStatus: training.RemoteProcessing, Payload: payload,
			}); err != nil {
				return err
			}
			from := m.Status
			m.RemoteStatus = training.RemoteProcessing
			m.Progress = training.Progress{Percent: float64(*n%100) + 0.5, Step: *n % 1000, Total: 1000}
			m.LogTail = "step " + strconv.Itoa(*n) + "/1000 loss=0.0123\n"
			m.LogLen += 40
			m.UpdatedAt = at
			next := at.Add(time.Minute)
			m.NextCheckAt = &next
			if err := tx.UpdateModel(ctx, &m); err != nil {
				return err
			}
			if err := tx.AddHistory(ctx, training.HistoryEntry{
				ModelID: m.ID, From: from, To: m.Status, RemoteStatus: m.RemoteStatus,
				Decision: training.Refresh, Source: training.SourceWebhook, SourceRef: webhookID, At: at,
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// webhookBody is a Replicate training webhook of about 4 KB, mostly logs.
func webhookBody() []byte {
	noise := make([]byte, 1500)
	rand.Read(noise)
	return fmt.Appendf(nil, `{"id":"tr1xxxxxxxxxxxxxxxxxxxxxx","model":"owner/trainer","version":"0123456789abcdef",`+
		`"input":{"input_images":"https://example.com/images.zip","steps":1000},"logs":"%s",`+
		`"output":null,"error":null,"status":"processing","created_at":"2025-06-01T12:00:00.000Z",`+
		`"started_at":"2025-06-01T12:00:05.000Z","urls":{"get":"https://api.replicate.com/v1/trainings/tr1",`+
		`"cancel":"https://api.replicate.com/v1/trainings/tr1/cancel"},"metrics":{}}`, hex.EncodeToString(noise))
}
