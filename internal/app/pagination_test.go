package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/apptest"
	"github.com/trainhook/trainhook/internal/service"
)

// Paging through GET /api/models with the largest page the API allows
// (limit=1000) reaches every model. The service learns whether there is a
// next page by asking for one row more than the page, but the stores return
// at most 1,000 rows: with limit=1000 the answer must still carry
// next_cursor.
func TestLargestPageHasANextCursor(t *testing.T) {
	t.Parallel()
	srv := apptest.Start(t, apptest.Options{Env: map[string]string{"DATABASE_URL": filepath.Join(t.TempDir(), "pages.db")}})
	a, ctx := srv.App, t.Context()

	const n = 1001
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				if _, _, err := a.Service.Register(ctx, service.RegisterRequest{TrainingID: fmt.Sprintf("page-%04d", i)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 30 * time.Second}
	seen, cursor := 0, ""
	for page := 0; page < 5; page++ {
		resp, err := client.Get(a.URL + "/api/models?limit=1000&cursor=" + cursor)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			Models     []json.RawMessage `json:"models"`
			NextCursor string            `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		seen += len(p.Models)
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if seen != n {
		t.Errorf("paging with limit=1000 saw %d of %d models", seen, n)
	}
}
