package web_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/events"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/store/sqlite"
	"github.com/trainhook/trainhook/internal/training"
	"github.com/trainhook/trainhook/internal/web"
)

// BenchmarkModelsPage renders one page of the models list from a database
// of 100,000 models: the newest page, a status filter, a page deep in the
// keyset pagination, and a name search.
//
//	go test -run '^$' -bench ModelsPage ./internal/web/
func BenchmarkModelsPage(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	began := time.Now()
	seed(b, st, n)
	b.Logf("inserted %d models in %v", n, time.Since(began).Round(time.Millisecond))

	log := slog.New(slog.DiscardHandler)
	broker := events.NewBroker(4096, log)
	svc := service.New(service.Options{Store: st, Broker: broker, Logger: log})
	defer svc.Close()
	mux := http.NewServeMux()
	web.New(web.Deps{Service: svc, Store: st, Broker: broker, Log: log,
		Status: func() any { return map[string]any{"mode": "polling", "mode_reason": "benchmark"} }}).Register(mux)

	get := func(b *testing.B, path string) string {
		req := httptest.NewRequest("GET", path, nil)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
		}
		return w.Body.String()
	}
	// A cursor 1,000 pages of 50 down, found by walking there once.
	deep := "/"
	for i := 0; i < 1000; i++ {
		m := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(get(b, deep))
		if m == nil {
			b.Fatal("pagination ended early")
		}
		deep = strings.ReplaceAll(m[1], "&amp;", "&")
	}

	for _, c := range []struct{ name, path string }{
		{"newest", "/"},
		{"status", "/?status=Failed"},
		{"deep", deep},
		{"search", "/?q=portrait+4242"},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := get(b, c.path)
			if rows := strings.Count(body, "<tr data-model-id="); rows == 0 {
				b.Fatalf("%s shows no rows", c.path)
			}
			for b.Loop() {
				get(b, c.path)
			}
		})
	}
}

// seed inserts n models with a realistic mix of statuses, in transactions
// of 10,000.
func seed(b *testing.B, st store.Store, n int) {
	ctx := context.Background()
	base := time.Now().Add(-time.Duration(n) * time.Minute)
	statuses := []training.Status{training.Ready, training.Ready, training.Ready, training.Failed, training.Canceled, training.Training, training.Pending}
	for done := 0; done < n; {
		err := st.Write(ctx, func(tx store.Tx) error {
			for i := 0; i < 10_000 && done+i < n; i++ {
				k := done + i
				at := base.Add(time.Duration(k) * time.Minute)
				m := training.Model{
					ID: training.NewID(at), Name: fmt.Sprintf("portrait %d", k), TrainingID: fmt.Sprintf("train-%07d", k),
					Status: statuses[k%len(statuses)], CreatedAt: at, UpdatedAt: at,
					Progress: training.Progress{Percent: 40, Step: 400, Total: 1000},
					LogTail:  strings.Repeat("step 400/1000 loss 0.0123\n", 40),
				}
				if m.Status.Terminal() {
					end := at.Add(20 * time.Minute)
					m.StartedAt, m.CompletedAt = &at, &end
				}
				if err := tx.InsertModel(ctx, &m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += 10_000
	}
}
