package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// lockedRecorder is recorder for handlers serving several requests at once.
type lockedRecorder struct {
	mu        sync.Mutex
	delivered []training.Delivery
	refused   []training.Delivery
}

func (r *lockedRecorder) Deliver(_ context.Context, _ training.Observation, d training.Delivery) (service.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered = append(r.delivered, d)
	return service.Result{Outcome: service.Outcome(training.Move)}, nil
}

func (r *lockedRecorder) RecordRefused(d training.Delivery) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused = append(r.refused, d)
	return true
}

// waitingBody tells when the handler has asked for more of a body than the
// sender has sent: by then whatever buffer it reads into exists.
type waitingBody struct {
	io.ReadCloser
	reads   int
	waiting func()
}

func (b *waitingBody) Read(p []byte) (int, error) {
	b.reads++
	if b.reads == 2 {
		b.waiting()
	}
	return b.ReadCloser.Read(p)
}

// Connections that claim the largest body and send one byte cost memory for
// the byte, not for the claim: N of them must together allocate far less
// than one claimed body. Reading into a buffer of Content-Length bytes
// allocates N × 10 MiB here.
func TestClaimedBodyCostsWhatIsSent(t *testing.T) {
	const (
		n       = 20
		maxBody = 10 << 20
		budget  = 128 << 10 // per connection: buffers, goroutine, net/http's own
	)
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	rec := &lockedRecorder{}
	h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: rec, MaxBody: maxBody, Log: slog.New(slog.DiscardHandler)}, metrics.New())
	var waiting sync.WaitGroup
	waiting.Add(n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &waitingBody{ReadCloser: r.Body, waiting: waiting.Done}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nwebhook-id: msg_%d\r\nContent-Length: %d\r\n\r\n{", config.WebhookPath, addr, i, maxBody)
	}
	done := make(chan struct{})
	go func() { waiting.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the handlers did not start reading the bodies within 20s")
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	if allocated > n*budget {
		t.Fatalf("%d connections that each sent 1 byte of a claimed %d allocated %d KiB; want under %d KiB (%d KiB each)",
			n, maxBody, allocated>>10, n*budget>>10, budget>>10)
	}
	t.Logf("%d connections claiming %d MiB each allocated %d KiB in all", n, maxBody>>20, allocated>>10)

	// Each cut-off body is refused as unreadable, and nothing is delivered.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec.mu.Lock()
		refused, delivered := len(rec.refused), len(rec.delivered)
		rec.mu.Unlock()
		if refused == n && delivered == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing: %d refused, %d delivered; want %d refused, none delivered", refused, delivered, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A body is read whole whatever its size up to the limit, with or without
// a Content-Length, and refused past the limit or when cut short.
func TestReadBodySizes(t *testing.T) {
	for _, size := range []int{0, 1, initialBody - 1, initialBody, initialBody + 1, 3*initialBody + 7, 1 << 20} {
		body := strings.Repeat("x", size)
		for _, chunked := range []bool{false, true} {
			r := httptest.NewRequest(http.MethodPost, config.WebhookPath, io.NopCloser(strings.NewReader(body)))
			r.ContentLength = int64(size)
			if chunked {
				r.ContentLength = -1
			}
			got, err := readBody(r, 1<<20)
			if err != nil || string(got) != body {
				t.Fatalf("size %d chunked %v: read %d bytes, err %v", size, chunked, len(got), err)
			}
		}
	}
	r := httptest.NewRequest(http.MethodPost, config.WebhookPath, io.NopCloser(strings.NewReader(strings.Repeat("x", 1<<20+1))))
	r.ContentLength = -1
	if _, err := readBody(r, 1<<20); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("past the limit: err %v, want too large", err)
	}
	r = httptest.NewRequest(http.MethodPost, config.WebhookPath, io.NopCloser(strings.NewReader("longer than claimed")))
	r.ContentLength = 4
	if _, err := readBody(r, 1<<20); err == nil || !strings.Contains(err.Error(), "longer than its Content-Length") {
		t.Fatalf("longer than claimed: err %v", err)
	}
	r = httptest.NewRequest(http.MethodPost, config.WebhookPath, io.NopCloser(strings.NewReader("short")))
	r.ContentLength = 100
	if _, err := readBody(r, 1<<20); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut short: err %v, want unexpected EOF", err)
	}
}

// An honest large body costs at most about twice its size while it is
// read (the buffer doubles), not a copy per small growth step.
func TestReadBodyLargeAllocation(t *testing.T) {
	const size = 4 << 20
	body := strings.Repeat("x", size)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := httptest.NewRequest(http.MethodPost, config.WebhookPath, io.NopCloser(strings.NewReader(body)))
	r.ContentLength = size
	got, err := readBody(r, 10<<20)
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != size {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 5*size/2 {
		t.Fatalf("reading %d bytes allocated %d; want under %d", size, allocated, 5*size/2)
	}
}

// Deliveries dedupe on their whole webhook-id, so an id too long to store
// is refused, not cut: cut, two different deliveries sharing a prefix would
// count as one and the second outcome would be lost.
func TestLongWebhookIDRefused(t *testing.T) {
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	rec := &lockedRecorder{}
	h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: rec, MaxBody: 1 << 20, Log: slog.New(slog.DiscardHandler)}, metrics.New())
	srv := httptest.NewServer(h)
	defer srv.Close()
	prefix := "msg_" + strings.Repeat("a", MaxWebhookID-4)
	send := func(id, status string) (int, string) {
		body := []byte(`{"id":"abc","status":"` + status + `"}`)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		key.SignRequest(req.Header, id, time.Now(), body)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a.Error
	}
	for _, id := range []string{prefix + "-first", prefix + "-second"} {
		code, msg := send(id, "processing")
		if code != http.StatusBadRequest || !strings.Contains(msg, "webhook-id is longer than 200 bytes") {
			t.Fatalf("id of %d bytes: %d %q, want 400 naming the limit", len(id), code, msg)
		}
	}
	if len(rec.delivered) != 0 || len(rec.refused) != 2 {
		t.Fatalf("delivered %d, refused %d; want none delivered and both refusals recorded", len(rec.delivered), len(rec.refused))
	}
	// An id of exactly the limit is taken whole.
	if code, msg := send(prefix, "succeeded"); code != http.StatusOK || len(rec.delivered) != 1 || rec.delivered[0].WebhookID != prefix {
		t.Fatalf("id of %d bytes: %d %q, delivered %+v", len(prefix), code, msg, rec.delivered)
	}
}
