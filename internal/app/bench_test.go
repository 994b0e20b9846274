package app_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIngest measures end-to-end webhook ingest over loopback on a real
// SQLite file: signed ~4 KB succeeded deliveries at concurrency 32, each
// acknowledged after its commit. scripts/bench-ingest.sh measures the same
// against a separate server process; this one is for profiling
// (go test -bench Ingest -cpuprofile cpu.out ./internal/app).
func BenchmarkIngest(b *testing.B) {
	s := start(b, nil)
	const models = 20000
	logs := strings.Repeat(" 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]\n", 70)
	bodies := make([][]byte, models)
	var reg sync.WaitGroup
	for w := 0; w < 32; w++ {
		reg.Add(1)
		go func() {
			defer reg.Done()
			for i := w; i < models; i += 32 {
				id := fmt.Sprintf("bench%021d", i)
				s.register(id)
				bodies[i] = []byte(strings.Replace(string(payload(id, "succeeded")), `"logs":"`, `"logs":"`+strings.ReplaceAll(logs, "\n", `\n`), 1))
			}
		}()
	}
	reg.Wait()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next atomic.Int64
	b.SetBytes(int64(len(bodies[0])))
	b.ResetTimer()
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				i := int(next.Add(1)-1) % models
				req, _ := http.NewRequest("POST", s.url+"/api/webhooks/replicate/completed", bytes.NewReader(bodies[i]))
				testKey.SignRequest(req.Header, fmt.Sprintf("msg_b_%d", next.Load()), time.Now(), bodies[i])
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != 200 {
					b.Errorf("delivery: %v %v", err, resp)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
}
