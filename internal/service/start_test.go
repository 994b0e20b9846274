package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
)

// A create still retrying after 429s when its start's lease ran out would
// race the poller, which recovers the start once the lease is over: finding
// no training, it creates one, and the late create makes a second. So a
// create sends no request after its lease (less a margin), however long the
// client would go on retrying, and leaves the start in doubt.
func TestCreateSendsNothingAfterItsLease(t *testing.T) {
	ctx := context.Background()
	sim, err := fakereplicate.New(fakereplicate.Options{Token: "r8_lease", Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })

	var mu sync.Mutex
	var creates []time.Time // when each create request was sent
	client, err := replicate.NewClient(replicate.ClientOptions{
		BaseURL: simURL, Token: "r8_lease", RateLimit: 1 << 20,
		OnCall: func(endpoint, _ string, took time.Duration) {
			if endpoint == replicate.EndpointTrainingsCreate {
				mu.Lock()
				creates = append(creates, time.Now().Add(-took))
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "trainhook.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const lease = 3 * time.Second
	svc := service.New(service.Options{Store: st, Replicate: client, Logger: slog.New(slog.DiscardHandler), StartLease: lease})
	t.Cleanup(svc.Close)

	// Every create is throttled for 2 s: the client would send five, the
	// last about 8 s after the first.
	if err := sim.FailNext(fakereplicate.FailSpec{Endpoint: "trainings.create", Status: 429, RetryAfter: 2, Count: 5}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	m, _, err := svc.Start(ctx, service.StartRequest{
		Trainer:     fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion,
		Destination: fakereplicate.DefaultUsername + "/lease",
		Input:       json.RawMessage(`{"input_images":"https://example.com/lease.zip"}`),
	})
	var se *service.Error
	if !errors.As(err, &se) || se.Kind != service.Upstream || m.Status != training.Pending {
		t.Fatalf("start: %+v, %v; want a start in doubt", m, err)
	}
	if took := time.Since(begin); took > lease {
		t.Errorf("the start took %v, beyond its lease of %v", took, lease)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(creates) == 0 {
		t.Fatal("no create was sent")
	}
	for i, at := range creates {
		if at.After(begin.Add(lease)) {
			t.Errorf("create %d of %d was sent %v after the start began, after its lease of %v", i+1, len(creates), at.Sub(begin), lease)
		}
	}
	if n := len(sim.Trainings()); n != 0 {
		t.Errorf("%d trainings on the simulator, want none (every create was throttled)", n)
	}
}
