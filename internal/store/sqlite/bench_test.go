package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// BenchmarkWriteBatch measures group commit as the webhook handler uses it:
// one Write per batch of 32 deliveries, each doing what the service does
// for one delivery (find the model by training id, claim the webhook id,
// record the delivery with its ~4 KB body, update the model, add a history
// row), on a real file with synchronous=FULL. The figure to read is
// ns/delivery; the target is under 125,000 (8,000 deliveries/s).
func BenchmarkWriteBatch(b *testing.B) {
	benchmarkDeliveries(b, 32, false)
}

// BenchmarkWriteBatchNotify is BenchmarkWriteBatch with a notification
// written for each delivery, to one URL, as TRAINHOOK_NOTIFY_URL makes the
// service do: what the transactional outbox adds to the writer's time.
func BenchmarkWriteBatchNotify(b *testing.B) {
	benchmarkDeliveries(b, 32, true)
}

// BenchmarkWriteSingle is the same with one delivery per Write: what each
// delivery would cost without group commit (mostly the fsync).
func BenchmarkWriteSingle(b *testing.B) {
	benchmarkDeliveries(b, 1, false)
}

func benchmarkDeliveries(b *testing.B, batch int, notify bool) {
	s, _ := openTemp(b)
	// The service's context is cancellable; use one so that cost is counted.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Every delivery of a batch is for a different training, the worst case
	// for the number of pages a commit writes.
	const models = 1000
	trainingIDs := make([]string, models)
	now := time.Now()
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range trainingIDs {
			m := training.Model{
				ID:          training.NewID(now.Add(time.Duration(i) * time.Millisecond)),
				Name:        "bench model " + strconv.Itoa(i),
				TrainingID:  "tr" + strconv.Itoa(i) + "xxxxxxxxxxxxxxxxxxxxxx",
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
	payload := webhookBody()
	modelJSON := []byte(`{"id":"01jf0000000000000000000000","name":"bench model","training_id":"tr1xxxxxxxxxxxxxxxxxxxxxx",` +
		`"trainer":"owner/trainer:0123456789abcdef","destination":"owner/dest-1","status":"Training","output":null,"error":""}`)

	n := 0
	for b.Loop() {
		err := s.Write(ctx, func(tx store.Tx) error {
			for range batch {
				n++
				at := now.Add(time.Duration(n) * time.Millisecond)
				m, err := tx.ModelByTrainingID(ctx, trainingIDs[n%models])
				if err != nil {
					return err
				}
				webhookID := "msg_" + strconv.Itoa(n)
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
				m.Progress = training.Progress{Percent: float64(n%100) + 0.5, Step: n % 1000, Total: 1000}
				m.LogTail = "step " + strconv.Itoa(n) + "/1000 loss=0.0123\n"
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
				if notify {
					if err := tx.AddNotification(ctx, store.NewNotification{
						EventID: "evt_" + training.NewID(at), ModelID: m.ID, Type: "model.training", Sequence: m.Version, At: at,
						Model: modelJSON, URLs: []string{"http://127.0.0.1:3000/api/trainhook"},
					}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/delivery")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "deliveries/s")
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

func BenchmarkListModels100k(b *testing.B) {
	s, _ := openTemp(b)
	ids := fillModels(b, s, 100_000)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		f    store.ModelFilter
	}{
		{"newest", store.ModelFilter{Limit: 50}},
		{"cursor", store.ModelFilter{Limit: 50, Before: ids[50_000]}},
		{"status", store.ModelFilter{Limit: 50, Status: training.Failed}},
		{"status+cursor", store.ModelFilter{Limit: 50, Status: training.Failed, Before: ids[50_000]}},
		{"page_of_1000", store.ModelFilter{Limit: 1000}},
		{"query_hit", store.ModelFilter{Limit: 50, Query: "model 9999"}},
		{"query_miss", store.ModelFilter{Limit: 50, Query: "no such name"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.ListModels(ctx, bc.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.CountModels(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
